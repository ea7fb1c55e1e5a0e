"""The bfloat16 fast path of the speech tokenizer and the vocoder (`from_pretrained(..., dtype=torch.bfloat16)`) on
tiny random models: it runs and stays close to float32. Also the exactness of the float32 path's reformulations:
the sliced first conv layer, and the vocoder's padded-batch generator (the accelerator path; CPU synthesises items
one by one). Speed is measured by benchmarks/, never asserted here."""

from pathlib import Path

import numpy as np
import pytest
import torch

from transformers_spiritlm import SpiritLMSpeechTokenizer, SpiritLMVocoder
from transformers_spiritlm.audio import prepare_audio
from transformers_spiritlm.speech_tokenizer.hubert import group_norm_conv_features
from transformers_spiritlm.testing import tiny_vocoder
from transformers_spiritlm.testing.speech_tokenizer import tiny_speech_tokenizer


AUDIO = Path(__file__).parent / "fixtures" / "audio"
CLIPS = [AUDIO / "speech_7s_16k.wav", AUDIO / "speech_2s_16k.wav", AUDIO / "speech_stereo_44k.wav"]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("speech_tokenizer")
    tiny_speech_tokenizer(variant="expressive").save_pretrained(directory)
    return directory


def agreement(units: list[dict], reference: list[dict], stream: str) -> float:
    assert [len(item[stream]) for item in units] == [len(item[stream]) for item in reference]
    return float(np.mean(np.concatenate([np.equal(a[stream], b[stream]) for a, b in zip(units, reference)])))


def test_bfloat16_speech_tokenizer_agrees_with_float32(tokenizer_dir):
    exact = SpiritLMSpeechTokenizer.from_pretrained(tokenizer_dir)
    fast = SpiritLMSpeechTokenizer.from_pretrained(tokenizer_dir, dtype=torch.bfloat16)
    assert fast.hubert.dtype == fast.style_encoder.projector.weight.dtype == torch.bfloat16
    reference, units = exact.encode_units(CLIPS), fast.encode_units(CLIPS)
    # Measured: 97.6 % of the 289 hubert units and 11 of the 12 style units; the pitch encoder is float32 in both.
    assert agreement(units, reference, "hubert") >= 0.9
    assert agreement(units, reference, "style") >= 0.75
    assert agreement(units, reference, "pitch") == 1.0


def test_first_conv_layer_slices_give_the_stock_encoder_bits():
    hubert = tiny_speech_tokenizer().hubert
    with torch.no_grad():
        # More channels than one slice, so that the slicing itself is exercised.
        first = hubert.feature_extractor.conv_layers[0]
        wide = torch.nn.Conv1d(1, 160, first.conv.kernel_size, first.conv.stride, bias=False)
        norm = torch.nn.GroupNorm(160, 160)
        torch.nn.init.normal_(norm.weight, 1.0, 0.1)
        torch.nn.init.normal_(norm.bias, 0.0, 0.1)
        first.conv, first.layer_norm = wide, norm
        second = hubert.feature_extractor.conv_layers[1].conv
        hubert.feature_extractor.conv_layers[1].conv = torch.nn.Conv1d(160, second.out_channels, 3, 2, bias=False)
        waveforms = prepare_audio(CLIPS[:2])
        alone = [hubert.feature_extractor(waveform[None]) for waveform in waveforms]
        for waveform, expected in zip(waveforms, alone):
            assert torch.equal(group_norm_conv_features(hubert.feature_extractor, waveform[None]), expected)
        lengths = torch.tensor([len(waveform) for waveform in waveforms])
        padded = group_norm_conv_features(
            hubert.feature_extractor, torch.nn.utils.rnn.pad_sequence(waveforms, batch_first=True), lengths
        )
        for row, expected in enumerate(alone):
            torch.testing.assert_close(padded[row, :, : expected.shape[-1]], expected[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", ["base", "expressive"])
def test_bfloat16_vocoder_is_close_to_float32(variant, tmp_path):
    tiny_vocoder(variant).save_pretrained(tmp_path)
    exact = SpiritLMVocoder.from_pretrained(tmp_path)
    fast = SpiritLMVocoder.from_pretrained(tmp_path, dtype=torch.bfloat16)
    generator = torch.Generator().manual_seed(0)
    units = {"hubert": torch.randint(0, 501, (100,), generator=generator)}
    if variant == "expressive":
        units.update(
            pitch=torch.randint(0, 64, (50,), generator=generator),
            style=torch.randint(0, 100, (4,), generator=generator),
        )
    reference, waveform = exact.decode_units(**units, dur_pred=False), fast.decode_units(**units, dur_pred=False)
    assert waveform.dtype == torch.float32 and waveform.shape == reference.shape
    snr = 10 * torch.log10(reference.pow(2).sum() / (waveform - reference).pow(2).sum())
    assert snr > 30  # measured ~47 dB


def test_padded_batch_generator_equals_one_by_one():
    vocoder = tiny_vocoder("base")
    generator = torch.Generator().manual_seed(0)
    items = [vocoder.embed_units(torch.randint(0, 501, (n,), generator=generator), speaker_id=2) for n in (37, 60, 12)]
    lengths = torch.tensor([len(item) for item in items])
    with torch.no_grad():
        batch = vocoder.synthesise(torch.nn.utils.rnn.pad_sequence(items, batch_first=True).transpose(1, 2), lengths)
        for row, item in enumerate(items):
            alone = vocoder.synthesise(item.T[None], lengths[row : row + 1])[0]
            samples = len(alone)
            torch.testing.assert_close(batch[row, :samples], alone, atol=1e-5, rtol=0)
            assert (batch[row, samples:] == 0).all()
    # The public batch call (one by one on CPU) gives exactly the single-item waveforms.
    output = vocoder.decode_units([[5, 6, 7] * 10, [8, 9] * 7], dur_pred=False)
    assert torch.equal(output.waveform[1, : output.lengths[1]], vocoder.decode_units([8, 9] * 7, dur_pred=False))
