#!/usr/bin/env bash
# Builds the Python environment the official SPIRIT LM code ran on upstream (transformers 4.46.3), so that its
# outputs can be recorded as our tests' expected values. Keep it outside the repository.
# usage: bash tools/official_reference/setup.sh VENV_DIR
set -euo pipefail
venv=${1:?usage: setup.sh VENV_DIR}
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q torch==2.13.0
"$venv/bin/python" -m pip install -q transformers==4.46.3 sentencepiece protobuf omegaconf soundfile numpy scipy \
    einops local-attention librosa pandas
# torchfcpe declares torchaudio as a dependency, and PyPI's torchaudio does not load beside torch 2.13: the
# official code only needs torchfcpe itself, and stubs/torchaudio stands in for torchaudio.
"$venv/bin/python" -m pip install -q --no-deps torchfcpe==0.0.4
echo "ready: $venv/bin/python (see tools/official_reference/README.md)"
