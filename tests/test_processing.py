import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from official_vocoder import OFFICIAL_VOCODER_DIRS, write_official_vocoders
from transformers import AutoProcessor, pipeline

from transformers_spiritlm import SpiritLMFeatureExtractor, SpiritLMProcessor, SpiritLMVocoder
from transformers_spiritlm.conversion.convert_vocoder import load_official_vocoder
from transformers_spiritlm.processing_spiritlm import (
    GenerationSplitter,
    SegmentUpdate,
    ends_with_unit_token,
    last_speech_start,
    parse_generation,
    starts_with_unit_token,
)


FIXTURES = Path(__file__).parent / "fixtures" / "processing"
AUDIO = Path(__file__).parent / "fixtures" / "audio"
OFFICIAL = json.loads((FIXTURES / "official_processing.json").read_text())
TYPES = {"t": "text", "s": "speech"}


@pytest.fixture(scope="module")
def processor(tiny_repo):
    return SpiritLMProcessor.from_pretrained(tiny_repo, load_speech_tokenizer=False)


@pytest.fixture(scope="module")
def vocoders(tmp_path_factory):
    """The tiny official-format vocoders the decoding fixtures were recorded with, converted."""
    root = tmp_path_factory.mktemp("official")
    write_official_vocoders(root, seed=0)
    return {
        variant: load_official_vocoder(root / "speech_tokenizer" / folder)
        for variant, folder in OFFICIAL_VOCODER_DIRS.items()
    }


@pytest.mark.parametrize("case", OFFICIAL["parse"], ids=lambda case: repr(case["string"])[:40])
def test_parse_matches_the_official_parser(processor, case):
    expected = [
        {"type": TYPES[kind], "text" if kind == "t" else "units": content} for content, kind in case["segments"]
    ]
    assert processor.parse(case["string"]) == expected


def test_parse_examples():
    assert parse_generation("[Text]Hi[Speech][St3][Pi1][Hu5][Hu6][Text] there[") == [
        {"type": "text", "text": "Hi"},
        {"type": "speech", "units": "[St3][Pi1][Hu5][Hu6]"},
        {"type": "text", "text": " there["},
    ]
    with pytest.raises(TypeError, match="parse expects a str, got list"):
        parse_generation(["[Hu1]"])


def test_parse_reads_text_that_looks_like_units_as_text():
    # The official parser reads a run of text up to the next "[" whatever it holds (its `else` branch): " Stop" or
    # "xPi" are text, only "[" + Hu / Pi / St opens speech.
    assert parse_generation("[Text] Stop it[Speech][Hu1]xPi[Pi2]") == [
        {"type": "text", "text": " Stop it"},
        {"type": "speech", "units": "[Hu1]"},
        {"type": "text", "text": "xPi"},
        {"type": "speech", "units": "[Pi2]"},
    ]


@pytest.mark.parametrize(
    "function, key",
    [
        (ends_with_unit_token, "does_end_with_speech_token"),
        (starts_with_unit_token, "does_start_with_speech_token"),
        (last_speech_start, "find_prompt_last_speech_start_position"),
    ],
)
def test_speech_boundary_helpers_match_the_official_ones(function, key):
    assert [[string, function(string)] for string, _ in OFFICIAL[key]] == OFFICIAL[key]


@pytest.mark.parametrize(
    "case", OFFICIAL["build_prompt"], ids=lambda case: f"{case['name']}-{case['output_modality']}"
)
def test_build_prompt_matches_the_official_prompt_builder(processor, case):
    units = OFFICIAL["unit_strings"]
    segments = [
        {"type": "text", "text": content} if kind == "text" else {"type": "speech", "units": units[content]}
        for kind, content in case["segments"]
    ]
    assert processor.build_prompt(segments, output_modality=case["output_modality"]) == case["prompt"]


@pytest.fixture(scope="module")
def official_base_processor(processor, official_base_speech_tokenizer):
    """The processor with the speech tokenizer converted from the official-format checkpoint of the recording."""
    return SpiritLMProcessor(
        processor.feature_extractor, processor.tokenizer, speech_tokenizer=official_base_speech_tokenizer
    )


