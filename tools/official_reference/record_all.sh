#!/usr/bin/env bash
# Reruns the recording scripts of tests/fixtures/ with the official SPIRIT LM code, overwriting the committed
# expected values (review the diff with `git diff --stat tests/fixtures`).
# usage: bash tools/official_reference/record_all.sh OFFICIAL_SRC VENV [SET ...]
#   OFFICIAL_SRC  a checkout of github.com/facebookresearch/spiritlm
#   VENV          the environment built by tools/official_reference/setup.sh
#   SET           fixture folders to rebuild (default: all, in dependency order: lm reads tokenizer's text model)
# The optional pYAAPT fixture of pitch/ is recorded when YAAPT_SITE names a folder holding amfm_decompy.
set -euo pipefail
official_src=${1:?usage: record_all.sh OFFICIAL_SRC VENV [SET ...]}
venv=${2:?usage: record_all.sh OFFICIAL_SRC VENV [SET ...]}
shift 2
python="$venv/bin/python"
[ -x "$python" ] || { echo "record_all.sh: error: $python not found; build it with tools/official_reference/setup.sh $venv" >&2; exit 2; }
[ -d "$official_src/spiritlm" ] || { echo "record_all.sh: error: $official_src is not a checkout of facebookresearch/spiritlm" >&2; exit 2; }
official_src=$(cd "$official_src" && pwd)
cd "$(dirname "$0")/../.."
sets=("$@")
[ ${#sets[@]} -gt 0 ] || sets=(units tokenizer lm speech_tokenizer style pitch expressive vocoder processing stsp end_to_end few_shot_tasks likelihood)
for set in "${sets[@]}"; do
    case $set in
        units) "$python" tests/fixtures/units/record_units.py "$official_src" ;;
        tokenizer) "$python" tests/fixtures/tokenizer/record_tokenizer.py "$official_src" ;;
        lm) "$python" tests/fixtures/lm/record_lm.py "$official_src" ;;
        speech_tokenizer) "$python" tests/fixtures/speech_tokenizer/record_hubert_units.py "$official_src" ;;
        style) "$python" tests/fixtures/style/record_style.py "$official_src" ;;
        pitch) "$python" tests/fixtures/pitch/record_pitch.py "$official_src" ${YAAPT_SITE:+"$YAAPT_SITE"} ;;
        expressive) "$python" tests/fixtures/expressive/record_expressive.py "$official_src" ;;
        vocoder) "$python" tests/fixtures/vocoder/record_vocoder.py "$official_src" ;;
        processing) "$python" tests/fixtures/processing/record_processing.py "$official_src" ;;
        stsp)
            "$python" tests/fixtures/stsp/record_few_shot.py "$official_src"
            "$python" tests/fixtures/stsp/record_scores.py "$official_src"
            ;;
        end_to_end) "$python" tests/fixtures/end_to_end/record_end_to_end.py "$official_src" ;;
        few_shot_tasks) "$python" tests/fixtures/few_shot_tasks/record_few_shot_tasks.py "$official_src" ;;
        likelihood) "$python" tests/fixtures/likelihood/record_likelihood.py "$official_src" ;;
        *) echo "record_all.sh: error: unknown fixture set '$set'" >&2; exit 2 ;;
    esac
    echo "recorded tests/fixtures/$set"
done
