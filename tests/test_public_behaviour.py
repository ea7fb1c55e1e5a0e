"""Public behaviour that had no test: pipeline options (force_output_modality=False, no vocoder/, vocoder=,
eos_token_id / generation_config, the default length), processor options (empty-audio fallback, eos_token_id,
from_pretrained dtype / device_map), the converter's self-check failures and a bfloat16 conversion, and CLI flags."""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import GenerationConfig, pipeline

import transformers_spiritlm
from transformers_spiritlm import SpiritLMProcessor, SpiritLMSpeechTokenizer, SpiritLMVocoder
from transformers_spiritlm.cli import main
from transformers_spiritlm.conversion.convert_spiritlm_to_hf import convert_spiritlm_to_hf, self_check
from transformers_spiritlm.conversion.convert_tokenizer import SlowTokenizerReference, convert_tokenizer
from transformers_spiritlm.processing_spiritlm import parse_generation
from transformers_spiritlm.testing import build_tiny_repo, tiny_vocoder
from transformers_spiritlm.testing.official_checkpoints import write_official_checkpoints
from transformers_spiritlm.testing.official_lm import official_lm_state_dict
from transformers_spiritlm.units import units_to_string


FIXTURES = Path(__file__).parent / "fixtures"
AUDIO = FIXTURES / "audio"
TEXT_MODEL = (FIXTURES / "tokenizer" / "text_sentencepiece.model").read_bytes()


@pytest.fixture(scope="module")
def pipe(tiny_base_repo):
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


def test_force_output_modality_false_lifts_the_constraint(pipe):
    kwargs = {"output_modality": "text", "max_new_tokens": 12, "do_sample": False, "return_prompt": True}
    free = pipe("one two", force_output_modality=False, **kwargs)
    forced = pipe("one two", **kwargs)
    assert free["prompt"] == forced["prompt"] == "[Text]one two"
    new_ids = greedy_continuation(pipe, free["prompt"], 12)
    assert free["segments"] == [{"type": "text", "text": continuation_text(pipe, free["prompt"], new_ids)}]
    # The free model writes unit tokens here, which the constraint forbids.
    assert "[Hu" in free["segments"][0]["text"] and "[Hu" not in forced["segments"][0]["text"]


def test_eos_token_id_and_generation_config_reach_post_processing(pipe):
    new_ids = greedy_continuation(pipe, "[Text]one two", 12)
    stop = new_ids[4]
    expected = [{"type": "text", "text": continuation_text(pipe, "[Text]one two", new_ids[: new_ids.index(stop)])}]
    kwargs = {"output_modality": "text", "force_output_modality": False, "do_sample": False}
    assert pipe("one two", eos_token_id=stop, max_new_tokens=12, **kwargs) == expected
    config = GenerationConfig(eos_token_id=stop, max_new_tokens=12, pad_token_id=pipe.tokenizer.pad_token_id)
    assert pipe("one two", generation_config=config, **kwargs) == expected


def test_default_max_new_tokens_is_200(pipe, monkeypatch):
    lengths = []
    generate = pipe.model.generate

    def spy(*args, **kwargs):
        sequences = generate(*args, **kwargs)
        lengths.append(sequences.shape[1] - kwargs["input_ids"].shape[1])
        return sequences

    monkeypatch.setattr(pipe.model, "generate", spy)
    # No end-of-sequence id to stop at: the length is the default one.
    pipe("hi", output_modality="speech", do_sample=False, eos_token_id=[])
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


@pytest.fixture(scope="module")
def official_base(tmp_path_factory) -> Path:
    return write_official_checkpoints(
        tmp_path_factory.mktemp("official"), variants=("base",), sentencepiece_model=TEXT_MODEL
    )


@pytest.fixture(scope="module")
def bfloat16_repo(official_base, tmp_path_factory) -> Path:
    return convert_spiritlm_to_hf(
        official_base, "base", tmp_path_factory.mktemp("bf16") / "repo", dtype="bfloat16", log=lambda line: None
    )


def test_bfloat16_conversion_rounds_the_language_model_only(official_base, bfloat16_repo):
    official = json.loads((official_base / "spiritlm_model" / "spirit-lm-base-7b" / "config.json").read_text())
    expected = official_lm_state_dict(official)
    converted = load_file(bfloat16_repo / "model.safetensors")
    assert {tensor.dtype for tensor in converted.values()} == {torch.bfloat16}
    for name, tensor in converted.items():
        torch.testing.assert_close(tensor, expected[name].to(torch.bfloat16), rtol=0, atol=0)
    assert json.loads((bfloat16_repo / "config.json").read_text())["dtype"] == "bfloat16"
    for part in ("speech_tokenizer", "vocoder"):
        assert {tensor.dtype for tensor in load_file(bfloat16_repo / part / "model.safetensors").values()} == {
            torch.float32
        }


def _official_tokenizer(official_base):
    return convert_tokenizer(official_base / "spiritlm_model" / "spirit-lm-base-7b", "base")[1]


def test_self_check_passes_on_a_good_repo(official_base, bfloat16_repo):
    rows = self_check(bfloat16_repo, _official_tokenizer(official_base), "base")
    assert [row[0] for row in rows] == [
        "config",
        "tokenizer",
        "tokenizer",
        "language model",
        "speech tokenizer",
        "vocoder",
    ]


