"""The whole chain against the official `Spiritlm.generate`: official-format checkpoints -> conversion -> pipeline
(prompt from audio, language model in float32 and in bfloat16, greedy generation, parsing, vocoding), both variants,
recorded by tests/fixtures/end_to_end/record_end_to_end.py on the same tiny random weights and the real FCPE weights.
"""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from transformers import pipeline

from transformers_spiritlm.conversion.convert_spiritlm_to_hf import convert_spiritlm_to_hf
from transformers_spiritlm.processing_spiritlm import parse_generation
from transformers_spiritlm.testing import official_lm
from transformers_spiritlm.testing.official_hubert import weights_digest, write_official_hubert_checkpoints
from transformers_spiritlm.testing.official_pitch import write_official_vqvae_f0
from transformers_spiritlm.testing.official_style import write_official_style_encoder
from transformers_spiritlm.testing.official_vocoder import write_official_vocoders


FIXTURES = Path(__file__).parent / "fixtures"
RECORD_DIR = FIXTURES / "end_to_end"
RECORDED = json.loads((RECORD_DIR / "official_end_to_end.json").read_text(encoding="utf-8"))
WAVEFORMS = np.load(RECORD_DIR / "official_end_to_end.npz")
TEXT_MODEL = FIXTURES / "tokenizer" / "text_sentencepiece.model"
AUDIO = FIXTURES / "audio"
CASES = RECORDED["cases"]  # inputs, output_modality, max_new_tokens
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
RUNS = [(variant, dtype, case) for variant in ("base", "expressive") for dtype in DTYPES for case in CASES]


def speech_segment(content: str) -> dict:
    """A file of tests/fixtures/audio/, or "first_second": its 2 s clip's first 16000 samples as an array."""
    if content == "first_second":
        audio = soundfile.read(AUDIO / "speech_2s_16k.wav", dtype="float32")[0][:16000]
        return {"type": "speech", "audio": audio, "sampling_rate": 16000}
    return {"type": "speech", "audio": AUDIO / content}


@pytest.fixture(scope="module")
def official_checkpoints(tmp_path_factory) -> Path:
    """The checkpoint tree of the recording, written by the same writers with the same seed."""
    directory = tmp_path_factory.mktemp("official-e2e")
    speech_dir = directory / "speech_tokenizer"
    write_official_hubert_checkpoints(directory, seed=0)
    write_official_vqvae_f0(speech_dir / "vqvae_f0_quantizer", seed=0)
    write_official_style_encoder(speech_dir / "style_encoder_w2v2", seed=0)
    write_official_vocoders(directory, seed=0)
    for variant in ("base", "expressive"):
        official_lm.write_official_lm(
            directory,
            variant,
            seed=0,
            sentencepiece_model=TEXT_MODEL.read_bytes(),
            vocab_size=official_lm.TINY_TEXT_VOCAB_SIZE + len(official_lm.official_unit_tokens(variant)),
        )
    return directory


@pytest.fixture(scope="module")
def converted(official_checkpoints, fcpe_checkpoint_path, tmp_path_factory) -> dict[str, Path]:
    output = tmp_path_factory.mktemp("converted-e2e")
    return {
        variant: convert_spiritlm_to_hf(
            official_checkpoints,
            variant,
            output / variant,
            dtype="float32",
            fcpe_checkpoint=fcpe_checkpoint_path,
            log=lambda message: None,
        )
        for variant in ("base", "expressive")
    }


@pytest.fixture(scope="module")
def pipes(converted) -> dict[tuple[str, str], object]:
    return {
        (variant, dtype): pipeline("spirit-lm", model=str(converted[variant]), dtype=DTYPES[dtype])
        for variant in converted
        for dtype in DTYPES
    }


