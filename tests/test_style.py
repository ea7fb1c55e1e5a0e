import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from official_style import tiny_official_style_config, write_official_style_encoder
from safetensors.torch import load_file, save_file

from transformers_spiritlm.audio import prepare_audio
from transformers_spiritlm.conversion.convert_style import ConversionError, convert_style, main
from transformers_spiritlm.speech_tokenizer.style import SpiritLMStyleEncoder


FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL = json.loads((FIXTURES / "style" / "official_style.json").read_text())
OFFICIAL_CHUNK = 100 * 16000  # the official tokenizer encodes audio in 100 s chunks


def waveform(name: str) -> torch.Tensor:
    """The 16 kHz float32 waveform the official model was given for the `name` entry of the fixture."""
    if name == "silence_16000":
        return torch.zeros(16000)
    if name == "speech_stereo_44k":  # the official load + resample + channel mean, saved by the recording script
        return torch.from_numpy(np.load(FIXTURES / "style" / "stereo_44k_mono_16k.npy"))
    clip, _, end = name.partition("[:")
    audio, rate = sf.read(FIXTURES / "audio" / f"{clip}.wav", dtype="float32")
    assert rate == 16000
    return torch.from_numpy(audio[: int(end[:-1])] if end else audio)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    seed = OFFICIAL["checkpoint"]["seed"]
    return write_official_style_encoder(tmp_path_factory.mktemp("official") / "style_encoder_w2v2", seed=seed)


@pytest.fixture(scope="module")
def converted(checkpoint):
    return convert_style(checkpoint)


@pytest.fixture(scope="module")
def encoder(converted):
    state_dict, config = converted
    encoder = SpiritLMStyleEncoder(config).eval()
    encoder.load_state_dict(state_dict, strict=True)
    return encoder


@pytest.mark.parametrize("name", list(OFFICIAL["module"]))
def test_units_and_logits_match_official(encoder, name):
    expected = OFFICIAL["module"][name]
    audio = waveform(name)
    assert len(audio) == expected["num_samples"]
    with torch.no_grad():
        output = encoder(audio)
    assert output.units[0].tolist() == expected["units"]
    assert output.unit_lengths.tolist() == [len(expected["units"])] == [encoder.num_units(len(audio))]
    torch.testing.assert_close(output.logits[0], torch.tensor(expected["logits"]), atol=1e-4, rtol=0)


def test_batched_equals_one_by_one(encoder):
    names = list(OFFICIAL["module"])
    audios = [waveform(name) for name in names]
    batch = torch.nn.utils.rnn.pad_sequence(audios, batch_first=True)
    mask = torch.nn.utils.rnn.pad_sequence([torch.ones(len(a), dtype=torch.long) for a in audios], batch_first=True)
    with torch.no_grad():
        batched = encoder(batch, attention_mask=mask)
        for i, (name, audio) in enumerate(zip(names, audios)):
            single = encoder(audio[None])
            length = int(batched.unit_lengths[i])
            assert batched.units[i, :length].tolist() == single.units[0].tolist() == OFFICIAL["module"][name]["units"]
            assert (batched.units[i, length:] == -1).all()
            torch.testing.assert_close(batched.logits[i, :length], single.logits[0], atol=1e-5, rtol=1e-5)
    assert encoder.encode(audios) == [OFFICIAL["module"][name]["units"] for name in names]


def test_equal_length_rows_share_the_unpadded_path(encoder):
    audio = waveform("speech_2s_16k")
    with torch.no_grad():
        batched = encoder(torch.stack([audio, audio.flip(0), audio]))
        single = encoder(audio.flip(0))
    assert batched.units[0].tolist() == batched.units[2].tolist() == OFFICIAL["module"]["speech_2s_16k"]["units"]
    assert batched.units[1].tolist() == single.units[0].tolist()
    torch.testing.assert_close(batched.logits[1], single.logits[0], atol=1e-6, rtol=1e-6)


def test_long_clip_in_official_chunks_matches_official_file_units(encoder):
    # The file-path record runs the official tokenizer: load, 100 s chunks, style units per chunk.
    repeated = torch.cat([waveform("speech_7s_16k")] * 15)
    chunks = [repeated[:OFFICIAL_CHUNK], repeated[OFFICIAL_CHUNK:]]
    units = encoder.encode(chunks)
    assert " ".join(map(str, units[0] + units[1])) == OFFICIAL["from_path"]["speech_7s_16k_x15"]


@pytest.mark.parametrize("name", ["speech_2s_16k", "speech_7s_16k", "speech_stereo_44k"])
def test_units_from_file_paths_match_official(encoder, name):
    # Our loading (read, resample each channel to 16 kHz, channel mean) feeding the encoder, against the official
    # tokenizer's style units from the same path.
    (audio,) = prepare_audio([FIXTURES / "audio" / f"{name}.wav"])
    assert " ".join(map(str, encoder.encode([audio])[0])) == OFFICIAL["from_path"][name]


