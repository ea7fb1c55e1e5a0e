import json
from pathlib import Path

import pytest

from transformers_spiritlm import SpiritLMFeatureExtractor, SpiritLMProcessor
from transformers_spiritlm.evaluation import (
    build_few_shot_prompt,
    few_shot_examples,
    few_shot_prompt_from_manifest,
    half_audio,
    sample_few_shot_rows,
)
from transformers_spiritlm.testing import tiny_lm_config, tiny_spiritlm_tokenizer


FIXTURES = Path(__file__).parent / "fixtures" / "stsp"
AUDIO = FIXTURES / "audio"
OFFICIAL = json.loads((FIXTURES / "official_few_shot.json").read_text())


@pytest.fixture(scope="module")
def processor(official_base_speech_tokenizer):
    """A processor with the BASE speech tokenizer converted from the official-format checkpoint the prompts were
    recorded with."""
    tokenizer = tiny_spiritlm_tokenizer(tiny_lm_config("base"))
    return SpiritLMProcessor(SpiritLMFeatureExtractor(), tokenizer, speech_tokenizer=official_base_speech_tokenizer)


@pytest.mark.parametrize("case", OFFICIAL, ids=lambda case: f"{case['name']}-{case['input_output']}")
def test_few_shot_prompts_equal_the_official_ones(processor, case):
    examples = few_shot_examples(case["picked"], case["input_output"], data_root=AUDIO)
    assert build_few_shot_prompt(processor, examples) == case["prompt"]


def test_three_shots_of_one_row_per_sentiment_sample_like_the_official_code(processor, tmp_path):
    """With one row per sentiment, the official sample is the whole manifest in sentiment order, as ours."""
    case = next(c for c in OFFICIAL if c["name"] == "three_shots" and c["input_output"] == "speech_speech")
    manifest = tmp_path / "s2s.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in case["manifest"]))
    assert few_shot_prompt_from_manifest(processor, manifest, "speech_speech", 3, data_root=AUDIO) == case["prompt"]


def test_the_query_follows_the_examples_with_the_output_marker(processor):
    shots = [({"type": "text", "text": "so sad"}, {"type": "speech", "units": "[Hu3][Hu9]"})]
    query = {"type": "text", "text": "what a day"}
    assert build_few_shot_prompt(processor, shots, query=query, output_modality="speech") == (
        "[Text]so sad[Speech][Hu3][Hu9]\n[Text]what a day[Speech]"
    )
    assert processor.build_few_shot_prompt(shots, query=[query], output_modality="text") == (
        "[Text]so sad[Speech][Hu3][Hu9]\n[Text]what a day"
    )
    speech = processor.build_prompt([{"type": "speech", "audio": AUDIO / "sad.wav"}], output_modality="text")
    assert processor.build_few_shot_prompt(
        shots, query={"type": "speech", "audio": AUDIO / "sad.wav"}, output_modality="text"
    ) == ("[Text]so sad[Speech][Hu3][Hu9]\n" + speech)


def test_halves_split_the_clip_at_half_its_samples():
    import soundfile

    audio, rate = soundfile.read(AUDIO / "neutral.wav", dtype="float32")
    first, second = half_audio(AUDIO / "neutral.wav", "first"), half_audio(AUDIO / "neutral.wav", "second")
    assert first["sampling_rate"] == second["sampling_rate"] == rate == 16000
    assert len(first["array"]) == len(audio) // 2 and len(second["array"]) == len(audio) - len(audio) // 2
    assert (first["array"] == audio[: len(audio) // 2]).all() and (second["array"] == audio[len(audio) // 2 :]).all()


def test_the_sampler_is_balanced_sentiment_ordered_and_reproducible():
    rows = [{"prompt": f"p{i}", "generation": "g", "sentiment": s} for i, s in enumerate(["positive", "negative",
            "neutral", "negative", "positive", "neutral", "negative", "positive", "neutral"])]  # fmt: skip
    picked = sample_few_shot_rows(rows, 6, seed=3)
    assert [row["sentiment"] for row in picked] == ["negative"] * 2 + ["neutral"] * 2 + ["positive"] * 2
    assert len({row["prompt"] for row in picked}) == 6
    assert sample_few_shot_rows(rows, 6, seed=3) == picked
    assert any(sample_few_shot_rows(rows, 6, seed=seed) != picked for seed in range(4, 10))
    # ceil(4 / 3) = 2 per sentiment, as the official sampler
    assert len(sample_few_shot_rows(rows, 4, seed=0)) == 6


def test_few_shot_bad_inputs_are_clear_errors(processor):
    rows = [{"prompt": "a", "generation": "b", "sentiment": "positive"}] * 2
    with pytest.raises(ValueError, match="cannot take 3 few-shot examples from a manifest of 2 rows"):
        sample_few_shot_rows(rows, 3)
    with pytest.raises(
        ValueError, match="4 shots take 2 examples per sentiment, but the manifest has only 1 'neutral'"
    ):
        sample_few_shot_rows(rows * 2 + [{"prompt": "c", "generation": "d", "sentiment": "neutral"}], 4)
    with pytest.raises(ValueError, match="few-shot row 0: no 'sentiment' field"):
        sample_few_shot_rows([{"prompt": "a", "generation": "b"}], 1)
    with pytest.raises(ValueError, match="unknown direction 'speech2text'"):
        few_shot_examples(rows, "speech2text")
    with pytest.raises(FileNotFoundError, match="few-shot row 0: audio file .*missing.wav does not exist"):
        few_shot_examples([{"prompt": "missing.wav", "generation": "b"}], "speech_text", data_root=AUDIO)
    with pytest.raises(ValueError, match="example 0 must be an \\(input, output\\) pair"):
        processor.build_few_shot_prompt([({"type": "text", "text": "a"},)])
    with pytest.raises(ValueError, match="examples must be a non-empty list"):
        processor.build_few_shot_prompt([])
