import logging
import random
import re
import runpy
import typing
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from transformers import GenerationConfig, pipeline, set_seed

from transformers_spiritlm import SpiritLMPipeline, SpiritLMProcessor, SpiritLMVocoder
from transformers_spiritlm.modalities import Segment
from transformers_spiritlm.pipeline_spiritlm import Prompt, PromptAndSegments
from transformers_spiritlm.processing_spiritlm import parse_generation
from transformers_spiritlm.testing import build_tiny_repo, tiny_vocoder


AUDIO = Path(__file__).parent / "fixtures" / "audio"
UNIT_PREFIXES = ("[Hu", "[Pi", "[St")


@pytest.fixture(scope="module")
def pipe(tiny_repo):
    return pipeline("spirit-lm", model=str(tiny_repo))


def check_text(segment):
    assert set(segment) == {"type", "text"} and segment["type"] == "text" and isinstance(segment["text"], str)


def check_speech(segment):
    assert set(segment) == {"type", "audio", "sampling_rate", "units"} and segment["type"] == "speech"
    assert isinstance(segment["audio"], np.ndarray) and segment["audio"].dtype == np.float32
    assert segment["audio"].ndim == 1 and segment["sampling_rate"] == 16000
    assert segment["units"].startswith(UNIT_PREFIXES)


def test_call_is_typed_per_input_form():
    # As transformers' TextToAudioPipeline: one prompt gives its segments, a list of prompts one list each.
    signatures = [typing.get_type_hints(overload) for overload in typing.get_overloads(SpiritLMPipeline.__call__)]
    assert [(hints["inputs"], hints.get("return_prompt"), hints["return"]) for hints in signatures] == [
        (Prompt, typing.Literal[True], PromptAndSegments),
        (list[Prompt], typing.Literal[True], list[PromptAndSegments]),
        (Prompt, None, list[Segment]),
        (list[Prompt], None, list[list[Segment]]),
    ]


def test_pipeline_loads_model_processor_and_vocoder(pipe):
    assert isinstance(pipe, SpiritLMPipeline)
    assert isinstance(pipe.processor, SpiritLMProcessor) and pipe.processor.speech_tokenizer is not None
    assert isinstance(pipe.vocoder, SpiritLMVocoder)
    assert pipe.tokenizer is pipe.processor.tokenizer


def test_text_output(pipe):
    outputs = pipe("one two three", output_modality="text", max_new_tokens=30, do_sample=True, seed=0)
    assert len(outputs) == 1
    check_text(outputs[0])
    assert not any(marker in outputs[0]["text"] for marker in ("[Text]", "[Speech]", *UNIT_PREFIXES))


def test_speech_output_is_vocoded_units(pipe):
    (segment,) = pipe(AUDIO / "speech_2s_16k.wav", output_modality="speech", max_new_tokens=40, seed=0)
    check_speech(segment)
    # Only unit tokens were generated: the string is nothing but [HuN] / [PiN] / [StN] tokens.
    assert "".join(re.findall(r"\[(?:Hu|Pi|St)\d+\]", segment["units"])) == segment["units"]
    # Without a style unit, decoding picks one of the most common styles with python's `random`, as official
    # (`random.choice([71, 68, 98])`); seed=0 seeds it before generating, which does not draw from it.
    style = "" if "[St" in segment["units"] else f"[St{random.Random(0).choice([71, 68, 98])}]"
    expected = pipe.vocoder.decode_string(style + segment["units"], speaker_id=2).numpy()
    np.testing.assert_allclose(segment["audio"], expected, atol=1e-6, rtol=0)
    (other_speaker,) = pipe(
        AUDIO / "speech_2s_16k.wav", output_modality="speech", max_new_tokens=40, seed=0, speaker_id=3
    )
    assert other_speaker["units"] == segment["units"] and not np.allclose(other_speaker["audio"], segment["audio"])


def test_speech_without_style_units_gets_the_seeded_random_style(pipe):
    # The official decoding fills a missing style with `random.choice([71, 68, 98])` from python's global `random`;
    # seed=0 seeds it before generating (which does not draw from it), so the pick is that of random.Random(0).
    units = "[Pi3][Hu5][Hu7][Pi9][Hu11][Hu13][Hu5]"
    random.seed(0)
    (segment,) = pipe.processor.decode_generation("[Speech]", units, "speech", vocoder=pipe.vocoder)
    style = random.Random(0).choice([71, 68, 98])
    np.testing.assert_array_equal(segment["audio"], pipe.vocoder.decode_string(f"[St{style}]" + units).numpy())
    assert segment["units"] == units


