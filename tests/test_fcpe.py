"""FCPE F0 extraction against torchfcpe's own outputs (recorded in the official environment, see
tests/fixtures/README.md), plus its edge cases, batching, config and checkpoint conversion."""

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from official_pitch import (
    random_fcpe_checkpoint,
)
from safetensors.torch import load_file, save_file

from transformers_spiritlm.conversion.convert_pitch import (
    ConversionError,
    convert_fcpe,
    load_fcpe_checkpoint,
)
from transformers_spiritlm.speech_tokenizer.fcpe import FCPEConfig, SpiritLMFCPEF0Extractor, slaney_mel_filter_bank


FIXTURES = Path(__file__).parent / "fixtures"
RECORDED = np.load(FIXTURES / "pitch" / "official_fcpe_f0.npz")
CLIPS = {
    "speech_2s_16k": FIXTURES / "audio" / "speech_2s_16k.wav",
    "speech_7s_16k": FIXTURES / "audio" / "speech_7s_16k.wav",
    "speech_stereo_44k": FIXTURES / "pitch" / "speech_stereo_44k_mono16k.wav",  # official load + resample + mean
}


def read(name: str) -> torch.Tensor:
    audio, rate = sf.read(CLIPS[name], dtype="float32")
    assert rate == 16000
    return torch.from_numpy(audio)


def extractor_from(checkpoint: dict, **overrides) -> SpiritLMFCPEF0Extractor:
    state_dict, config = convert_fcpe(checkpoint)
    model = SpiritLMFCPEF0Extractor({**config, **overrides})
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    assert set(missing) == {"mel.mel_filters", "mel.window"} and not unexpected
    return model.eval()


@pytest.fixture(scope="module")
def real_fcpe(fcpe_checkpoint) -> SpiritLMFCPEF0Extractor:
    return extractor_from(fcpe_checkpoint)


@pytest.fixture(scope="module")
def tiny_fcpe() -> SpiritLMFCPEF0Extractor:
    return extractor_from(random_fcpe_checkpoint(seed=0))


@pytest.fixture(scope="module")
def real_f0(real_fcpe) -> dict:
    return {name: real_fcpe(read(name)) for name in CLIPS}


def assert_matches_torchfcpe(f0: torch.Tensor, voiced: torch.Tensor, prefix: str) -> None:
    expected_f0, expected_voiced = RECORDED[f"{prefix}/f0"], RECORDED[f"{prefix}/vuv"].astype(bool)
    f0, voiced = f0.numpy(), voiced.numpy()
    assert f0.shape == expected_f0.shape
    assert (voiced == expected_voiced).mean() >= 0.995
    both = voiced & expected_voiced
    assert both.sum() > 0.3 * len(both)
    cents = np.abs(1200 * np.log2(f0[both] / expected_f0[both]))
    assert cents.max() <= 1.0


def test_mel_filter_bank_matches_torchfcpe():
    filters = slaney_mel_filter_bank(16000, 1024, 128, 0.0, 8000.0)
    np.testing.assert_array_equal(filters, RECORDED["mel_filters"])