def test_self_check_failures(official_base, bfloat16_repo, tmp_path, monkeypatch):
    official_tokenizer = _official_tokenizer(official_base)
    with pytest.raises(RuntimeError, match=r"self-check: config.json reloads as SpiritLMConfig \('base'\)"):
        self_check(bfloat16_repo, official_tokenizer, "expressive")

    with monkeypatch.context() as patch:
        patch.setattr(SlowTokenizerReference, "encode", lambda self, text: [1, 2, 3])
        with pytest.raises(
            RuntimeError, match=r"self-check: tokenizer ids \[1, .*\] differ from the official .*\[1, 2, 3\]"
        ):
            self_check(bfloat16_repo, official_tokenizer, "base")

    broken = tmp_path / "nan-lm"
    shutil.copytree(bfloat16_repo, broken)
    weights = load_file(broken / "model.safetensors")
    weights["lm_head.weight"][:] = float("nan")
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(
        RuntimeError, match=r"self-check: LM forward gave logits of shape \(1, \d+, \d+\) with non-finite"
    ):
        self_check(broken, official_tokenizer, "base")

    with monkeypatch.context() as patch:
        patch.setattr(SpiritLMSpeechTokenizer, "encode_units", lambda self, *args, **kwargs: {"hubert": []})
        with pytest.raises(RuntimeError, match=r"self-check: 1 s of audio gave unit streams \['hubert'\], expected"):
            self_check(bfloat16_repo, official_tokenizer, "base")

    with monkeypatch.context() as patch:
        patch.setattr(SpiritLMVocoder, "decode_string", lambda self, *args, **kwargs: torch.full((4,), float("nan")))
        with pytest.raises(RuntimeError, match=r"self-check: the vocoder gave a waveform of shape \(4,\)"):
            self_check(bfloat16_repo, official_tokenizer, "base")


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """`spiritlm ARGS` in this process: exit status, stdout, stderr."""
    try:
        code = main([str(arg) for arg in args])
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_version(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"transformers-spiritlm {transformers_spiritlm.__version__}"


def test_cli_tokenize_to_stdout(tiny_base_repo, capsys):
    code, out, err = run_cli(capsys, "tokenize", AUDIO / "speech_2s_16k.wav", "--repo", tiny_base_repo, "--quiet",
                             "--device", "cpu")  # fmt: skip
    assert code == 0, err
    (line,) = out.splitlines()
    expected = SpiritLMSpeechTokenizer.from_pretrained(tiny_base_repo, subfolder="speech_tokenizer").encode_units(
        AUDIO / "speech_2s_16k.wav"
    )
    assert json.loads(line) == {
        "audio": str(AUDIO / "speech_2s_16k.wav"),
        **expected,
        "string": units_to_string(expected),
    }


def test_cli_generate_sampling_flags_reach_generate(tiny_base_repo, tmp_path, capsys):
    args = ["generate", "--repo", tiny_base_repo, "--text", "one two", "--output-modality", "text"]
    args += ["--max-new-tokens", "8", "--temperature", "0.7", "--top-p", "0.9", "--seed", "4", "--device", "cpu"]
    first, second = run_cli(capsys, *args, "-o", tmp_path / "a.wav"), run_cli(capsys, *args, "-o", tmp_path / "b.wav")
    assert first[0] == 0, first[2]
    piped = pipeline("spirit-lm", model=str(tiny_base_repo))
    (expected,) = piped("one two", output_modality="text", max_new_tokens=8, do_sample=True, temperature=0.7,
                        top_p=0.9, seed=4)  # fmt: skip
    assert first[1] == second[1] == f"text:   {expected['text']!r}\n"
    greedy = run_cli(capsys, *args[:9], "--greedy", "--device", "cpu", "-o", tmp_path / "c.wav")
    (expected_greedy,) = piped("one two", output_modality="text", max_new_tokens=8, do_sample=False)
    assert greedy[0] == 0, greedy[2]
    assert greedy[1] == f"text:   {expected_greedy['text']!r}\n" and expected_greedy != expected


def test_cli_resynthesize_speaker_id(tiny_base_repo, tmp_path, capsys):
    import soundfile

    for speaker in (0, 3):
        code, _, err = run_cli(capsys, "resynthesize", AUDIO / "speech_2s_16k.wav", "--repo", tiny_base_repo,
                               "--speaker-id", speaker, "-o", tmp_path / f"speaker{speaker}.wav")  # fmt: skip
        assert code == 0, err
    speech_tokenizer = SpiritLMSpeechTokenizer.from_pretrained(tiny_base_repo, subfolder="speech_tokenizer")
    vocoder = SpiritLMVocoder.from_pretrained(tiny_base_repo, subfolder="vocoder")
    units = speech_tokenizer.encode_units(AUDIO / "speech_2s_16k.wav")
    for speaker in (0, 3):
        audio, rate = soundfile.read(tmp_path / f"speaker{speaker}.wav", dtype="float32")
        # Frame-rate units as they are (no duration prediction), the command's default.
        expected = vocoder.decode_units(**units, speaker_id=speaker, dur_pred=False).numpy()
        assert rate == 16000
        np.testing.assert_allclose(audio, expected, atol=1 / 2**15)