def test_arbitrary_output_is_the_parsed_continuation(pipe):
    output = pipe(
        [{"type": "text", "text": "Good morning"}, {"type": "speech", "units": "[St3][Pi1][Hu5][Hu9]"}],
        output_modality="arbitrary",
        max_new_tokens=60,
        do_sample=True,
        seed=3,
        return_prompt=True,
    )
    assert output["prompt"] == "[Text]Good morning[Speech][St3][Pi1][Hu5][Hu9]"
    # The same sampled continuation from generate() (arbitrary: no constraint), split by the parser that is pinned to
    # the official one (test_processing.py). With this seed every speech chunk is shorter than the official minimum
    # of 24 new hubert units (the first one continues the prompt's speech), so only the text is returned.
    inputs = pipe.tokenizer(output["prompt"], return_tensors="pt")
    set_seed(3)
    ids = pipe.model.generate(**inputs, max_new_tokens=60, do_sample=True, pad_token_id=pipe.tokenizer.pad_token_id)
    continuation = ids[0, inputs.input_ids.shape[1] :].tolist()
    whole = pipe.processor.decode_text(inputs.input_ids[0].tolist() + continuation)
    expected = parse_generation(whole[len(pipe.processor.decode_text(inputs.input_ids[0])) :].strip())
    speech = [segment["units"] for segment in expected if segment["type"] == "speech"]
    assert speech and all(units.count("[Hu") < 24 for units in speech)
    assert output["segments"] == [segment for segment in expected if segment["type"] == "text"]