@pytest.mark.parametrize("name", list(CLIPS))
def test_f0_matches_torchfcpe_real_weights(real_f0, name):
    f0, voiced, lengths = real_f0[name]
    assert lengths.tolist() == [len(read(name)) // 80 + 1]
    assert_matches_torchfcpe(f0[0], voiced[0], name)


@pytest.mark.parametrize("name", ["speech_2s_16k", "speech_stereo_44k"])
def test_f0_matches_torchfcpe_random_weights(tiny_fcpe, name):
    f0, voiced, _ = tiny_fcpe(read(name))
    assert_matches_torchfcpe(f0[0], voiced[0], f"tiny_fcpe/{name}")


def test_batched_equals_one_by_one(real_fcpe, real_f0):
    names = ["speech_2s_16k", "speech_stereo_44k"]
    waves = [read(name) for name in names] + [read("speech_2s_16k")[1600:2880]]
    singles = [real_f0[name] for name in names] + [real_fcpe(waves[-1])]
    batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    f0, voiced, lengths = real_fcpe(batch, torch.tensor([len(wave) for wave in waves]))
    for row, (single_f0, single_voiced, single_length) in enumerate(singles):
        length = int(single_length)
        assert int(lengths[row]) == length
        torch.testing.assert_close(f0[row, :length], single_f0[0], rtol=1e-5, atol=1e-3)
        assert torch.equal(voiced[row, :length], single_voiced[0])
        assert not f0[row, length:].any() and not voiced[row, length:].any()


@pytest.mark.parametrize("samples", [1, 79, 80, 159, 160, 432, 433, 1280, 4001])
def test_output_length_is_samples_over_80_plus_1(tiny_fcpe, samples):
    f0, voiced, lengths = tiny_fcpe(read("speech_2s_16k")[:samples])
    assert f0.shape == voiced.shape == (1, samples // 80 + 1)
    assert lengths.tolist() == [samples // 80 + 1]
    assert torch.isfinite(f0).all() and (f0 >= 0).all() and (f0 <= 1100).all()


def test_silence_has_no_voiced_frame_and_zero_f0(real_fcpe):
    f0, voiced, lengths = real_fcpe(torch.zeros(16000))
    assert lengths.tolist() == [201]
    assert not voiced.any()
    assert torch.equal(f0, torch.zeros(1, 201))


def test_interpolation_of_unvoiced_frames():
    f0 = torch.tensor([0.0, 100.0, 40.0, 0.0, 130.0, 0.0])
    unvoiced = f0 < 50
    out = SpiritLMFCPEF0Extractor.interpolate_unvoiced(f0, unvoiced)
    assert torch.equal(out, torch.tensor([100.0, 100.0, 110.0, 120.0, 130.0, 130.0]))
    single = SpiritLMFCPEF0Extractor.interpolate_unvoiced(
        torch.tensor([0.0, 0.0, 90.0, 0.0]), torch.tensor([1, 1, 0, 1]) == 1
    )
    assert torch.equal(single, torch.full((4,), 90.0))
    silent = SpiritLMFCPEF0Extractor.interpolate_unvoiced(torch.full((3,), 20.0), torch.ones(3, dtype=torch.bool))
    assert torch.equal(silent, torch.zeros(3))


@pytest.mark.parametrize(
    "audio, lengths, error, message",
    [
        (torch.full((16000,), float("nan")), None, ValueError, "NaN or infinite"),
        (torch.tensor([0.0, float("inf"), 0.0]), None, ValueError, "NaN or infinite"),
        (torch.zeros(0), None, ValueError, "empty audio"),
        (torch.zeros(2, 100), torch.tensor([100, 0]), ValueError, "between 1 and 100"),
        (torch.zeros(2, 100), torch.tensor([100]), ValueError, "lengths must have shape"),
        (torch.zeros(1, 2, 100), None, ValueError, "average the channels"),
        (torch.zeros(100, dtype=torch.int16), None, TypeError, "audio / 32768"),
        (np.zeros(100, dtype=np.float32), None, TypeError, "torch.Tensor"),
    ],
)
def test_bad_input_raises_clear_error(tiny_fcpe, audio, lengths, error, message):
    with pytest.raises(error, match=message):
        tiny_fcpe(audio, lengths)


def test_nan_in_padding_is_ignored(tiny_fcpe):
    wave = read("speech_2s_16k")[:4000]
    padded = torch.cat([wave, torch.full((100,), float("nan"))])[None]
    f0, voiced, _ = tiny_fcpe(padded, torch.tensor([4000]))
    expected_f0, expected_voiced, _ = tiny_fcpe(wave)
    assert torch.equal(f0, expected_f0) and torch.equal(voiced, expected_voiced)


def test_state_dict_safetensors_round_trip(tiny_fcpe, tmp_path):
    save_file(tiny_fcpe.state_dict(), str(tmp_path / "fcpe.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(tiny_fcpe.config.to_dict()))
    reloaded = SpiritLMFCPEF0Extractor(json.loads((tmp_path / "config.json").read_text()))
    reloaded.load_state_dict(load_file(str(tmp_path / "fcpe.safetensors")))
    wave = read("speech_2s_16k")
    for got, expected in zip(reloaded(wave), tiny_fcpe(wave)):
        assert torch.equal(got, expected)


def test_config_dict_round_trip_and_validation():
    config = FCPEConfig(hidden_size=16, num_layers=1, f0_min=50)
    assert isinstance(config.f0_min, float)
    assert FCPEConfig.from_dict(json.loads(json.dumps(config.to_dict()))).to_dict() == config.to_dict()
    with pytest.raises(ValueError, match="unknown FCPEConfig keys"):
        FCPEConfig.from_dict({"hidden_dims": 16})
    with pytest.raises(ValueError, match="divisible by num_norm_groups"):
        FCPEConfig(hidden_size=18)
    with pytest.raises(ValueError, match="positive int"):
        FCPEConfig(num_layers=0)


def test_load_fcpe_checkpoint_from_pt_wheel_and_folder(tmp_path):
    checkpoint = random_fcpe_checkpoint(seed=1)
    torch.save(checkpoint, tmp_path / "fcpe_c_v001.pt")
    wheel_dir = tmp_path / "download"
    wheel_dir.mkdir()
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    with zipfile.ZipFile(wheel_dir / "torchfcpe-0.0.4-py3-none-any.whl", "w") as wheel:
        wheel.writestr("torchfcpe/assets/fcpe_c_v001.pt", buffer.getvalue())
    for source in (tmp_path / "fcpe_c_v001.pt", tmp_path, wheel_dir, wheel_dir / "torchfcpe-0.0.4-py3-none-any.whl"):
        loaded = load_fcpe_checkpoint(source)
        assert torch.equal(loaded["model"]["output_proj.weight_v"], checkpoint["model"]["output_proj.weight_v"])


def test_weight_norm_is_folded_exactly():
    checkpoint = random_fcpe_checkpoint(seed=2)
    state_dict, _ = convert_fcpe(checkpoint)
    reference = torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(16, 360))
    reference.parametrizations.weight.original0.data = checkpoint["model"]["output_proj.weight_g"]
    reference.parametrizations.weight.original1.data = checkpoint["model"]["output_proj.weight_v"]
    assert torch.equal(state_dict["output_proj.weight"], reference.weight)


def test_fcpe_checkpoint_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.whl").write_bytes(b"not a zip")
    with zipfile.ZipFile(tmp_path / "other.whl", "w") as wheel:
        wheel.writestr("other/file.txt", "x")
    (tmp_path / "corrupt.pt").write_bytes(b"\x80\x02garbage")
    cases = {
        tmp_path / "missing.pt": "does not exist",
        tmp_path / "empty": "no torchfcpe wheel or fcpe_c_v001.pt",
        tmp_path / "other.whl": "has no torchfcpe/assets/fcpe_c_v001.pt",
        tmp_path / "corrupt.pt": "cannot read .*corrupt.pt",
    }
    for path, message in cases.items():
        with pytest.raises(ConversionError, match=message) as info:
            load_fcpe_checkpoint(path)
        assert "\n" not in str(info.value)
    with pytest.raises(ConversionError, match="not a valid wheel"):
        load_fcpe_checkpoint(tmp_path / "bad.whl")


def test_unsupported_fcpe_checkpoints_are_rejected():
    attention = random_fcpe_checkpoint()
    attention["config_dict"]["model"]["conv_only"] = False
    with pytest.raises(ConversionError, match="only the conv-only CFNaiveMelPE"):
        convert_fcpe(attention)
    extra = random_fcpe_checkpoint()
    extra["model"]["net.encoder_layers.0.attn.to_q.weight"] = torch.zeros(1)
    with pytest.raises(ConversionError, match="unexpected FCPE weights"):
        convert_fcpe(extra)
    with pytest.raises(ConversionError, match="lacks its 'model' or 'config_dict'"):
        convert_fcpe({"model": {}})