def test_short_and_bad_input_raise_clear_errors(encoder):
    audio = waveform("speech_2s_16k")
    assert OFFICIAL["official_errors"]["speech_2s_16k[:399]"].startswith("RuntimeError")  # official crashes in torch
    with pytest.raises(ValueError, match=r"rows \[0\] are shorter than 400 samples \(25 ms"):
        encoder(audio[:399])
    mask = torch.ones(2, 16000, dtype=torch.long)
    mask[1, 300:] = 0
    with pytest.raises(ValueError, match=r"rows \[1\] are shorter than 400"):
        encoder(audio[:16000].repeat(2, 1), attention_mask=mask)
    for bad in (float("nan"), float("inf")):
        broken = audio.clone()
        broken[100] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            encoder(broken)
    with pytest.raises(TypeError, match="divide int16 PCM by 32768"):
        encoder((audio * 32767).to(torch.int16))
    with pytest.raises(ValueError, match="average the channels to mono"):
        encoder(audio.reshape(1, 2, -1))
    with pytest.raises(ValueError, match="right-padded"):
        encoder(audio[None], attention_mask=torch.ones(1, len(audio)).index_fill(1, torch.tensor([5]), 0))
    with pytest.raises(TypeError, match="non-empty list"):
        encoder.encode([])
    with pytest.raises(ValueError, match="1-D mono"):
        encoder.encode([audio.reshape(2, -1)])
    with pytest.raises(TypeError, match="waveform 1 must be a float torch.Tensor"):
        encoder.encode([audio, audio.numpy()])


def test_nan_in_padding_is_ignored(encoder):
    audio = waveform("speech_2s_16k[:8000]")
    padded = torch.cat([audio, torch.full((500,), float("nan"))])[None]
    mask = torch.cat([torch.ones(len(audio)), torch.zeros(500)])[None]
    with torch.no_grad():
        assert encoder(padded, attention_mask=mask).units.tolist() == [
            OFFICIAL["module"]["speech_2s_16k[:8000]"]["units"]
        ]


def test_state_dict_safetensors_round_trip(encoder, converted, tmp_path):
    state_dict, config = converted
    assert set(encoder.state_dict()) == set(state_dict)
    save_file(encoder.state_dict(), str(tmp_path / "style.safetensors"))
    reloaded = SpiritLMStyleEncoder(json.loads(json.dumps(config))).eval()
    reloaded.load_state_dict(load_file(str(tmp_path / "style.safetensors")), strict=True)
    audio = waveform("speech_2s_16k")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(audio).logits, encoder(audio).logits, atol=0, rtol=0)


def test_conversion_accepts_parametrized_weight_norm_and_drops_unused_weights(converted, tmp_path):
    config = {**tiny_official_style_config(), "use_weighted_layer_sum": True}
    seed = OFFICIAL["checkpoint"]["seed"]
    write_official_style_encoder(tmp_path / "speech_tokenizer" / "style_encoder_w2v2", seed, config, False)
    state_dict, _ = convert_style(tmp_path)  # the checkpoints/ root is accepted too
    assert state_dict.keys() == converted[0].keys()
    for key, tensor in converted[0].items():
        torch.testing.assert_close(state_dict[key], tensor, atol=0, rtol=0)


def test_conversion_errors_are_one_line_and_clear(checkpoint, tmp_path):
    with pytest.raises(FileNotFoundError, match="no style encoder folder"):
        convert_style(tmp_path / "nowhere")
    target = tmp_path / "style"
    target.mkdir()
    (target / "config.json").write_text((checkpoint / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="missing official style encoder file .*pytorch_model.bin"):
        convert_style(target)
    (target / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(ConversionError, match="cannot read .*pytorch_model.bin as a torch checkpoint"):
        convert_style(target)
    state = torch.load(checkpoint / "pytorch_model.bin", weights_only=True)
    torch.save({k: v for k, v in state.items() if k != "classifier.bias"}, target / "pytorch_model.bin")
    with pytest.raises(ConversionError, match=r"lacks 1 weights, first \['classifier.bias'\]"):
        convert_style(target)
    config = json.loads((checkpoint / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, "id2label": {"0": "a", "1": "b"}}))
    torch.save(state, target / "pytorch_model.bin")
    with pytest.raises(
        ConversionError, match=r"'classifier.weight' has shape \(100, 16\), config.json implies \(2, 16\)"
    ):
        convert_style(target)
    (target / "config.json").write_text("{broken")
    with pytest.raises(ConversionError, match="is not valid JSON"):
        convert_style(target)
    for error in (FileNotFoundError, ConversionError):
        with pytest.raises(error) as info:
            convert_style(tmp_path / "nowhere" if error is FileNotFoundError else target)
        assert "\n" not in str(info.value)


def test_cli_writes_config_and_safetensors(checkpoint, converted, tmp_path):
    assert main(["--checkpoints-dir", str(checkpoint), "--output-dir", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "config.json").read_text()) == converted[1]
    assert load_file(str(tmp_path / "model.safetensors")).keys() == converted[0].keys()
    with pytest.raises(SystemExit, match="error: no style encoder folder"):
        main(["--checkpoints-dir", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path)])
