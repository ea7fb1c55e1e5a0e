"""Audio loading, int → float scaling, channel averaging and resampling (against torchaudio's recorded output)."""

import contextlib
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

import transformers_spiritlm.audio as audio_module
from transformers_spiritlm.audio import is_audio_batch, load_audio, prepare_audio, resample, to_float_waveform


FIXTURES = Path(__file__).parent / "fixtures"
MONO = FIXTURES / "audio" / "speech_2s_16k.wav"
STEREO = FIXTURES / "audio" / "speech_stereo_44k.wav"
RESAMPLED = np.load(FIXTURES / "speech_tokenizer" / "official_resample.npz")


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_resample_is_bit_identical_to_torchaudio(rate, dtype):
    waveform = torch.from_numpy(RESAMPLED[f"{rate}_{dtype}_input"])
    expected = torch.from_numpy(RESAMPLED[f"{rate}_{dtype}_output"])
    resampled = resample(waveform, rate, 16000)
    assert resampled.dtype == waveform.dtype
    assert torch.equal(resampled, expected)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_polyphase_path_equals_torchaudio_up_to_rounding(rate, dtype, monkeypatch):
    """The path taken where torchaudio's filter bank would be too large, forced here on the recorded rates."""
    monkeypatch.setattr(audio_module, "_MAX_FILTER_BANK_TAPS", 0)
    waveform = torch.from_numpy(RESAMPLED[f"{rate}_{dtype}_input"])
    expected = torch.from_numpy(RESAMPLED[f"{rate}_{dtype}_output"])
    resampled = resample(waveform, rate, 16000)
    assert resampled.dtype == waveform.dtype and resampled.shape == expected.shape
    # A few units in the last place: the same taps, summed in another order.
    atol = 5e-7 if dtype == "float32" else 1e-15
    torch.testing.assert_close(resampled, expected, rtol=0, atol=atol)


