"""Pitch units (F0 → VQ-VAE codes) against the official `F0Tokenizer` on the same random VQ-VAE weights (recorded in
the official environment, see tests/fixtures/README.md), plus conversion, YAAPT, edge cases and batching."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from official_pitch import (
    random_fcpe_checkpoint,
    tiny_official_vqvae_f0_config,
    write_official_vqvae_f0,
)
from safetensors.torch import load_file

from transformers_spiritlm.conversion.convert_pitch import (
    ConversionError,
    MissingFileError,
    convert_pitch,
    main,
)
from transformers_spiritlm.speech_tokenizer.pitch import (
    YAAPT_INSTALL_HINT,
    PitchUnitEncoderConfig,
    SpiritLMPitchUnitEncoder,
    SpiritLMYAAPTF0Extractor,
)


FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL = json.loads((FIXTURES / "pitch" / "official_pitch_units.json").read_text())
CLIPS = {
    "speech_2s_16k": FIXTURES / "audio" / "speech_2s_16k.wav",
    "speech_7s_16k": FIXTURES / "audio" / "speech_7s_16k.wav",
    "speech_stereo_44k": FIXTURES / "pitch" / "speech_stereo_44k_mono16k.wav",  # official load + resample + mean
}


def read(name: str) -> np.ndarray:
    audio, rate = sf.read(CLIPS[name], dtype="float32")
    assert rate == 16000
    return audio


def edge_case_input(name: str) -> torch.Tensor:
    speech = torch.from_numpy(read("speech_2s_16k"))
    return {
        "silence_1s": torch.zeros(16000),
        "voiced_1280": speech[1600:2880],
        "voiced_400": speech[1600:2000],
        "nan_1s": torch.full((16000,), float("nan")),
    }[name]


@pytest.fixture(scope="module")
def vqvae_dir(tmp_path_factory) -> Path:
    return write_official_vqvae_f0(tmp_path_factory.mktemp("ckpt") / "vqvae_f0_quantizer", seed=0)


@pytest.fixture(scope="module")
def converted(vqvae_dir, fcpe_checkpoint) -> tuple[dict, dict]:
    return convert_pitch(vqvae_dir, fcpe_checkpoint)


@pytest.fixture(scope="module")
def encoder(converted) -> SpiritLMPitchUnitEncoder:
    state_dict, config = converted
    model = SpiritLMPitchUnitEncoder(config)
    model.load_state_dict(state_dict)
    return model.eval()


@pytest.fixture(scope="module")
def tiny_encoder(vqvae_dir) -> SpiritLMPitchUnitEncoder:
    state_dict, config = convert_pitch(vqvae_dir, random_fcpe_checkpoint(seed=0))
    model = SpiritLMPitchUnitEncoder(config)
    model.load_state_dict(state_dict)
    return model.eval()


@pytest.fixture(scope="module")
def batch_units(encoder) -> dict[str, list[int]]:
    names = list(CLIPS)
    return dict(zip(names, encoder.encode([read(name) for name in names])))


@pytest.mark.parametrize("name", list(CLIPS))
def test_units_match_official(batch_units, pitch_units_match, name):
    units = batch_units[name]
    pitch_units_match(units, OFFICIAL["clips"][name])
    assert len(units) == (len(read(name)) // 80 + 1) // 16
    assert len(set(units)) >= 8  # the random codebook is spread enough for the comparison to mean something


def test_batched_equals_one_by_one(encoder, batch_units):
    for name in ("speech_2s_16k", "speech_stereo_44k"):
        assert encoder.encode(read(name)) == [batch_units[name]]


@pytest.mark.parametrize("name", ["speech_2s_16k", "speech_stereo_44k"])
def test_units_match_official_with_random_fcpe(tiny_encoder, pitch_units_match, name):
    pitch_units_match(tiny_encoder.encode(read(name))[0], OFFICIAL["tiny_fcpe_clips"][name])


def test_forward_outputs_and_padding(tiny_encoder):
    waves = [torch.from_numpy(read("speech_2s_16k")), torch.from_numpy(read("speech_2s_16k"))[:4000]]
    batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    out = tiny_encoder(batch, torch.tensor([32000, 4000]))
    assert out.f0_lengths.tolist() == [401, 51]
    assert out.unit_lengths.tolist() == [25, 3] == tiny_encoder.num_units(torch.tensor([32000, 4000])).tolist()
    assert out.units.shape == (2, 25) and out.units.dtype == torch.long
    assert (out.units[1, 3:] == -1).all() and ((out.units[0] >= 0) & (out.units[0] < 64)).all()
    assert out.f0.shape == out.voiced.shape == (2, 401)


def test_silence_gives_defined_units(encoder):
    # The official tokenizer raises IndexError here (interpolation with no voiced frame).
    assert OFFICIAL["edge_cases"]["silence_1s"]["error"].startswith("IndexError")
    out = encoder(edge_case_input("silence_1s"))
    assert not out.voiced.any() and not out.f0.any()
    assert out.unit_lengths.tolist() == [12]
    # Defined as the VQ-VAE codes of an all-zero, all-unvoiced F0 track.
    units, _ = encoder.quantize_f0(torch.zeros(1, 201), torch.zeros(1, 201, dtype=torch.bool), torch.tensor([201]))
    assert torch.equal(out.units, units)


def test_short_audio(encoder):
    assert encoder.encode(edge_case_input("voiced_1280")) == [OFFICIAL["edge_cases"]["voiced_1280"]["result"]]
    # Fewer than 16 F0 frames: no unit (the official VQ-VAE raises a convolution size error).
    assert OFFICIAL["edge_cases"]["voiced_400"]["error"].startswith("RuntimeError")
    assert encoder.encode(edge_case_input("voiced_400")) == [[]]
    out = encoder(torch.zeros(1))
    assert out.units.shape == (1, 0) and out.unit_lengths.tolist() == [0]


def test_nan_audio_raises(encoder):
    with pytest.raises(ValueError, match="NaN or infinite"):
        encoder(edge_case_input("nan_1s"))


def test_normalisation_removes_the_mean_pitch(tiny_encoder):
    f0 = 100 + 20 * torch.sin(torch.arange(401) / 15.0)
    voiced = torch.ones(401, dtype=torch.bool)
    voiced[100:150] = False
    units, _ = tiny_encoder.quantize_f0(f0[None], voiced[None], torch.tensor([401]))
    shifted, _ = tiny_encoder.quantize_f0((f0 + 37.5)[None], voiced[None], torch.tensor([401]))
    assert torch.equal(units, shifted)


def test_state_dict_safetensors_round_trip(encoder, tmp_path, vqvae_dir, fcpe_checkpoint):
    torch.save(fcpe_checkpoint, tmp_path / "fcpe_c_v001.pt")
    args = ["--vqvae-dir", str(vqvae_dir), "--fcpe-checkpoint", str(tmp_path), "--output-dir", str(tmp_path)]
    assert main(args) == 0
    reloaded = SpiritLMPitchUnitEncoder(json.loads((tmp_path / "config.json").read_text()))
    reloaded.load_state_dict(load_file(str(tmp_path / "model.safetensors")))
    for key, value in encoder.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value), key
    wave = edge_case_input("voiced_1280")
    assert reloaded.encode(wave) == encoder.encode(wave)


def test_converted_config(converted):
    state_dict, config = converted
    assert json.loads(json.dumps(config)) == config
    assert config["normalize_f0"] is True and config["l_bins"] == 64
    assert (config["down_t"], config["stride_t"], config["hop_length"]) == (4, 2, 80)
    assert PitchUnitEncoderConfig.from_dict(config).downsampling == 16
    assert not any(key.startswith("decoder") for key in state_dict)
    assert state_dict["codebook.codebook"].shape == (64, 16)


@pytest.mark.parametrize(
    "changes, normalize",
    [({"features": "f0_interp,vuv"}, False), ({"features": "f0,vuv", "speaker_norm": True}, True)],
)
def test_f0_normalisation_follows_official_config(tmp_path, changes, normalize):
    config = {**tiny_official_vqvae_f0_config(), **changes}
    directory = write_official_vqvae_f0(tmp_path / "vq", config=config)
    _, converted = convert_pitch(directory, random_fcpe_checkpoint())
    assert converted["normalize_f0"] is normalize


def test_conversion_errors_are_one_line(tmp_path):
    fcpe = random_fcpe_checkpoint()
    good = write_official_vqvae_f0(tmp_path / "good")

    def expect(directory, error, message):
        with pytest.raises(error, match=message) as info:
            convert_pitch(directory, fcpe)
        assert "\n" not in str(info.value)

    expect(tmp_path / "nowhere", MissingFileError, "missing folder")
    (tmp_path / "no_model").mkdir()
    (tmp_path / "no_model" / "config.yaml").write_text((good / "config.yaml").read_text())
    expect(tmp_path / "no_model", MissingFileError, "missing .*model.pt")
    (tmp_path / "no_config").mkdir()
    expect(tmp_path / "no_config", MissingFileError, "missing .*config.yaml")
    (tmp_path / "no_config" / "config.yaml").write_text("features: [unclosed")
    expect(tmp_path / "no_config", ConversionError, "not valid YAML")

    corrupt = write_official_vqvae_f0(tmp_path / "corrupt")
    (corrupt / "model.pt").write_bytes(b"PK\x03\x04 truncated")
    expect(corrupt, ConversionError, "cannot read .*model.pt as a weights-only torch checkpoint")

    bad_features = write_official_vqvae_f0(
        tmp_path / "features", config={**tiny_official_vqvae_f0_config(), "features": "log_f0"}
    )
    expect(bad_features, ConversionError, "unsupported features 'log_f0'")

    mismatch = write_official_vqvae_f0(tmp_path / "mismatch")
    config = yaml.safe_load((mismatch / "config.yaml").read_text())
    config["encoder_params"]["width"] = 32
    (mismatch / "config.yaml").write_text(yaml.safe_dump(config))
    expect(mismatch, ConversionError, "does not match its config.yaml")

    no_state = write_official_vqvae_f0(tmp_path / "no_state")
    torch.save({"weights": {}}, no_state / "model.pt")
    expect(no_state, ConversionError, "has no 'model' state dict")


def test_training_checkpoint_extras_load_weights_only(tmp_path):
    directory = write_official_vqvae_f0(tmp_path / "vq")
    checkpoint = torch.load(directory / "model.pt", weights_only=True)
    checkpoint.update(steps=np.int64(1000), best_loss=np.float64(0.25), stats=np.zeros(3))
    torch.save(checkpoint, directory / "model.pt")
    state_dict, _ = convert_pitch(directory, random_fcpe_checkpoint())
    assert torch.equal(state_dict["codebook.codebook"], checkpoint["model"]["vq.level_blocks.0.k"])


def test_cli_missing_fcpe_prints_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("transformers_spiritlm.conversion.convert_pitch._installed_torchfcpe_asset", lambda: None)
    directory = write_official_vqvae_f0(tmp_path / "vq")
    assert main(["--vqvae-dir", str(directory), "--output-dir", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "pip download torchfcpe==0.0.4 --no-deps" in error


def test_config_validation():
    config = PitchUnitEncoderConfig()
    assert PitchUnitEncoderConfig.from_dict(json.loads(json.dumps(config.to_dict()))).to_dict() == config.to_dict()
    with pytest.raises(ValueError, match="unknown f0_extractor 'crepe'"):
        PitchUnitEncoderConfig(f0_extractor="crepe")
    with pytest.raises(ValueError, match="differs from fcpe.hop_length"):
        PitchUnitEncoderConfig(hop_length=160)
    with pytest.raises(ValueError, match="unknown PitchUnitEncoderConfig keys"):
        PitchUnitEncoderConfig.from_dict({"levels": 1})
    with pytest.raises(ValueError, match="both be ints or lists"):
        PitchUnitEncoderConfig(down_t=[4], stride_t=2)


def test_yaapt_install_hint(monkeypatch, tiny_encoder):
    monkeypatch.setitem(sys.modules, "amfm_decompy", None)
    monkeypatch.setitem(sys.modules, "amfm_decompy.basic_tools", None)
    monkeypatch.setitem(sys.modules, "amfm_decompy.pYAAPT", None)
    with pytest.raises(ImportError, match=r"pip install 'transformers-spiritlm\[yaapt\]'"):
        SpiritLMYAAPTF0Extractor()
    monkeypatch.setattr(tiny_encoder, "_yaapt", None)
    with pytest.raises(ImportError) as info:
        tiny_encoder.encode(read("speech_2s_16k")[:4000], f0_extractor="yaapt")
    assert str(info.value) == YAAPT_INSTALL_HINT


def test_yaapt_matches_official(tiny_encoder, yaapt_installed):
    recorded = np.load(FIXTURES / "pitch" / "official_yaapt.npz")
    wave = torch.from_numpy(read("speech_2s_16k"))
    f0, voiced, lengths = tiny_encoder.extract_f0(wave, f0_extractor="yaapt")
    assert lengths.tolist() == [len(recorded["f0"])]
    np.testing.assert_allclose(f0[0].numpy(), recorded["f0"], rtol=1e-12)
    assert np.array_equal(voiced[0].numpy(), recorded["vuv"])
    assert tiny_encoder.encode(wave, f0_extractor="yaapt") == [recorded["units"].tolist()]


def test_modules_carry_the_spiritlm_prefix_and_keep_their_old_names():
    from transformers_spiritlm.speech_tokenizer import fcpe, hubert, pitch

    assert pitch.PitchUnitEncoder is pitch.SpiritLMPitchUnitEncoder
    assert pitch.YAAPTF0Extractor is pitch.SpiritLMYAAPTF0Extractor
    assert fcpe.FCPEF0Extractor is fcpe.SpiritLMFCPEF0Extractor
    assert hubert.HubertUnitQuantizer is hubert.SpiritLMHubertUnitQuantizer