@pytest.mark.parametrize(
    "case", OFFICIAL["build_prompt_from_audio"], ids=lambda case: f"{case['name']}-{case['output_modality']}"
)
def test_build_prompt_from_audio_matches_the_official_prompt_builder(official_base_processor, case):
    """Files (16 kHz, 44.1 kHz stereo) and arrays, through the feature extractor and the speech tokenizer."""
    segments = []
    for kind, content in case["segments"]:
        if kind == "text":
            segments.append({"type": "text", "text": content})
        elif content.startswith("array:"):
            audio, rate = soundfile.read(AUDIO / content.removeprefix("array:"), dtype="float32")
            segments.append({"type": "speech", "audio": audio, "sampling_rate": rate})
        else:
            segments.append({"type": "speech", "audio": AUDIO / content})
    assert official_base_processor.build_prompt(segments, output_modality=case["output_modality"]) == case["prompt"]


def test_call_left_pads_a_batch_and_matches_tokenizing_each_prompt(processor):
    batch = [
        [{"type": "text", "text": "Good morning, how are you"}, {"type": "speech", "units": "[Hu3][Hu9]"}],
        [{"type": "speech", "units": "[St1][Pi2][Hu7]"}],
        [{"type": "text", "text": "one two"}],
    ]
    encoded = processor(batch, output_modality="text")
    assert encoded["input_ids"].shape == encoded["attention_mask"].shape
    for row, segments in enumerate(batch):
        ids = processor.tokenizer(processor.build_prompt(segments, "text"))["input_ids"]
        padding = encoded["input_ids"].shape[1] - len(ids)
        assert encoded["input_ids"][row].tolist() == [processor.tokenizer.pad_token_id] * padding + ids
        assert encoded["attention_mask"][row].tolist() == [0] * padding + [1] * len(ids)
    assert ids[0] == processor.tokenizer.bos_token_id
    single = processor(batch[1], output_modality="speech")
    assert single["input_ids"].tolist() == [
        processor.tokenizer(processor.build_prompt(batch[1], "speech"))["input_ids"]
    ]


@pytest.mark.parametrize("case", OFFICIAL["decode"], ids=lambda case: case["name"])
def test_decoding_matches_the_official_output_decoding(processor, vocoders, case):
    outputs = processor.decode_generation(
        case["prompt"], case["continuation"], case["output_modality"], vocoder=vocoders[case["variant"]], speaker_id=2
    )
    audios = np.load(FIXTURES / "official_decode_audio.npz")
    assert [output["type"] for output in outputs] == [segment["type"] for segment in case["segments"]]
    for output, expected in zip(outputs, case["segments"]):
        if expected["type"] == "text":
            assert output == expected
            continue
        audio = output["audio"]
        assert audio.dtype == np.float32 and output["sampling_rate"] == 16000
        assert audio.shape == (expected["num_samples"],)
        excerpt = np.concatenate([audio[:512], audio[-256:], audio[::97]])
        torch.testing.assert_close(
            torch.from_numpy(excerpt), torch.from_numpy(audios[expected["audio"]]), atol=1e-4, rtol=0
        )


def test_continued_prompt_speech_returns_only_the_generated_units(processor):
    prompt = "[Text]x[Speech][St1][Pi2][Hu5][Hu6]"
    continuation = "".join(f"[Hu{i}]" for i in range(30)) + "[Text] done"
    speech, text = processor.decode_generation(prompt, continuation, "arbitrary")
    assert speech == {"type": "speech", "units": continuation[: continuation.index("[Text]")]}
    assert text == {"type": "text", "text": " done"}


def test_splitter_sends_each_segment_as_it_becomes_final():
    splitter = GenerationSplitter("[Text]Hi[Speech]", "arbitrary")
    assert splitter.push("  so [Te") == [SegmentUpdate(0, "text", "so ")]  # stripped start; "[Te" may be a marker
    assert splitter.push("xt] ok[Speech][Hu1]") == [SegmentUpdate(0, "text", " ok", end=True)]
    units = "".join(f"[Hu{i}]" for i in range(2, 25))
    # Speech after the first segment is kept from its 24th hubert unit on: it comes all at once, then as it grows.
    assert splitter.push(units[:-5]) == []
    assert splitter.push(units[-5:] + "[Hu9") == [SegmentUpdate(1, "speech", "[Hu1]" + units)]
    assert splitter.push("][Text] x [Speech][Hu3]") == [
        SegmentUpdate(1, "speech", "[Hu9]", end=True),
        SegmentUpdate(2, "text", " x ", end=True),
    ]
    # Shorter speech is dropped: sent once, whole; the whitespace at the end is stripped.
    assert splitter.push("[Hu4] ", final=True) == [SegmentUpdate(3, "speech", "[Hu3][Hu4]", end=True, dropped=True)]


