"""Fixtures shared by the test modules: tiny converted repos (built once per session), the tiny LM's tokenizer, the
real FCPE weights, the official-format HuBERT checkpoints (and the speech tokenizer converted from them) and the
pitch-unit agreement check.

A missing prerequisite (the FCPE download, an optional extra) skips the tests that need it on a developer machine, but
fails them under CI (`CI` set to anything but "", "0" or "false"), so that a CI run cannot pass by skipping.
"""

import importlib
import os
from pathlib import Path

import numpy as np
import pytest
from official_hubert import write_official_hubert_checkpoints
from official_pitch import FCPE_DOWNLOAD_COMMAND, find_fcpe_checkpoint

from transformers_spiritlm.conversion.convert_pitch import load_fcpe_checkpoint
from transformers_spiritlm.conversion.convert_speech_tokenizer import convert_speech_tokenizer
from transformers_spiritlm.testing import build_tiny_repo, tiny_lm_config, tiny_spiritlm_tokenizer


PITCH_AGREEMENT = 0.995


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def missing_prerequisite(reason: str):
    """Skips the calling test (or fixture) on a developer machine; fails it in CI, where a skip would hide it."""
    if in_ci():
        pytest.fail(f"CI: prerequisite missing, not skipping: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def fcpe_checkpoint_path() -> Path:
    """The real FCPE weights (torchfcpe wheel, downloaded once with pip, or `$SPIRITLM_FCPE_CHECKPOINT`)."""
    path = find_fcpe_checkpoint(download=True)
    if path is None:
        missing_prerequisite(
            f"real FCPE weights not found: run `{FCPE_DOWNLOAD_COMMAND}` or set SPIRITLM_FCPE_CHECKPOINT"
        )
    return path


@pytest.fixture(scope="session")
def fcpe_checkpoint(fcpe_checkpoint_path) -> dict:
    return load_fcpe_checkpoint(fcpe_checkpoint_path)


@pytest.fixture(scope="session")
def yaapt_installed() -> None:
    """The `yaapt` extra (amfm-decompy), which the YAAPT parity test needs; .ci/run installs it."""
    try:
        import amfm_decompy.pYAAPT  # noqa: F401
    except ImportError:
        missing_prerequisite("the yaapt extra is not installed: pip install -e '.[yaapt]'")


@pytest.fixture(scope="session")
def gguf_installed() -> None:
    """The `gguf` extra (llama-cpp-python, gguf), which the llama.cpp backend tests need; .ci/run installs it."""
    for module in ("gguf", "llama_cpp"):
        try:
            importlib.import_module(module)
        except ImportError:
            missing_prerequisite(f"the gguf extra is not installed ({module}): pip install -e '.[gguf]'")


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory) -> Path:
    """A converted EXPRESSIVE repo with random weights (`build_tiny_repo`, seed 0). Read-only: copy it to modify."""
    return build_tiny_repo(tmp_path_factory.mktemp("tiny-expressive"), variant="expressive")


@pytest.fixture(scope="session")
def tiny_base_repo(tmp_path_factory) -> Path:
    """A converted BASE repo with random weights (`build_tiny_repo`, seed 0). Read-only: copy it to modify."""
    return build_tiny_repo(tmp_path_factory.mktemp("tiny-base"), variant="base")


@pytest.fixture(scope="session")
def tokenizer():
    """The SPIRIT LM tokenizer of `tiny_lm_config()` (`tiny_spiritlm_tokenizer`). Read-only. The speech tokenizer
    modules override the name with their own speech tokenizer."""
    return tiny_spiritlm_tokenizer(tiny_lm_config())


@pytest.fixture(scope="session")
def official_hubert_checkpoints(tmp_path_factory) -> Path:
    """A `checkpoints/` folder holding the official-format tiny HuBERT + quantizer (seed 0) the fixtures were
    recorded on. Read-only."""
    directory = tmp_path_factory.mktemp("official-hubert")
    write_official_hubert_checkpoints(directory, seed=0)
    return directory


@pytest.fixture(scope="session")
def official_base_speech_tokenizer(official_hubert_checkpoints):
    """The BASE speech tokenizer converted from `official_hubert_checkpoints`, the one the recordings used.
    Read-only."""
    return convert_speech_tokenizer(official_hubert_checkpoints)


def assert_pitch_units_match(units: list[int], expected: list[int], agreement: float = PITCH_AGREEMENT) -> None:
    """Same number of pitch units, equal on at least `agreement` of the positions (FCPE's float32 convolutions
    differ from torchfcpe's in the last bits, which flips a unit at a VQ boundary now and then)."""
    assert len(units) == len(expected)
    assert np.mean(np.asarray(units) == np.asarray(expected)) >= agreement, (units, expected)


@pytest.fixture(scope="session")
def pitch_units_match():
    return assert_pitch_units_match
