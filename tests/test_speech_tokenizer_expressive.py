"""The EXPRESSIVE SpiritLMSpeechTokenizer (HuBERT + pitch + style units) against the official `spiritlm_expressive()`
tokenizer on the same random weights and the real FCPE weights, from file paths (recorded by
tests/fixtures/expressive/record_expressive.py), plus conversion, batching, save/load, dtype and bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from official_checkpoints import write_official_fcpe
from official_hubert import (
    HUBERT_RELATIVE_PATH,
    QUANTIZER_RELATIVE_PATH,
    assert_recorded_weights,
    weights_digest,
    write_official_hubert_checkpoints,
)
from official_pitch import random_fcpe_checkpoint, tiny_official_vqvae_f0_config, write_official_vqvae_f0
from official_style import tiny_official_style_config, write_official_style_encoder
from transformers import AutoModel, Wav2Vec2Config

from transformers_spiritlm import SpiritLMSpeechTokenizer, units_to_string
from transformers_spiritlm.audio import prepare_audio
from transformers_spiritlm.configuration_spiritlm import (
    FCPEConfig,
    PitchUnitEncoderConfig,
    SpiritLMStyleEncoderConfig,
)
from transformers_spiritlm.conversion.convert_pitch import convert_fcpe, vqvae_config_to_pitch_kwargs
from transformers_spiritlm.conversion.convert_speech_tokenizer import convert_speech_tokenizer
from transformers_spiritlm.conversion.convert_speech_tokenizer import main as convert_main
from transformers_spiritlm.conversion.convert_style import convert_style_config
from transformers_spiritlm.speech_tokenizer.style import SpiritLMStyleEncoder
from transformers_spiritlm.testing.speech_tokenizer import (
    tiny_expressive_sub_configs,
    tiny_speech_tokenizer,
    tiny_speech_tokenizer_config,
)


FIXTURES = Path(__file__).parent / "fixtures"
AUDIO = FIXTURES / "audio"
RECORDED = json.loads((FIXTURES / "expressive" / "official_expressive.json").read_text())
CLIPS = {name: AUDIO / f"{name}.wav" for name in ("speech_2s_16k", "speech_7s_16k", "speech_stereo_44k")}
VQVAE_DIR = Path("speech_tokenizer") / "vqvae_f0_quantizer"
STYLE_DIR = Path("speech_tokenizer") / "style_encoder_w2v2"


@pytest.fixture(scope="module")
def matches_official(pitch_units_match):
    def check(units: dict[str, list[int]], expected: dict[str, list[int]]) -> None:
        """HuBERT and style units exactly, pitch units as `pitch_units_match` (conftest) allows."""
        assert list(units) == ["hubert", "pitch", "style"]
        assert units["hubert"] == expected["hubert"]
        assert units["style"] == expected["style"]
        pitch_units_match(units["pitch"], expected["pitch"])

    return check


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("official")
    write_official_hubert_checkpoints(directory, seed=0)
    write_official_vqvae_f0(directory / VQVAE_DIR, seed=0)
    write_official_style_encoder(directory / STYLE_DIR, seed=0)
    return directory


@pytest.fixture(scope="module")
def converted_dir(checkpoints, fcpe_checkpoint, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("converted")
    convert_speech_tokenizer(checkpoints, output, variant="expressive", fcpe_checkpoint=fcpe_checkpoint)
    return output / "speech_tokenizer"


@pytest.fixture(scope="module")
def tokenizer(converted_dir) -> SpiritLMSpeechTokenizer:
    return SpiritLMSpeechTokenizer.from_pretrained(converted_dir)


@pytest.fixture(scope="module")
def clip_units(tokenizer) -> dict[str, dict[str, list[int]]]:
    return {name: tokenizer.encode_units(path) for name, path in CLIPS.items()}


def test_regenerated_weights_are_the_recorded_ones(checkpoints, fcpe_checkpoint):
    recorded = RECORDED["weights"]
    load = lambda path: torch.load(checkpoints / path, weights_only=True)
    written = {
        "hubert": load(HUBERT_RELATIVE_PATH)["model_weight"],
        "quantizer": load(QUANTIZER_RELATIVE_PATH)["model_weight"],
        "vqvae": load(VQVAE_DIR / "model.pt")["model"],
        "style": load(STYLE_DIR / "pytorch_model.bin"),
    }
    for name, state in written.items():
        assert_recorded_weights(state, recorded[f"{name}_sha256"], recorded[f"{name}_fingerprint"])
    assert weights_digest(fcpe_checkpoint["model"]) == recorded["fcpe_sha256"]


def test_converted_folder_and_config(tokenizer, converted_dir):
    assert sorted(path.name for path in converted_dir.iterdir()) == ["config.json", "model.safetensors"]
    config = tokenizer.config
    assert config.unit_types == ("hubert", "pitch", "style")
    assert config.pitch_config["l_bins"] == 64 and config.pitch_config["fcpe"]["hidden_size"] == 512
    assert config.style_config["num_styles"] == 100 and config.style_config["pool_size"] == 50
    prefixes = {name.split(".")[0] for name in tokenizer.state_dict()}
    assert prefixes == {"hubert", "quantizer", "pitch_encoder", "style_encoder"}


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_units_and_string_match_official(tokenizer, clip_units, matches_official, name):
    expected = RECORDED["clips"][name]
    matches_official(clip_units[name], expected)
    assert tokenizer.encode_string(str(CLIPS[name])) == expected["string"]
    assert units_to_string(clip_units[name]) == expected["string"]


def test_long_clip_is_chunked_like_official(tokenizer, matches_official, tmp_path):
    # 105 s: a 100 s chunk and a 5 s chunk, each encoded on its own by every stream, units concatenated.
    wave, _ = soundfile.read(CLIPS["speech_7s_16k"], dtype="float32")
    path = tmp_path / "speech_7s_16k_x15.wav"
    soundfile.write(path, np.tile(wave, 15), 16000, subtype="PCM_16")
    units = tokenizer.encode_units(path)
    matches_official(units, RECORDED["clips"]["speech_7s_16k_x15"])
    assert (
        len(units["style"]) == 100 + 5
        and len(units["pitch"]) == (1_600_000 // 80 + 1) // 16 + (80_000 // 80 + 1) // 16
    )


def test_batched_units_equal_one_by_one(tokenizer, clip_units):
    wave_2s, _ = soundfile.read(CLIPS["speech_2s_16k"], dtype="float32")
    clips = [CLIPS["speech_2s_16k"], {"array": wave_2s[:30400], "sampling_rate": 16000}, CLIPS["speech_stereo_44k"],
             {"array": wave_2s[:1300], "sampling_rate": 16000}]  # fmt: skip
    # On CPU the 2 s and 1.9 s clips share a padded batch (within 10 % of each other's length).
    lengths = [len(waveform) for waveform in prepare_audio(clips)]
    assert tokenizer._batches(lengths, max_batch_seconds=200) == [[2], [0, 1], [3]]
    batched = tokenizer.encode_units(clips)
    assert batched[0] == clip_units["speech_2s_16k"] and batched[2] == clip_units["speech_stereo_44k"]
    assert batched[1] == tokenizer.encode_units(clips[1]) and batched[3] == tokenizer.encode_units(clips[3])
    assert [len(batched[3][name]) for name in ("hubert", "pitch", "style")] == [1, 1, 1]
    assert tokenizer.encode_string(clips[:2]) == [units_to_string(units) for units in batched[:2]]


def test_padded_forward_gives_every_stream(tokenizer, clip_units):
    wave, _ = soundfile.read(CLIPS["speech_2s_16k"], dtype="float32")
    batch = torch.zeros(2, 32000)
    batch[0], batch[1, :8000] = torch.from_numpy(wave), torch.from_numpy(wave[:8000])
    mask = (torch.arange(32000) < torch.tensor([[32000], [8000]])).long()
    with torch.no_grad():
        output = tokenizer(batch, attention_mask=mask)
    assert output.pitch_lengths.tolist() == [25, 6] and output.style_lengths.tolist() == [2, 1]
    assert output.pitch_units.shape == (2, 25) and output.style_units.shape == (2, 2)
    assert (output.pitch_units[1, 6:] == -1).all() and (output.style_units[1, 1:] == -1).all()
    assert output.pitch_units[0].tolist() == clip_units["speech_2s_16k"]["pitch"]
    assert output.style_units[0].tolist() == clip_units["speech_2s_16k"]["style"]


def test_save_and_reload_is_identical(tokenizer, clip_units, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(reloaded, SpiritLMSpeechTokenizer)
    without_path = lambda config: {k: v for k, v in config.to_dict().items() if k != "_name_or_path"}
    assert without_path(reloaded.config) == without_path(tokenizer.config)
    original, loaded = tokenizer.state_dict(), reloaded.state_dict()
    assert sorted(original) == sorted(loaded) and all(torch.equal(original[key], loaded[key]) for key in original)
    assert reloaded.encode_units(CLIPS["speech_2s_16k"]) == clip_units["speech_2s_16k"]


def test_bfloat16_keeps_the_pitch_encoder_float32(converted_dir, clip_units):
    model = SpiritLMSpeechTokenizer.from_pretrained(converted_dir, dtype=torch.bfloat16)
    dtypes = {name: tensor.dtype for name, tensor in model.state_dict().items()}
    assert {dtypes[name] for name in dtypes if name.startswith("pitch_encoder.")} == {torch.float32}
    assert {dtypes[name] for name in dtypes if not name.startswith("pitch_encoder.")} == {torch.bfloat16}
    units = model.encode_units(CLIPS["speech_2s_16k"])
    assert units["pitch"] == clip_units["speech_2s_16k"]["pitch"]  # raw float32 audio into the float32 encoder
    assert len(units["hubert"]) == 49 and len(units["style"]) == 2
    model.float().to(torch.bfloat16)  # .to() / .half() keep it float32 too
    assert model.pitch_encoder.fcpe.output_proj.weight.dtype == torch.float32
    assert model.hubert.dtype == torch.bfloat16


def test_silence_short_and_nan_audio(tokenizer):
    edge = RECORDED["edge_cases"]
    # Official: an IndexError inside torchfcpe's interpolation; ours: defined units for every stream.
    assert edge["silence_1s"]["error"].startswith("IndexError")
    units = tokenizer.encode_units(np.zeros(16000, dtype=np.float32), sampling_rate=16000)
    assert [len(units[name]) for name in ("hubert", "pitch", "style")] == [24, 12, 1]
    with torch.no_grad():
        silent_pitch, _ = tokenizer.pitch_encoder.quantize_f0(
            torch.zeros(1, 201), torch.zeros(1, 201, dtype=torch.bool), torch.tensor([201])
        )
    assert units["pitch"] == silent_pitch[0].tolist()  # the codes of an all-zero, all-unvoiced F0 track
    assert units_to_string(units).startswith(f"[St{units['style'][0]}][Pi{units['pitch'][0]}][Hu")

    # Official: 1000 samples are a skipped chunk (empty units); ours names the minimum.
    assert edge["short_1000"]["result"] == {"hubert": [], "pitch": [], "style": []}
    wave, _ = soundfile.read(CLIPS["speech_7s_16k"], dtype="float32")
    with pytest.raises(ValueError, match="has 1000 samples at 16000 Hz; the speech tokenizer needs at least 1280"):
        tokenizer.encode_units(wave[16000:17000], sampling_rate=16000)
    units = tokenizer.encode_units(wave[16000:17280], sampling_rate=16000)  # the official minimum chunk
    assert [len(units[name]) for name in ("hubert", "pitch", "style")] == [1, 1, 1]

    # Official: units computed from NaN; ours refuses NaN audio.
    assert "result" in edge["nan_1s"]
    with pytest.raises(ValueError, match="NaN or infinite"):
        tokenizer.encode_units(np.full(16000, np.nan, dtype=np.float32), sampling_rate=16000)
    with pytest.raises(ValueError, match="NaN or infinite"):
        tokenizer(torch.full((16000,), float("nan")))


def test_tiny_expressive_speech_tokenizer():
    config = tiny_speech_tokenizer_config(variant="expressive")
    assert config.unit_types == ("hubert", "pitch", "style")
    assert tiny_speech_tokenizer_config().unit_types == ("hubert",)
    model = tiny_speech_tokenizer(seed=0, variant="expressive")
    assert sum(parameter.numel() for parameter in model.parameters()) < 300_000
    wave, _ = soundfile.read(CLIPS["speech_7s_16k"], dtype="float32")
    units = model.encode_units(wave, sampling_rate=16000)
    assert [len(units[name]) for name in ("hubert", "pitch", "style")] == [174, 87, 7]
    # The seeded N(0, 1/fan-in) weights (testing/weights.py) spread speech over many pitch codes and, unlike a default
    # initialisation, give the seconds of speech different styles. (Official parity of the style units is checked on
    # the converted official-format encoder, whose weights the tiny one no longer shares.)
    assert len(set(units["pitch"])) >= 10
    assert len(set(units["style"])) >= 2
    with pytest.raises(ValueError, match="unknown variant 'expresive'"):
        tiny_speech_tokenizer_config(variant="expresive")
    with pytest.raises(ValueError, match="style encoder config lacks"):
        SpiritLMSpeechTokenizer(tiny_speech_tokenizer_config(style_config={"num_styles": 100}))
    with pytest.raises(ValueError, match="unknown PitchUnitEncoderConfig keys"):
        SpiritLMSpeechTokenizer(tiny_speech_tokenizer_config(pitch_config={"bins": 64}))


def test_tiny_sub_configs_are_the_converted_official_format_ones():
    # The tiny HF configs are written out (the package does not import the official-format writers): they must stay
    # the shapes the conversion gives for the writers' tiny checkpoints, as the vocoder's do (test_vocoder.py).
    _, fcpe = convert_fcpe(random_fcpe_checkpoint())
    pitch = {"fcpe": fcpe, **vqvae_config_to_pitch_kwargs(tiny_official_vqvae_f0_config())}
    tiny = tiny_expressive_sub_configs()
    assert tiny["pitch_config"].to_dict() == type(tiny["pitch_config"])(**pitch).to_dict()
    converted_style = type(tiny["style_config"])(**convert_style_config(tiny_official_style_config()))
    assert tiny["style_config"].to_dict() == converted_style.to_dict()


def test_a_speech_tokenizer_saved_with_dict_sub_configs_keeps_loading(tmp_path):
    """A repo converted before the sub-configs were config classes: its config.json holds them as plain dicts."""
    model = tiny_speech_tokenizer(seed=0, variant="expressive")
    model.save_pretrained(tmp_path / "old")
    shutil.copy(FIXTURES / "dict_sub_configs" / "config.json", tmp_path / "old" / "config.json")
    loaded = AutoModel.from_pretrained(tmp_path / "old")
    pitch, style = loaded.config.pitch_config, loaded.config.style_config
    assert type(pitch) is PitchUnitEncoderConfig and type(pitch.fcpe) is FCPEConfig
    assert type(style) is SpiritLMStyleEncoderConfig and type(style.wav2vec2) is Wav2Vec2Config
    assert (pitch.l_bins, pitch.fcpe.hidden_size, style.num_styles, style.wav2vec2.hidden_size) == (64, 16, 100, 32)
    for name in ("pitch_config", "style_config"):
        assert _values(getattr(loaded.config, name)) == _values(getattr(model.config, name))
    wave, _ = soundfile.read(CLIPS["speech_2s_16k"], dtype="float32")
    assert loaded.encode_units(wave, sampling_rate=16000) == model.encode_units(wave, sampling_rate=16000)
    loaded.save_pretrained(tmp_path / "new")  # saved again in the sub-config layout, it loads the same
    again = AutoModel.from_pretrained(tmp_path / "new")
    assert _values(again.config.pitch_config) == _values(pitch) and _values(again.config.style_config) == _values(
        style
    )


def test_sub_configs_are_strict_configs_and_dict_access_is_deprecated():
    config = tiny_speech_tokenizer_config(variant="expressive")
    with pytest.warns(FutureWarning, match=r"no longer a dict: read config.l_bins instead of config\['l_bins'\]"):
        assert config.pitch_config["l_bins"] == config.pitch_config.l_bins == 64
    with pytest.raises(ValueError, match=r"unknown SpiritLMStyleEncoderConfig keys \['pool'\]"):
        SpiritLMStyleEncoderConfig(pool=50)
    with pytest.raises(ValueError, match="FCPEConfig has model_type 'spiritlm_fcpe', got 'hubert'"):
        PitchUnitEncoderConfig(fcpe={"model_type": "hubert"})
    with pytest.raises(ValueError, match=r"style encoder config lacks \['projector_size'\]"):
        SpiritLMStyleEncoder({**config.style_config.to_dict(), "projector_size": None})
    assert config.style_config.wav2vec2.mask_time_prob == 0.0  # inference only: no SpecAugment weights


def _values(config) -> dict:
    """`config.to_dict()` without what loading sets (`dtype`, `_name_or_path`), in nested configs too."""

    def strip(values: dict) -> dict:
        return {
            key: strip(value) if isinstance(value, dict) else value
            for key, value in values.items()
            if key not in ("dtype", "_name_or_path")
        }

    return strip(config.to_dict())


def test_conversion_errors(checkpoints, tmp_path):
    fcpe = write_official_fcpe(tmp_path / "fcpe.pt")
    with pytest.raises(ValueError, match="unknown variant 'large'"):
        convert_speech_tokenizer(checkpoints, variant="large")
    partial = tmp_path / "partial"
    write_official_hubert_checkpoints(partial)
    with pytest.raises(FileNotFoundError, match="vqvae_f0_quantizer"):
        convert_speech_tokenizer(partial, variant="expressive", fcpe_checkpoint=fcpe)
    write_official_vqvae_f0(partial / VQVAE_DIR)
    with pytest.raises(FileNotFoundError, match="style"):
        convert_speech_tokenizer(partial, variant="expressive", fcpe_checkpoint=fcpe)
    with pytest.raises(ValueError, match="FCPE checkpoint .*missing.pt does not exist"):
        convert_speech_tokenizer(checkpoints, variant="expressive", fcpe_checkpoint=tmp_path / "missing.pt")
    with pytest.raises(SystemExit) as exit_info:
        convert_main(["--checkpoints-dir", str(partial), "--output-dir", str(tmp_path / "out"), "--variant",
                      "expressive", "--fcpe-checkpoint", str(fcpe)])  # fmt: skip
    assert str(exit_info.value.code).startswith("error: ") and "\n" not in str(exit_info.value.code)


def test_cli_writes_the_expressive_speech_tokenizer(checkpoints, tmp_path):
    fcpe = write_official_fcpe(tmp_path / "fcpe.pt")
    argv = ["--checkpoints-dir", str(checkpoints), "--output-dir", str(tmp_path), "--variant", "expressive"]
    convert_main([*argv, "--fcpe-checkpoint", str(fcpe), "--dtype", "bfloat16"])
    model = AutoModel.from_pretrained(tmp_path / "speech_tokenizer")
    assert model.config.unit_types == ("hubert", "pitch", "style")
    assert model.config.pitch_config["fcpe"]["hidden_size"] == 16  # the random stand-in
    assert model.hubert.dtype == model.style_encoder.projector.weight.dtype == torch.bfloat16
    assert model.pitch_encoder.codebook.codebook.dtype == torch.float32
