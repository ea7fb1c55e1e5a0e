"""The whole chain against the official `Spiritlm.generate`: official-format checkpoints -> conversion -> pipeline
(prompt from audio, language model in float32 and in bfloat16, greedy generation, parsing, vocoding), both variants,
recorded by tests/fixtures/end_to_end/record_end_to_end.py on the same tiny random weights and the real FCPE weights.

float32 is compared exactly: our greedy answer is the official one. A bfloat16 greedy answer is not portable: matmul
kernels round differently per instruction set (AVX-512, AVX2, plain), so the official code's own bf16 answer changes
with the CPU (`ATEN_CPU_CAPABILITY=avx2` or `default` reproduces another CPU). So in bfloat16 the recorded official
sequence is teacher-forced through our model, which must pick each official token unless bf16 rounding explains the
difference (see `BF16_MARGIN_ULPS`), and our post-processing of the official ids must give the official outputs.
"""

import json
import logging
from pathlib import Path

import numpy as np
import official_lm
import pytest
import soundfile
import torch
from official_hubert import weights_digest, write_official_hubert_checkpoints
from official_pitch import write_official_vqvae_f0
from official_style import write_official_style_encoder
from official_vocoder import write_official_vocoders
from transformers import pipeline

from transformers_spiritlm import SpiritLMModalityLogitsProcessor
from transformers_spiritlm.conversion.convert_spiritlm_to_hf import convert_spiritlm_to_hf
from transformers_spiritlm.processing_spiritlm import parse_generation


FIXTURES = Path(__file__).parent / "fixtures"
RECORD_DIR = FIXTURES / "end_to_end"
RECORDED = json.loads((RECORD_DIR / "official_end_to_end.json").read_text(encoding="utf-8"))
WAVEFORMS = np.load(RECORD_DIR / "official_end_to_end.npz")
TEXT_MODEL = FIXTURES / "tokenizer" / "text_sentencepiece.model"
AUDIO = FIXTURES / "audio"
CASES = RECORDED["cases"]  # inputs, output_modality, max_new_tokens
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
RUNS = [(variant, dtype, case) for variant in ("base", "expressive") for dtype in DTYPES for case in CASES]
BF16_RUNS = [(variant, case) for variant in ("base", "expressive") for case in CASES]
# bfloat16 keeps 8 significant bits: logits of magnitude [2, 4), those of these models' top tokens, are spaced 2**-6
# apart. Kernels for different instruction sets round differently all through the residual stream; on these fixtures
# the official token's logit was within 1 such spacing of our top logit under ATEN_CPU_CAPABILITY default, avx2 and
# avx512 (greedy answers differed on 3 of 14 runs), while bf16 logits differ from float32 ones by up to 0.056 (3.6
# spacings). 4 spacings leave room for other CPUs; a wrong token is typically several tenths below the top.
BF16_MARGIN_ULPS = 4
# Largest |bf16 - float32| logit allowed on the teacher-forced steps (0.056 measured on three instruction sets): a
# bf16-only defect (a cast, rotary or norm computed wrongly in low precision) shows up here even when argmaxes survive.
BF16_LOGIT_TOLERANCE = 0.125


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


def case_inputs(case: str) -> list[dict]:
    return [speech_segment(content) if kind == "speech" else {"type": "text", "text": content}
            for kind, content in CASES[case]["inputs"]]  # fmt: skip


def official_sequence(pipe, variant: str, dtype: str, case: str) -> dict:
    """Our prompt of `case` followed by the official generated ids, as the pipeline's `_forward` returns them."""
    model_inputs = pipe.preprocess(case_inputs(case), output_modality=CASES[case]["output_modality"])
    new_ids = torch.tensor(RECORDED["variants"][variant]["runs"][dtype][case]["new_ids"])
    return {
        "sequences": torch.cat([model_inputs["input_ids"][0], new_ids])[None],
        "attention_mask": model_inputs["attention_mask"],
        "prompt": model_inputs["prompt"],
    }


@pytest.fixture(scope="module")
def answers(pipes, caplog_module) -> dict:
    """Our answer and the warnings it logged, per (variant, dtype, case): in float32 our greedy generation, in
    bfloat16 our post-processing of the official generated ids (the ids themselves: `test_bfloat16_*`)."""
    results = {}
    for variant, dtype, case in RUNS:
        output_modality = CASES[case]["output_modality"]
        caplog_module.clear()
        if dtype == "bfloat16":
            sequence = official_sequence(pipes[variant, dtype], variant, dtype, case)
            answer = pipes[variant, dtype].postprocess(sequence, output_modality, speaker_id=2, return_prompt=True)
        else:
            answer = pipes[variant, dtype](
                case_inputs(case),
                output_modality=output_modality,
                do_sample=False,
                max_new_tokens=CASES[case]["max_new_tokens"],
                speaker_id=2,
                seed=0,
                return_prompt=True,
            )
        results[variant, dtype, case] = answer, [record.getMessage() for record in caplog_module.records]
    return results