@contextlib.contextmanager
def address_space_limit(extra_bytes: int):
    """Lets this process map at most `extra_bytes` more memory (Linux): a larger allocation fails at once."""
    resource = pytest.importorskip("resource")
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        pytest.skip("needs /proc/self/status (Linux)")
    used = next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (used + extra_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_resampling_coprime_rates_takes_memory_of_the_output():
    """44101 → 16000 Hz has no common factor: torchaudio's filter bank would hold 16000 x 44135 taps (2.8 GB in
    float32, several times that while it is computed) for any input, even a second."""
    times = np.arange(44101) / 44101
    waveform = torch.from_numpy(np.sin(2 * np.pi * 440 * times).astype(np.float32))
    with address_space_limit(2**30):
        resampled = resample(waveform, 44101, 16000)
    assert resampled.shape == (16000,)
    # The 440 Hz tone sampled at 16 kHz, away from the edges (where the filter sees the zero padding).
    expected = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    np.testing.assert_allclose(resampled[200:-200].numpy(), expected[200:-200], rtol=0, atol=2e-3)


def test_resample_of_a_list_equals_one_by_one():
    generator = torch.Generator().manual_seed(0)
    waveforms = [torch.randn(length, generator=generator) for length in (5, 441, 4410, 30001)]
    waveforms.append(torch.randn(2, 1000, generator=generator))
    together = resample(waveforms, 44100, 16000)
    for waveform, resampled in zip(waveforms, together):
        assert torch.equal(resampled, resample(waveform, 44100, 16000))
    assert [tuple(item.shape) for item in together] == [(2,), (160,), (1600,), (10885,), (2, 363)]


def test_resampled_length_follows_torchaudio_rounding():
    # torchaudio 2.11 takes the ceiling of the length ratio in float32: 580509 samples here, where exact arithmetic
    # (ceil(1600028 * 160 / 441)) gives 580510.
    assert resample(torch.zeros(1600028), 44100, 16000).shape == (580509,)


def test_resample_checks_its_arguments():
    waveform = torch.zeros(100)
    assert resample(waveform, 16000, 16000) is waveform
    with pytest.raises(TypeError, match="floating-point"):
        resample(torch.zeros(100, dtype=torch.int16), 44100, 16000)
    with pytest.raises(ValueError, match="positive integers"):
        resample(waveform, 44100.5, 16000)


def test_int_pcm_is_scaled_to_float():
    pcm = np.array([-32768, 0, 16384, 32767], dtype=np.int16)
    assert to_float_waveform(pcm).tolist() == [-1.0, 0.0, 0.5, 32767 / 32768]
    assert to_float_waveform(torch.from_numpy(pcm)).tolist() == [-1.0, 0.0, 0.5, 32767 / 32768]
    assert to_float_waveform(np.array([-(2**31), 2**30], dtype=np.int32)).tolist() == [-1.0, 0.5]
    assert to_float_waveform(np.array([-128, 64], dtype=np.int8)).tolist() == [-1.0, 0.5]
    assert to_float_waveform(np.array([0, 128, 192], dtype=np.uint8)).tolist() == [-1.0, 0.0, 0.5]
    converted = to_float_waveform(np.array([0.25, -0.5], dtype=np.float64))
    assert converted.dtype == torch.float32 and converted.tolist() == [0.25, -0.5]
    with pytest.raises(TypeError, match="cannot tell the scale of torch.int64"):
        to_float_waveform(np.array([1, 2]))
    with pytest.raises(TypeError, match="integer PCM or float"):
        to_float_waveform(np.array([True, False]))


def test_load_audio_reads_files_like_the_official_loader():
    waveform, rate = load_audio(MONO)
    pcm, _ = soundfile.read(MONO, dtype="int16")
    assert rate == 16000 and waveform.shape == (1, len(pcm))
    assert torch.equal(waveform[0], torch.from_numpy(pcm.astype(np.float32) / 32768))
    waveform, rate = load_audio(str(STEREO))
    assert rate == 44100 and waveform.shape[0] == 2 and waveform.dtype == torch.float32


class _Samples:
    def __init__(self, data, sample_rate):
        self.data, self.sample_rate = data, sample_rate


class _Decoder:
    """The interface of the decoder `datasets` returns for Audio columns when torchcodec is installed."""

    def __init__(self, data, sample_rate):
        self.samples = _Samples(data, sample_rate)

    def get_all_samples(self):
        return self.samples


def test_load_audio_accepts_arrays_tensors_and_datasets_audio():
    reference, _ = load_audio(MONO)
    array = reference[0].numpy()
    for audio in (
        array,
        torch.from_numpy(array),
        array[None, None],
        array.tolist(),
        {"array": array.astype(np.float64), "sampling_rate": 16000, "path": None},
        {"path": str(MONO), "array": None},
        {"bytes": MONO.read_bytes(), "path": None},
        _Decoder(torch.from_numpy(array)[None], 16000),
    ):
        waveform, rate = load_audio(audio, sampling_rate=16000 if isinstance(audio, (np.ndarray, list)) else None)
        assert rate == 16000
        assert torch.equal(waveform, reference)
    # The argument gives the rate of arrays only: files and Audio dicts keep their own.
    assert load_audio(STEREO, sampling_rate=16000)[1] == 44100
    assert load_audio({"array": array, "sampling_rate": 8000}, sampling_rate=16000)[1] == 8000


def test_load_audio_rejects_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_audio(tmp_path / "nope.wav")
    (tmp_path / "bad.flac").write_bytes(b"not audio at all")
    with pytest.raises(ValueError, match="could not read audio file .*bad.flac"):
        load_audio(tmp_path / "bad.flac")
    with pytest.raises(ValueError, match="could not read audio bytes"):
        load_audio({"bytes": b"garbage"})
    with pytest.raises(ValueError, match="empty"):
        load_audio(torch.zeros(0), sampling_rate=16000)
    with pytest.raises(ValueError, match="more channels than samples; pass \\(channels, samples\\)"):
        load_audio(np.zeros((16000, 2), dtype=np.float32), sampling_rate=16000)
    with pytest.raises(ValueError, match="1-D \\(samples\\) or 2-D"):
        load_audio(np.zeros((2, 2, 100), dtype=np.float32), sampling_rate=16000)
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_audio(np.array([0.0, np.nan, 0.0], dtype=np.float32), sampling_rate=16000)
    with pytest.raises(ValueError, match="positive whole number"):
        load_audio(np.zeros(100, dtype=np.float32), sampling_rate=-5)
    with pytest.raises(ValueError, match="needs 'array' and 'sampling_rate'"):
        load_audio({"audio": [0.0]})
    with pytest.raises(ValueError, match="also needs 'sampling_rate'"):
        load_audio({"array": np.zeros(10)})
    with pytest.raises(TypeError, match="unsupported audio input of type int"):
        load_audio(3)


def test_load_audio_refuses_rates_outside_recorded_audio_before_decoding(tmp_path, monkeypatch):
    one_hz = tmp_path / "one-hz.wav"
    soundfile.write(one_hz, np.zeros(32000, np.int16), 1, subtype="PCM_16")  # 64 KB: 9 hours once at 16 kHz
    decoded = []
    monkeypatch.setattr(soundfile.SoundFile, "read", lambda *args, **kwargs: decoded.append(args))
    with pytest.raises(ValueError) as error:
        load_audio(one_hz)
    assert str(error.value) == (
        f"audio file {str(one_hz)!r} has a sampling rate of 1 Hz, outside the 4000 to 384000 Hz of recorded audio; "
        "give its true rate (is the header corrupt?) or resample it into that range first"
    )
    assert not decoded
    monkeypatch.undo()
    samples = np.zeros(1000, np.float32)
    for rate, source in [(3999, "the array audio"), (384001, "the array audio")]:
        with pytest.raises(ValueError, match=rf"^{source} has a sampling rate of {rate} Hz, outside the 4000 to"):
            load_audio(samples, sampling_rate=rate)
    with pytest.raises(ValueError, match=r"^the audio dict has a sampling rate of 2000 Hz"):
        load_audio({"array": samples, "sampling_rate": 2000})
    assert [load_audio(samples, sampling_rate=rate)[1] for rate in (4000, 384000)] == [4000, 384000]


def test_prepare_audio_resamples_then_averages_channels(caplog):
    stereo, rate = load_audio(STEREO)
    three_channels = {"array": torch.cat([stereo, stereo[:1]]).numpy(), "sampling_rate": rate}
    with caplog.at_level(logging.WARNING):
        prepared = prepare_audio([STEREO, MONO, three_channels, three_channels])
    assert torch.equal(prepared[0], resample(stereo, rate, 16000).mean(0))
    assert torch.equal(prepared[1], load_audio(MONO)[0][0])
    assert torch.equal(prepared[2], resample(torch.cat([stereo, stereo[:1]]), rate, 16000).mean(0))
    assert sum("with 3 channels; averaging them to mono" in message for message in caplog.messages) == 1


def test_is_audio_batch():
    assert is_audio_batch(["a.wav", "b.wav"]) and is_audio_batch([np.zeros(3)]) and is_audio_batch([])
    assert not is_audio_batch([0.0, 0.1]) and not is_audio_batch(np.zeros((2, 3))) and not is_audio_batch("a.wav")


def test_write_wav_replaces_the_file_only_once_complete(tmp_path):
    from transformers_spiritlm.cli import write_wav as cli_write_wav

    output = tmp_path / "answers" / "out.wav"
    audio_module.write_wav(output, np.array([0.5, -2.0, 2.0], np.float32), 16000)  # clipped to [-1, 1]
    samples, rate = soundfile.read(output, dtype="int16")
    assert rate == 16000 and samples.tolist() == [16384, -32768, 32767]
    assert soundfile.info(output).subtype == "PCM_16"
    assert audio_module.wav_bytes(np.array([0.5, -2.0, 2.0], np.float32), 16000) == output.read_bytes()

    output.write_bytes(b"kept")
    for write in (audio_module.write_wav, cli_write_wav):
        with pytest.raises(ValueError, match="too many dimensions"):
            write(output, np.zeros((2, 2, 2), np.float32), 16000)
        assert output.read_bytes() == b"kept"  # a failed write leaves the old file and no temporary one
        assert [path.name for path in output.parent.iterdir()] == ["out.wav"]


def test_check_waveform_batch_gives_one_message_for_every_model():
    waveform, lengths = audio_module.check_waveform_batch(torch.zeros(5), "Model", torch.tensor([1, 1, 1, 0, 0]))
    assert waveform.shape == (1, 5) and lengths.tolist() == [3]
    with pytest.raises(ValueError, match="attention_mask must be right-padded"):
        audio_module.check_waveform_batch(torch.zeros(5), "Model", torch.tensor([0, 1, 1, 1, 1]))
    with pytest.raises(TypeError, match=r"^Model expects a float torch.Tensor of samples in \[-1, 1\], got list; x$"):
        audio_module.check_waveform_batch([0.0], "Model", hint="; x")
    with pytest.raises(TypeError, match=r"got dtype torch.int16; divide int16 PCM by 32768 \(`audio / 32768`\)$"):
        audio_module.check_waveform_batch(torch.zeros(5, dtype=torch.int16), "Model")
    for shape in ((1, 2, 5), (0, 5)):
        with pytest.raises(ValueError, match=rf"got shape \({shape[0]}, .*average the channels to mono first$"):
            audio_module.check_waveform_batch(torch.zeros(shape), "Model")


def test_find_audio_files_errors():
    with pytest.raises(FileNotFoundError, match="neither an audio file nor a folder"):
        audio_module.find_audio_files(["missing-folder"])
    with pytest.raises(ValueError, match="no audio files"):
        audio_module.find_audio_files([Path(__file__).parent / "fixtures" / "processing"])
