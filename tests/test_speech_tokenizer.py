"""SpiritLMSpeechTokenizer (BASE HuBERT units) against units recorded from the official code on the same random weights
(tests/fixtures/speech_tokenizer/record_hubert_units.py), plus batching, chunking, save/load, errors and conversion."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from official_hubert import (
    HUBERT_RELATIVE_PATH,
    QUANTIZER_RELATIVE_PATH,
    assert_recorded_weights,
    official_hubert_checkpoint,
    write_official_hubert_checkpoints,
)
from transformers import AutoConfig, AutoModel

from transformers_spiritlm import SpiritLMFeatureExtractor, SpiritLMSpeechTokenizer, SpiritLMSpeechTokenizerConfig
from transformers_spiritlm.audio import prepare_audio
from transformers_spiritlm.conversion.convert_speech_tokenizer import (
    ConversionError,
    convert_hubert,
    convert_speech_tokenizer,
    parse_conv_feature_layers,
)
from transformers_spiritlm.conversion.convert_speech_tokenizer import (
    main as convert_main,
)
from transformers_spiritlm.speech_tokenizer.hubert import fill_blank_units
from transformers_spiritlm.testing.speech_tokenizer import tiny_speech_tokenizer, tiny_speech_tokenizer_config


FIXTURES = Path(__file__).parent / "fixtures"
AUDIO = FIXTURES / "audio"
RECORDED = json.loads((FIXTURES / "speech_tokenizer" / "official_hubert_units.json").read_text())
OFFICIAL_FEATURES = np.load(FIXTURES / "speech_tokenizer" / "official_hubert_features.npz")
CLIPS = {
    "speech_2s": AUDIO / "speech_2s_16k.wav",
    "speech_7s": AUDIO / "speech_7s_16k.wav",
    "stereo_44k": AUDIO / "speech_stereo_44k.wav",
}


def long_clip(num_samples: int) -> np.ndarray:
    """The recording script's long clip: the 7 s clip repeated, cut to `num_samples`."""
    wave, _ = soundfile.read(AUDIO / "speech_7s_16k.wav", dtype="float32")
    return np.tile(wave, -(-num_samples // len(wave)))[:num_samples]


@pytest.fixture(scope="module")
def tokenizer(official_hubert_checkpoints, tmp_path_factory) -> SpiritLMSpeechTokenizer:
    output = tmp_path_factory.mktemp("converted")
    convert_speech_tokenizer(official_hubert_checkpoints, output)
    return SpiritLMSpeechTokenizer.from_pretrained(output, subfolder="speech_tokenizer")


def test_regenerated_weights_are_the_recorded_ones(official_hubert_checkpoints):
    hubert = torch.load(official_hubert_checkpoints / HUBERT_RELATIVE_PATH, weights_only=True)["model_weight"]
    quantizer = torch.load(official_hubert_checkpoints / QUANTIZER_RELATIVE_PATH, weights_only=True)["model_weight"]
    assert_recorded_weights(hubert, RECORDED["hubert_weights_sha256"], RECORDED["hubert_weights_fingerprint"])
    assert_recorded_weights(quantizer, RECORDED["quantizer_weights_sha256"], RECORDED["quantizer_weights_fingerprint"])


def test_the_weights_check_tolerates_float32_rounding_only(official_hubert_checkpoints, monkeypatch):
    hubert = torch.load(official_hubert_checkpoints / HUBERT_RELATIVE_PATH, weights_only=True)["model_weight"]
    recorded = RECORDED["hubert_weights_sha256"], RECORDED["hubert_weights_fingerprint"]
    # As on a CPU whose torch.randn rounds otherwise: one float32 step on every other weight of every tensor.
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")
    rounded = {name: tensor.clone() for name, tensor in hubert.items()}
    for tensor in rounded.values():
        tensor.view(-1)[::2] = torch.nextafter(tensor.view(-1)[::2], torch.tensor(float("inf")))
    assert_recorded_weights(rounded, *recorded)
    name = "encoder.layers.0.fc1.weight"
    for changed in (hubert[name].T.contiguous(), hubert[name] * 1.001):
        with pytest.raises(AssertionError):
            assert_recorded_weights({**hubert, name: changed}, *recorded)


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_units_and_string_match_official(tokenizer, name):
    expected = RECORDED["cases"][name]
    assert tokenizer.encode_units(CLIPS[name]) == {"hubert": expected["hubert"]}
    assert tokenizer.encode_string(str(CLIPS[name])) == expected["string"]


@pytest.mark.parametrize(("name", "num_samples"), [("long_105s", 105 * 16000), ("long_100s_tail", 100 * 16000 + 800)])
def test_long_audio_is_chunked_like_official(tokenizer, name, num_samples):
    units = tokenizer.encode_units(long_clip(num_samples), sampling_rate=16000)["hubert"]
    assert units == RECORDED["cases"][name]["hubert"]


@pytest.mark.parametrize("name", ["speech_2s", "stereo_44k"])
def test_layer11_features_match_official(tokenizer, name):
    waveform = prepare_audio([CLIPS[name]])[0]
    with torch.no_grad():
        features = tokenizer(waveform).hubert_features[0]
    torch.testing.assert_close(features, torch.from_numpy(OFFICIAL_FEATURES[name]), atol=1e-4, rtol=0)


def test_blank_filling_matches_official():
    cases = RECORDED["blank_filling"]
    lengths = torch.tensor([len(case["argmax"]) for case in cases])
    units = torch.full((len(cases), int(lengths.max())), -1)
    for row, case in enumerate(cases):
        units[row, : lengths[row]] = torch.tensor(case["argmax"])
    filled = fill_blank_units(units, lengths, blank=500)
    for row, case in enumerate(cases):
        assert filled[row, : lengths[row]].tolist() == case["filled"]
        assert filled[row, lengths[row] :].tolist() == [-1] * int(lengths.max() - lengths[row])


def _official_loop(codes: torch.Tensor, blank: int, max_steps: int) -> torch.Tensor:
    """The official loop's rule, restated as a test oracle: shift right cyclically, fill blanks, `max_steps` times."""
    codes = codes.clone()
    for _ in range(max_steps):
        if not (codes == blank).any():
            break
        shifted = torch.roll(codes, 1)
        codes[codes == blank] = shifted[codes == blank]
    return codes


def test_blank_filling_closed_form_equals_the_loop():
    generator = torch.Generator().manual_seed(0)
    for _ in range(100):
        length = int(torch.randint(1, 30, (1,), generator=generator))
        codes = torch.randint(0, 4, (length,), generator=generator)
        codes[torch.rand(length, generator=generator) < 0.6] = 3
        for max_steps in (2, 40):  # 40 > length: unbounded
            expected = _official_loop(codes, blank=3, max_steps=max_steps)
            assert fill_blank_units(codes[None], torch.tensor([length]), 3, max_steps)[0].tolist() == expected.tolist()


def test_batched_units_equal_one_by_one(tokenizer):
    wave_7s, _ = soundfile.read(CLIPS["speech_7s"], dtype="float32")
    clips = [
        CLIPS["speech_7s"],
        CLIPS["stereo_44k"],
        {"array": wave_7s[: 16000 * 13 // 2], "sampling_rate": 16000},
        CLIPS["speech_2s"],
        {"array": wave_7s[:1300], "sampling_rate": 16000},
    ]
    one_by_one = [tokenizer.encode_units(clip) for clip in clips]
    assert tokenizer.encode_units(clips) == one_by_one
    assert [units["hubert"] for units in one_by_one[:2]] == [
        RECORDED["cases"]["speech_7s"]["hubert"],
        RECORDED["cases"]["stereo_44k"]["hubert"],
    ]
    # On CPU only chunks within 10% of a batch's longest share it: the 7 s and 6.5 s clips, padded.
    lengths = [len(waveform) for waveform in prepare_audio(clips)]
    assert tokenizer._batches(lengths, max_batch_seconds=200) == [[0, 2], [1], [3], [4]]
    assert tokenizer._batches(lengths, max_batch_seconds=10) == [[0], [2], [1], [3], [4]]


def test_padded_forward_features_equal_one_by_one(tokenizer):
    waveforms = prepare_audio([CLIPS["speech_2s"], CLIPS["speech_7s"], CLIPS["stereo_44k"]])
    lengths = torch.tensor([len(waveform) for waveform in waveforms])
    batch = torch.nn.utils.rnn.pad_sequence(waveforms, batch_first=True)
    mask = (torch.arange(batch.shape[1]) < lengths[:, None]).long()
    with torch.no_grad():
        batched = tokenizer(batch, attention_mask=mask)
        for row, waveform in enumerate(waveforms):
            alone = tokenizer(waveform)
            frames = int(batched.frame_lengths[row])
            assert frames == alone.frame_lengths.item()
            # Only float rounding differs: oneDNN picks conv kernels by input length.
            torch.testing.assert_close(
                batched.hubert_features[row, :frames], alone.hubert_features[0], atol=1e-4, rtol=0
            )
            assert torch.equal(batched.hubert_units[row, :frames], alone.hubert_units[0])
            assert (batched.hubert_units[row, frames:] == -1).all()


def test_save_and_reload_gives_identical_units(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert AutoConfig.from_pretrained(tmp_path).model_type == "spiritlm_speech_tokenizer"
    reloaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(reloaded, SpiritLMSpeechTokenizer)
    assert reloaded.encode_units(CLIPS["speech_7s"]) == tokenizer.encode_units(CLIPS["speech_7s"])


def test_int16_input_is_scaled(tokenizer):
    pcm, rate = soundfile.read(CLIPS["speech_2s"], dtype="int16")
    # Units are scale-invariant (HuBERT normalises its input): check the waveform that reaches the model too.
    floats, _ = soundfile.read(CLIPS["speech_2s"], dtype="float32")  # libsndfile: pcm / 2**15
    for audio in (pcm, torch.from_numpy(pcm)):
        features = SpiritLMFeatureExtractor()(audio, sampling_rate=rate, return_tensors="np")["input_values"][0]
        np.testing.assert_array_equal(features, floats)
        assert tokenizer.encode_units(audio, sampling_rate=rate) == {
            "hubert": RECORDED["cases"]["speech_2s"]["hubert"]
        }


def test_encode_string_of_a_batch(tokenizer):
    strings = tokenizer.encode_string([CLIPS["speech_2s"], CLIPS["speech_7s"]])
    assert strings == [RECORDED["cases"]["speech_2s"]["string"], RECORDED["cases"]["speech_7s"]["string"]]
    assert tokenizer.encode_units([]) == []


def test_bad_audio_raises_clear_errors(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="empty"):
        tokenizer.encode_units(np.zeros(0, dtype=np.float32), sampling_rate=16000)
    with pytest.raises(ValueError, match="has 1000 samples at 16000 Hz; the speech tokenizer needs at least 1280"):
        tokenizer.encode_units(np.zeros(1000, dtype=np.float32), sampling_rate=16000)
    with pytest.raises(ValueError, match="audio input 1 has 100 samples"):
        tokenizer.encode_units([CLIPS["speech_2s"], np.zeros(100, dtype=np.float32)], sampling_rate=None)
    wave = np.zeros(16000, dtype=np.float32)
    wave[5] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        tokenizer.encode_units(wave, sampling_rate=16000)
    wave[5] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        tokenizer.encode_units(wave, sampling_rate=16000)
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        tokenizer.encode_units(tmp_path / "missing.wav")
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(ValueError, match="could not read audio file .*garbage.wav"):
        tokenizer.encode_units(garbage)


def test_forward_checks_its_inputs(tokenizer):
    with pytest.raises(TypeError, match="float tensor"):
        tokenizer(torch.zeros(2000, dtype=torch.int16))
    with pytest.raises(ValueError, match="right-padded"):
        tokenizer(torch.zeros(2, 2000), attention_mask=torch.tensor([[1] * 2000, [0] * 1000 + [1] * 1000]))
    with pytest.raises(ValueError, match="receptive field"):
        tokenizer(torch.zeros(500))


def test_tiny_speech_tokenizer_builder():
    config = tiny_speech_tokenizer_config()
    assert (config.hop_length, config.frame_rate, config.blank_unit, config.unit_types) == (
        640,
        25.0,
        500,
        ("hubert",),
    )
    model = tiny_speech_tokenizer(seed=0)
    units = model.encode_units(np.zeros(16000, dtype=np.float32), sampling_rate=16000)["hubert"]
    assert len(units) == 24 and all(0 <= unit <= 500 for unit in units)


def test_conversion_rejects_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert_hubert(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="missing official HuBERT checkpoint .*mhubert_base_25hz.pt"):
        convert_hubert(tmp_path)
    broken = tmp_path / "broken"
    write_official_hubert_checkpoints(broken)
    (broken / QUANTIZER_RELATIVE_PATH).write_bytes(b"\x80\x02 truncated pickle")
    with pytest.raises(ConversionError, match="cannot read .*L11_quantizer_500.pt as a torch checkpoint") as error:
        convert_hubert(broken)
    assert "\n" not in str(error.value)
    torch.save({"something": 1}, broken / QUANTIZER_RELATIVE_PATH)
    with pytest.raises(ConversionError, match="not an official quantizer checkpoint"):
        convert_hubert(broken)

    with pytest.raises(SystemExit) as exit_info:
        convert_main(["--checkpoints-dir", str(broken), "--output-dir", str(tmp_path / "out")])
    assert exit_info.value.code == (
        f"error: {broken / QUANTIZER_RELATIVE_PATH} is not an official quantizer checkpoint: expected keys "
        "['model_cfg', 'model_weight'], found ['something']"
    )


def test_conversion_rejects_unsupported_models(tmp_path):
    checkpoint = official_hubert_checkpoint()
    checkpoint["model_cfg"]["layer_norm_first"] = True
    write_official_hubert_checkpoints(tmp_path)
    torch.save(checkpoint, tmp_path / HUBERT_RELATIVE_PATH)
    with pytest.raises(ConversionError, match="layer_norm_first=True"):
        convert_hubert(tmp_path)
    checkpoint = official_hubert_checkpoint()
    checkpoint["model_weight"]["encoder.layers.0.extra.weight"] = torch.zeros(1)
    torch.save(checkpoint, tmp_path / HUBERT_RELATIVE_PATH)
    with pytest.raises(ConversionError, match="unexpected official HuBERT weight 'encoder.layers.0.extra.weight'"):
        convert_hubert(tmp_path)


def test_conversion_maps_config_and_drops_unused_layers(official_hubert_checkpoints):
    state_dict, config = convert_hubert(official_hubert_checkpoints)
    assert config["num_hubert_units"] == 501 and config["quantizer_hidden_sizes"] == [24, 16]
    hubert = config["hubert_config"]
    assert (hubert["conv_stride"], hubert["conv_kernel"]) == ([5, 2, 2, 2, 2, 2, 2, 2], [10, 3, 3, 3, 3, 2, 2, 2])
    assert hubert["num_hidden_layers"] == 11
    assert not any(key.startswith("hubert.encoder.layers.11.") for key in state_dict)
    assert SpiritLMSpeechTokenizerConfig(**config).hop_length == 640


def test_parse_conv_feature_layers_is_safe():
    assert parse_conv_feature_layers("[(512,10,5)] + [(512,3,2)] * 2") == [(512, 10, 5), (512, 3, 2), (512, 3, 2)]
    with pytest.raises(ConversionError, match="unsupported"):
        parse_conv_feature_layers("__import__('os').getcwd()")