@pytest.fixture(scope="module")
def answers(pipes, caplog_module) -> dict:
    """Our answer and the warnings it logged, per (variant, dtype, case)."""
    results = {}
    for variant, dtype, case in RUNS:
        inputs = [speech_segment(content) if kind == "speech" else {"type": "text", "text": content}
                  for kind, content in CASES[case]["inputs"]]  # fmt: skip
        caplog_module.clear()
        answer = pipes[variant, dtype](
            inputs,
            output_modality=CASES[case]["output_modality"],
            do_sample=False,
            max_new_tokens=CASES[case]["max_new_tokens"],
            speaker_id=2,
            seed=0,
            return_prompt=True,
        )
        results[variant, dtype, case] = answer, [record.getMessage() for record in caplog_module.records]
    return results


@pytest.fixture(scope="module")
def caplog_module():
    """Module-scoped log capture (pytest's `caplog` is per test)."""
    handler = _ListHandler()
    logger = logging.getLogger("transformers_spiritlm")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def clear(self):
        self.records = []


def test_regenerated_language_models_are_the_recorded_ones(official_checkpoints):
    for variant in ("base", "expressive"):
        directory = official_checkpoints / "spiritlm_model" / official_lm.OFFICIAL_LM_DIRS[variant]
        state = torch.load(directory / "pytorch_model.bin", weights_only=True)
        assert weights_digest(state) == RECORDED["variants"][variant]["lm_weights_sha256"]


def test_language_model_dtype_only(pipes):
    for (_, dtype), pipe in pipes.items():
        assert pipe.model.dtype == DTYPES[dtype]
        assert pipe.processor.speech_tokenizer.dtype == torch.float32
        assert pipe.vocoder.dtype == torch.float32


@pytest.mark.parametrize(
    "variant, dtype, case",
    [run for run in RUNS if "error" not in RECORDED["variants"][run[0]]["runs"][run[1]][run[2]]],
)
def test_answer_equals_official(answers, pipes, variant, dtype, case):
    official = RECORDED["variants"][variant]["runs"][dtype][case]
    answer, _ = answers[variant, dtype, case]
    assert answer["prompt"] == official["prompt"]
    segments = answer["segments"]
    assert [segment["type"] for segment in segments] == [output["type"] for output in official["outputs"]]
    for segment, expected in zip(segments, official["outputs"]):
        if expected["type"] == "text":
            assert segment["text"] == expected["text"]
        else:
            torch.testing.assert_close(
                torch.from_numpy(segment["audio"]), torch.from_numpy(WAVEFORMS[expected["key"]]), atol=1e-4, rtol=0
            )
    if CASES[case]["output_modality"] == "speech":
        # The generated ids themselves: the units are the official continuation.
        assert segments[0]["units"] == official["continuation"].strip()


@pytest.mark.parametrize(
    "variant, dtype, case", [run for run in RUNS if "error" in RECORDED["variants"][run[0]]["runs"][run[1]][run[2]]]
)
def test_where_official_crashes_ours_returns_the_speech_without_audio(answers, variant, dtype, case):
    official = RECORDED["variants"][variant]["runs"][dtype][case]
    # Official: every speech chunk is vocoded before the short ones are dropped, and one without pitch units fails.
    assert official["error"] == "KeyError: 'f0_code'"
    answer, warnings = answers[variant, dtype, case]
    assert answer["prompt"] == official["prompt"]
    expected = [
        {"type": "text", "text": content} if kind == "t" else {"type": "speech", "units": content}
        for content, kind in official["parsed"]
    ]
    assert parse_generation(official["continuation"].strip()) == expected
    texts = [segment["text"] for segment in answer["segments"] if segment["type"] == "text"]
    assert texts == [segment["text"] for segment in expected if segment["type"] == "text"]
    speech = [segment for segment in answer["segments"] if segment["type"] == "speech"]
    for segment in speech:
        assert "[Pi" not in segment["units"] and segment["audio"].size == 0
    assert sum("has no pitch units" in message for message in warnings) >= len(speech)