def test_splitter_continuing_the_prompt_speech_gives_it_as_context():
    splitter = GenerationSplitter("[Speech][St1][Pi2][Hu5]", "arbitrary")
    assert splitter.push("[Hu") == []  # whether the prompt's speech goes on depends on the start
    units = "".join(f"[Hu{i}]" for i in range(24))
    # As official, the continuation of the prompt's speech is not stripped: its trailing spaces are a text segment.
    assert splitter.push(units[3:] + "  ", final=True) == [
        SegmentUpdate(0, "speech", units, context="[St1][Pi2][Hu5]", end=True),
        SegmentUpdate(1, "text", "  ", end=True),
    ]


def test_post_process_generation_splits_rows_at_their_prompt_and_end(processor):
    tokenizer = processor.tokenizer
    prompts = [[{"type": "text", "text": "one two"}], [{"type": "speech", "units": "[Hu1][Hu2][Hu3]"}]]
    inputs = processor(prompts, output_modality="arbitrary")
    units = "".join(f"[Hu{i}]" for i in range(5, 35))  # 30 units: shorter generated speech would be dropped
    continuations = [" three four[Speech]" + units, "[Text] hello"]
    rows = []
    for row, continuation in zip(inputs["input_ids"], continuations):
        new_ids = tokenizer(continuation, add_special_tokens=False)["input_ids"]
        rows.append(row.tolist() + new_ids + [tokenizer.eos_token_id])
    width = max(map(len, rows))
    sequences = torch.tensor([row + [tokenizer.pad_token_id] * (width - len(row)) for row in rows])
    outputs = processor.post_process_generation(sequences, inputs["attention_mask"], output_modality="arbitrary")
    for output, segments, continuation in zip(outputs, prompts, continuations):
        assert output == processor.decode_generation(processor.build_prompt(segments), continuation, "arbitrary")
    assert outputs[0] == [{"type": "text", "text": "three four"}, {"type": "speech", "units": units}]
    assert outputs[1] == [{"type": "text", "text": " hello"}]  # stripped before the marker, as official


