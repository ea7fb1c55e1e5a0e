"""SpiritLMFeatureExtractor: loading, resampling, mono mixing, padding, attention masks, save/load."""

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from transformers import AutoFeatureExtractor

from transformers_spiritlm import SpiritLMFeatureExtractor


AUDIO = Path(__file__).parent / "fixtures" / "audio"
CLIPS = [AUDIO / "speech_2s_16k.wav", AUDIO / "speech_stereo_44k.wav", AUDIO / "speech_7s_16k.wav"]


def test_batch_is_padded_with_attention_mask():
    pcm, _ = soundfile.read(CLIPS[2], dtype="int16")
    batch = SpiritLMFeatureExtractor()([CLIPS[0], CLIPS[1], pcm], sampling_rate=16000, return_tensors="pt")
    # Independent of the code under test: libsndfile's float reading (int16 / 2**15) and the stereo 44.1 kHz clip as
    # the official code loads it (torchaudio resampling of each channel, then their mean; recorded in style/).
    expected = [
        torch.from_numpy(soundfile.read(CLIPS[0], dtype="float32")[0]),
        torch.from_numpy(np.load(Path(__file__).parent / "fixtures" / "style" / "stereo_44k_mono_16k.npy")),
        torch.from_numpy(soundfile.read(CLIPS[2], dtype="float32")[0]),
    ]
    lengths = [len(waveform) for waveform in expected]
    assert batch["input_values"].shape == (3, max(lengths)) and batch["input_values"].dtype == torch.float32
    assert batch["attention_mask"].sum(-1).tolist() == lengths
    for row, waveform in enumerate(expected):
        assert torch.equal(batch["input_values"][row, : lengths[row]], waveform)
        assert not batch["input_values"][row, lengths[row] :].any()
        assert not batch["attention_mask"][row, lengths[row] :].any()


@pytest.mark.parametrize("dtype", ["int16", "int32", "int16 tensor", "int32 tensor"])
def test_integer_pcm_is_scaled_to_float(dtype):
    # The waveform itself: units cannot tell a wrong scale (HuBERT normalises its input).
    pcm, rate = soundfile.read(CLIPS[0], dtype=dtype.split()[0])
    audio = torch.from_numpy(pcm) if dtype.endswith("tensor") else pcm
    waveform = SpiritLMFeatureExtractor()(audio, sampling_rate=rate, return_tensors="np")["input_values"][0]
    np.testing.assert_array_equal(waveform, soundfile.read(CLIPS[0], dtype="float32")[0])  # libsndfile: pcm / 2**15


def test_no_normalisation_and_single_input():
    batch = SpiritLMFeatureExtractor()(CLIPS[0], return_tensors="np")
    samples, _ = soundfile.read(CLIPS[0], dtype="float32")
    assert batch["input_values"].shape == (1, len(samples))
    np.testing.assert_array_equal(batch["input_values"][0], samples)
    assert batch["attention_mask"].tolist() == [[1] * len(samples)]


def test_padding_options_are_those_of_sequence_feature_extractors():
    extractor = SpiritLMFeatureExtractor()
    batch = extractor([CLIPS[0]], padding="max_length", max_length=40000, return_tensors="np")
    assert batch["input_values"].shape == (1, 40000) and batch["attention_mask"].sum() == 32000
    batch = extractor([CLIPS[0]], pad_to_multiple_of=768, return_attention_mask=False, return_tensors="pt")
    assert batch["input_values"].shape == (1, 32256) and "attention_mask" not in batch
    with pytest.raises(ValueError, match="no audio given"):
        extractor([])


def test_save_and_auto_load(tmp_path):
    SpiritLMFeatureExtractor().save_pretrained(tmp_path)
    loaded = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(loaded, SpiritLMFeatureExtractor)
    assert (loaded.sampling_rate, loaded.return_attention_mask, loaded.padding_value) == (16000, True, 0.0)


def test_padded_batch_gives_the_speech_tokenizer_units(official_base_speech_tokenizer):
    batch = SpiritLMFeatureExtractor()(CLIPS, return_tensors="pt")
    with torch.no_grad():
        output = official_base_speech_tokenizer(**batch)
    for row, clip in enumerate(CLIPS):
        units = output.hubert_units[row, : output.frame_lengths[row]].tolist()
        assert units == official_base_speech_tokenizer.encode_units(clip)["hubert"]