def test_batch_of_three_matches_single_calls_and_returns_prompts(pipe):
    stereo, rate = soundfile.read(AUDIO / "speech_stereo_44k.wav", dtype="float32")
    inputs = [
        "hello",
        {"array": stereo.T[:, : rate // 2], "sampling_rate": rate},
        [{"type": "text", "text": "a"}, {"type": "speech", "audio": torch.zeros(8000), "sampling_rate": 16000}],
    ]
    outputs = pipe(inputs, output_modality="speech", max_new_tokens=30, seed=1, return_prompt=True)
    assert len(outputs) == 3
    for item, output in zip(inputs, outputs):
        assert set(output) == {"prompt", "segments"}
        (segment,) = output["segments"]
        check_speech(segment)
        (alone,) = pipe(item, output_modality="speech", max_new_tokens=30, seed=1)
        assert alone["units"] == segment["units"]
    assert outputs[0]["prompt"] == "[Text]hello[Speech]"
    units = r"(?:\[(?:Hu|Pi|St)\d+\])+"
    assert re.fullmatch(rf"\[Speech\]{units}", outputs[1]["prompt"])
    assert re.fullmatch(rf"\[Text\]a\[Speech\]{units}", outputs[2]["prompt"])
    assert all(f"[{prefix}" in outputs[1]["prompt"] for prefix in ("St", "Pi", "Hu"))  # EXPRESSIVE speech tokenizer


def test_batch_size_2_left_pads_and_matches_one_by_one(pipe):
    inputs = ["one two three four five", "hi", [{"type": "speech", "units": "[Hu1][Hu2][Hu3]"}]]
    kwargs = {"output_modality": "text", "max_new_tokens": 10, "do_sample": False}
    assert pipe(inputs, batch_size=2, **kwargs) == pipe(inputs, **kwargs)


def test_seed_makes_sampling_reproducible(pipe):
    first = pipe("one", output_modality="text", max_new_tokens=20, do_sample=True, seed=5)
    assert pipe("one", output_modality="text", max_new_tokens=20, do_sample=True, seed=5) == first


@pytest.mark.parametrize(
    "inputs, kwargs, error, message",
    [
        ([{"type": "video", "url": "x"}], {}, ValueError, "unknown segment type 'video'; use one of 'text', 'speech'"),
        ([], {}, ValueError, "empty input"),
        ([[]], {}, ValueError, "input 0: the segment list is empty"),
        ("hi", {"output_modality": "speach"}, ValueError, "use one of 'text', 'speech', 'arbitrary'"),
        (Path("missing.wav"), {}, FileNotFoundError, "segment 0: audio file 'missing.wav' does not exist"),
        (AUDIO / "README.md", {}, ValueError, "segment 0: could not read audio file"),
        ({"text": "hi"}, {}, ValueError, "a dict must be a segment .* or a datasets Audio dict"),
        (3.5, {}, TypeError, "unsupported prompt of type float"),
        (
            "hi",
            {"speaker_id": 9},
            ValueError,
            r"unknown speaker_id 9; this vocoder takes 0 to 3 or a name in \['ex01'",
        ),
        ("hi", {"speaker_id": "nobody"}, ValueError, "unknown speaker_id 'nobody'"),
    ],
)
def test_bad_input_is_a_clear_error(pipe, inputs, kwargs, error, message):
    with pytest.raises(error, match=message):
        pipe(inputs, max_new_tokens=2, **kwargs)


def test_low_level_example_runs(tiny_repo, tmp_path, monkeypatch, capsys):
    script = Path(__file__).parents[1] / "examples" / "generate_interleaved.py"
    monkeypatch.setattr("sys.argv", [str(script), "--repo", str(tiny_repo), "--output-dir", str(tmp_path)])
    runpy.run_path(str(script), run_name="__main__")
    printed = capsys.readouterr().out
    assert printed.count("prompt ") == 2 and len(list(tmp_path.glob("prompt*.wav"))) == 2


@pytest.fixture(scope="module")
def lm_only_repo(tmp_path_factory):
    return build_tiny_repo(tmp_path_factory.mktemp("usability") / "tiny", speech_tokenizer=False, vocoder=False)


def test_str_prompt_naming_an_audio_file_warns_once(lm_only_repo, monkeypatch, caplog):
    monkeypatch.chdir(AUDIO)
    pipe = pipeline("spirit-lm", model=str(lm_only_repo))
    caplog.clear()
    for _ in range(2):
        pipe("speech_2s_16k.wav", output_modality="text", max_new_tokens=1, do_sample=False)
    pipe("missing.wav is not a file", output_modality="text", max_new_tokens=1, do_sample=False)
    assert [record.getMessage() for record in caplog.records] == [
        "the text prompt 'speech_2s_16k.wav' names an audio file; a str is always text. To use the file as speech, "
        "pass Path('speech_2s_16k.wav') or {'type': 'speech', 'audio': 'speech_2s_16k.wav'}"
    ]


@pytest.fixture(scope="module")
def base_pipe(tiny_base_repo):
    return pipeline("spirit-lm", model=str(tiny_base_repo))


def greedy_continuation(pipe, prompt: str, max_new_tokens: int, **kwargs) -> list[int]:
    """New ids of plain `generate` (no output-modality constraint) on `prompt`."""
    inputs = pipe.tokenizer(prompt, return_tensors="pt")
    ids = pipe.model.generate(
        **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pipe.tokenizer.pad_token_id, **kwargs
    )
    return ids[0, inputs.input_ids.shape[1] :].tolist()


def continuation_text(pipe, prompt: str, new_ids: list[int]) -> str:
    """The official continuation: the decoded whole minus the decoded prompt, stripped."""
    prompt_ids = pipe.tokenizer(prompt).input_ids
    whole = pipe.processor.decode_text(prompt_ids + new_ids)
    return whole[len(pipe.processor.decode_text(prompt_ids)) :].strip()


def test_force_output_modality_false_lifts_the_constraint(base_pipe):
    kwargs = {"output_modality": "text", "max_new_tokens": 12, "do_sample": False, "return_prompt": True}
    free = base_pipe("one two", force_output_modality=False, **kwargs)
    forced = base_pipe("one two", **kwargs)
    assert free["prompt"] == forced["prompt"] == "[Text]one two"
    new_ids = greedy_continuation(base_pipe, free["prompt"], 12)
    assert free["segments"] == [{"type": "text", "text": continuation_text(base_pipe, free["prompt"], new_ids)}]
    # The free model writes unit tokens here, which the constraint forbids.
    assert "[Hu" in free["segments"][0]["text"] and "[Hu" not in forced["segments"][0]["text"]


def test_eos_token_id_and_generation_config_reach_post_processing(base_pipe):
    new_ids = greedy_continuation(base_pipe, "[Text]one two", 12)
    stop = new_ids[4]
    expected = [
        {"type": "text", "text": continuation_text(base_pipe, "[Text]one two", new_ids[: new_ids.index(stop)])}
    ]
    kwargs = {"output_modality": "text", "force_output_modality": False, "do_sample": False}
    assert base_pipe("one two", eos_token_id=stop, max_new_tokens=12, **kwargs) == expected
    config = GenerationConfig(eos_token_id=stop, max_new_tokens=12, pad_token_id=base_pipe.tokenizer.pad_token_id)
    assert base_pipe("one two", generation_config=config, **kwargs) == expected


def test_default_max_new_tokens_is_200(base_pipe, monkeypatch):
    lengths = []
    generate = base_pipe.model.generate

    def spy(*args, **kwargs):
        sequences = generate(*args, **kwargs)
        lengths.append(sequences.shape[1] - kwargs["input_ids"].shape[1])
        return sequences

    monkeypatch.setattr(base_pipe.model, "generate", spy)
    # No end-of-sequence id to stop at: the length is the default one.
    base_pipe("hi", output_modality="speech", do_sample=False, eos_token_id=[])
    assert lengths == [200]


def test_repo_without_vocoder_returns_units_and_warns(tmp_path, caplog):
    repo = build_tiny_repo(tmp_path / "repo", variant="base", vocoder=False)
    with caplog.at_level(logging.WARNING, logger="transformers_spiritlm"):
        no_vocoder = pipeline("spirit-lm", model=str(repo))
    assert no_vocoder.vocoder is None
    assert f"no vocoder found in '{repo}' (expected a vocoder/ folder)" in caplog.text
    (segment,) = no_vocoder("hi", output_modality="speech", max_new_tokens=10, do_sample=False)
    assert set(segment) == {"type", "units"} and parse_generation(segment["units"]) == [segment | {"type": "speech"}]


def test_vocoder_argument_replaces_the_repo_vocoder(tiny_base_repo, tmp_path):
    other = tiny_vocoder("base", seed=5)
    other.save_pretrained(tmp_path / "other")
    for vocoder in (other, tmp_path / "other"):
        custom = pipeline("spirit-lm", model=str(tiny_base_repo), vocoder=vocoder)
        (segment,) = custom("hi", output_modality="speech", max_new_tokens=30, do_sample=False, seed=0)
        expected = other.decode_string(segment["units"], speaker_id=2).numpy()
        np.testing.assert_array_equal(segment["audio"], expected)