def test_save_and_auto_load_round_trip(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    assert {"processor_config.json", "preprocessor_config.json", "tokenizer.json"} <= {
        p.name for p in tmp_path.iterdir()
    }
    reloaded = AutoProcessor.from_pretrained(tmp_path)
    assert type(reloaded) is SpiritLMProcessor
    assert isinstance(reloaded.feature_extractor, SpiritLMFeatureExtractor)
    segments = [{"type": "text", "text": "hi"}, {"type": "speech", "units": "[Hu1]"}]
    assert reloaded(segments)["input_ids"].tolist() == processor(segments)["input_ids"].tolist()


def test_speech_tokenizer_is_saved_in_its_subfolder_and_reloaded(tiny_repo, tmp_path):
    processor = SpiritLMProcessor.from_pretrained(tiny_repo)
    assert processor.speech_tokenizer is not None
    processor.save_pretrained(tmp_path)
    assert {p.name for p in (tmp_path / "speech_tokenizer").iterdir()} == {"config.json", "model.safetensors"}
    assert "speech_tokenizer" not in json.loads((tmp_path / "processor_config.json").read_text())
    reloaded = AutoProcessor.from_pretrained(tmp_path)
    segments = [{"type": "speech", "audio": AUDIO / "speech_2s_16k.wav"}, {"type": "text", "text": "ok"}]
    prompt = reloaded.build_prompt(segments, "speech")
    assert prompt == processor.build_prompt(segments, "speech") and prompt.startswith("[Speech][St")
    assert SpiritLMProcessor.from_pretrained(tmp_path, load_speech_tokenizer=False).speech_tokenizer is None


def test_push_to_hub_uploads_after_everything_is_written(processor, tmp_path, monkeypatch):
    pushed = []
    monkeypatch.setattr(
        SpiritLMProcessor, "push_to_hub", lambda self, repo_id, **kwargs: pushed.append((repo_id, kwargs))
    )
    processor.save_pretrained(tmp_path / "local", push_to_hub=True, repo_id="me/spiritlm", private=True)
    assert pushed == [("me/spiritlm", {"private": True})]
    processor.save_pretrained(tmp_path / "named-after-folder", push_to_hub=True)
    assert pushed[-1] == ("named-after-folder", {})


@pytest.mark.parametrize(
    "segments, error, message",
    [
        (
            [{"type": "image", "url": "x.png"}],
            ValueError,
            r"segment 0: unknown segment type 'image'; use one of 'text', 'speech'",
        ),
        ([], ValueError, "the segment list is empty"),
        ([[]], ValueError, "prompt 0: the segment list is empty"),
        ("hello", TypeError, "expected a list of segments"),
        ([{"text": "hi"}], ValueError, "unknown segment type None"),
        ([{"type": "text", "text": 3}], ValueError, "a text segment needs a str 'text', got int"),
        ([{"type": "speech"}], ValueError, "exactly one of 'audio' .* and 'units'"),
        ([{"type": "speech", "audio": "a.wav"}], ValueError, "this processor has no speech tokenizer"),
    ],
)
def test_bad_segments_are_clear_errors(processor, segments, error, message):
    with pytest.raises(error, match=message):
        processor(segments)


def test_output_modality_typo_is_a_clear_error(processor):
    with pytest.raises(ValueError, match="unknown output_modality 'speach'; use one of 'text', 'speech', 'arbitrary'"):
        processor([{"type": "text", "text": "hi"}], output_modality="speach")
    with pytest.raises(ValueError, match="use one of 'text', 'speech', 'arbitrary'"):
        processor.decode_generation("[Text]", "hi", "txt")


def test_speech_without_hubert_or_pitch_units_gets_empty_audio(tiny_repo, caplog):
    processor = SpiritLMProcessor.from_pretrained(tiny_repo, load_speech_tokenizer=False)
    vocoder = SpiritLMVocoder.from_pretrained(tiny_repo, subfolder="vocoder")
    with caplog.at_level(logging.WARNING, logger="transformers_spiritlm"):
        (no_pitch,) = processor.decode_generation("[Text]a[Speech]", "[Hu3][Hu5]", "speech", vocoder=vocoder)
        (no_hubert,) = processor.decode_generation("[Text]a[Speech]", "[St3][Pi2]", "speech", vocoder=vocoder)
    assert (
        no_pitch["units"] == "[Hu3][Hu5]" and no_pitch["audio"].shape == (0,) and no_pitch["audio"].dtype == np.float32
    )
    assert no_hubert["units"] == "[St3][Pi2]" and no_hubert["audio"].shape == (0,)
    assert no_pitch["sampling_rate"] == no_hubert["sampling_rate"] == 16000
    assert "generated speech '[Hu3][Hu5]' has no pitch units" in caplog.text
    assert "generated speech '[St3][Pi2]' has no hubert units" in caplog.text


def test_post_process_generation_stops_at_the_given_eos(tiny_base_repo):
    processor = SpiritLMProcessor.from_pretrained(tiny_base_repo, load_speech_tokenizer=False)
    text = processor.tokenizer("[Text]one two three four", return_tensors="pt")
    prompt_length = 3
    sequences, mask = text.input_ids, text.attention_mask[:, :prompt_length]
    stop = int(sequences[0, prompt_length + 1])
    (segments,) = processor.post_process_generation(sequences, mask, "text", eos_token_id=stop)
    whole = processor.decode_text(sequences[0, : prompt_length + 1])
    assert segments == [
        {"type": "text", "text": whole[len(processor.decode_text(sequences[0, :prompt_length])) :].strip()}
    ]
    (all_of_it,) = processor.post_process_generation(sequences, mask, "text", eos_token_id=[-5])
    assert all_of_it[0]["text"].endswith("four")


def test_processor_dtype_and_device_map_are_the_language_model_s(tiny_base_repo):
    processor = SpiritLMProcessor.from_pretrained(tiny_base_repo, dtype=torch.bfloat16, device_map="cpu")
    assert processor.speech_tokenizer.dtype == torch.float32 and processor.speech_tokenizer.device.type == "cpu"
    bf16 = SpiritLMProcessor.from_pretrained(tiny_base_repo, speech_tokenizer_dtype=torch.bfloat16)
    assert bf16.speech_tokenizer.dtype == torch.bfloat16
    piped = pipeline("spirit-lm", model=str(tiny_base_repo), dtype=torch.bfloat16, vocoder_dtype="bfloat16")
    assert (piped.model.dtype, piped.processor.speech_tokenizer.dtype, piped.vocoder.dtype) == (
        torch.bfloat16,
        torch.float32,
        torch.bfloat16,
    )
    with pytest.raises(ValueError, match="unknown dtype 'half-ish'; use a torch.dtype or its name"):
        pipeline("spirit-lm", model=str(tiny_base_repo), vocoder_dtype="half-ish")