def teacher_forced_scores(model, sequence: dict, output_modality: str) -> torch.Tensor:
    """The scores greedy decoding compares at each generated position of `sequence` (logits, modality-constrained
    with our logits processor, in float32 as `generate` casts them), given the official ids before it."""
    ids = sequence["sequences"]
    steps = ids.shape[1] - sequence["attention_mask"].shape[1]
    with torch.no_grad():
        logits = model(ids).logits[0, -steps - 1 : -1].float()
    if output_modality == "arbitrary":
        return logits
    return SpiritLMModalityLogitsProcessor(model.config, output_modality)(ids, logits)


def official_token_violations(scores: torch.Tensor, official_ids: torch.Tensor) -> list[str]:
    """The steps where the official token is banned, or below our top score by more than `BF16_MARGIN_ULPS` bf16
    spacings of that top score."""
    official_scores = scores.gather(1, official_ids[:, None])[:, 0]
    top = scores.max(dim=1).values
    margins = BF16_MARGIN_ULPS * 2.0 ** (torch.floor(torch.log2(top.abs())) - 7)
    return [
        f"step {step}: official id {official_ids[step].item()} scores {official_scores[step].item():.4f}, our top "
        f"id {scores[step].argmax().item()} {top[step].item():.4f} (margin {margins[step].item():.4f})"
        for step in range(len(official_ids))
        if not official_scores[step] >= top[step] - margins[step]
    ]


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


@pytest.mark.parametrize("variant, case", BF16_RUNS)
def test_bfloat16_picks_the_official_tokens(pipes, variant, case):
    sequence = official_sequence(pipes[variant, "bfloat16"], variant, "bfloat16", case)
    assert sequence["prompt"] == RECORDED["variants"][variant]["runs"]["bfloat16"][case]["prompt"]
    output_modality = CASES[case]["output_modality"]
    scores = teacher_forced_scores(pipes[variant, "bfloat16"].model, sequence, output_modality)
    official_ids = sequence["sequences"][0, sequence["attention_mask"].shape[1] :]
    assert official_token_violations(scores, official_ids) == []
    reference = teacher_forced_scores(pipes[variant, "float32"].model, sequence, output_modality)
    allowed = reference.isfinite()
    assert torch.equal(allowed, scores.isfinite())
    torch.testing.assert_close(scores[allowed], reference[allowed], atol=BF16_LOGIT_TOLERANCE, rtol=0)


def test_bfloat16_check_fails_on_a_planted_wrong_token(pipes):
    variant, case = "base", "text_to_speech"
    sequence = official_sequence(pipes[variant, "bfloat16"], variant, "bfloat16", case)
    scores = teacher_forced_scores(pipes[variant, "bfloat16"].model, sequence, "speech")
    official_ids = sequence["sequences"][0, sequence["attention_mask"].shape[1] :]
    assert official_token_violations(scores, official_ids) == []
    # Our runner-up in place of the official token, at every step where it is not within the margin of the top...
    top_two = scores.topk(2, dim=1)
    runner_up = official_ids.clone()
    runner_up[:] = top_two.indices[:, 1]
    beyond = [
        step
        for step in range(len(official_ids))
        if official_token_violations(scores[step : step + 1], runner_up[step : step + 1])
    ]
    assert len(beyond) >= len(official_ids) // 2
    planted = official_ids.clone()
    planted[beyond[0]] = runner_up[beyond[0]]
    assert [violation.split(":")[0] for violation in official_token_violations(scores, planted)] == [
        f"step {beyond[0]}"
    ]
    # ... and a text token, which speech output bans.
    planted = official_ids.clone()
    planted[3] = 42
    assert [violation.split(":")[0] for violation in official_token_violations(scores, planted)] == ["step 3"]


def test_bfloat16_check_fails_on_a_planted_rotary_error(pipes, monkeypatch):
    """A rotary embedding that is wrong in bfloat16 only (twice the angle, as a wrong position scaling would give) fails
    the bf16 test's checks."""
    variant, case = "expressive", "speech_to_speech"
    model = pipes[variant, "bfloat16"].model
    rotary = model.model.rotary_emb
    original = rotary.forward
    monkeypatch.setattr(rotary, "forward", lambda x, position_ids: original(x, position_ids * 2))
    sequence = official_sequence(pipes[variant, "bfloat16"], variant, "bfloat16", case)
    scores = teacher_forced_scores(model, sequence, "speech")
    official_ids = sequence["sequences"][0, sequence["attention_mask"].shape[1] :]
    reference = teacher_forced_scores(pipes[variant, "float32"].model, sequence, "speech")
    allowed = reference.isfinite()
    assert (scores[allowed] - reference[allowed]).abs().max() > BF16_LOGIT_TOLERANCE
    assert official_token_violations(scores, official_ids)
