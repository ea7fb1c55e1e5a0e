"""`SpiritLMFeatureExtractor`: audio inputs → padded batch of 16 kHz mono waveforms for the speech tokenizer."""

from collections.abc import Sequence

from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.utils import PaddingStrategy, TensorType

from .audio import AudioInput, is_audio_batch, prepare_audio


class SpiritLMFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Loads audio (paths, 1-D or (channels, samples) arrays / tensors, int PCM or float, `datasets` Audio dicts),
    resamples it to `sampling_rate` with the official algorithm (torchaudio's default windowed sinc, in torch),
    averages channels to mono and right-pads a batch. Samples are not normalised: the official HuBERT tokenizer
    takes the raw waveform.

    Args:
        feature_size (`int`, *optional*, defaults to 1):
            One value per sample.
        sampling_rate (`int`, *optional*, defaults to 16000):
            Rate of the returned waveforms, in Hz.
        padding_value (`float`, *optional*, defaults to 0.0):
            Value of padded samples.
        return_attention_mask (`bool`, *optional*, defaults to `True`):
            Return the mask of real samples, which the speech tokenizer needs to encode a padded batch exactly.

    ```python
    >>> fe = SpiritLMFeatureExtractor()
    >>> batch = fe(["a.wav", stereo_44k_array], sampling_rate=44100, return_tensors="pt")
    >>> batch["input_values"].shape, batch["attention_mask"].sum(-1)     # (2, longest), samples of each clip
    ```"""

    model_input_names = ["input_values", "attention_mask"]

    def __init__(
        self,
        feature_size: int = 1,
        sampling_rate: int = 16000,
        padding_value: float = 0.0,
        return_attention_mask: bool = True,
        **kwargs,
    ):
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=return_attention_mask,
            **kwargs,
        )

    def __call__(
        self,
        audio: AudioInput | Sequence[AudioInput],
        sampling_rate: int | None = None,
        padding: bool | str | PaddingStrategy = True,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | TensorType | None = None,
    ) -> BatchFeature:
        """
        Args:
            audio: one audio input or a list of them (see [`~audio.load_audio`]).
            sampling_rate: rate of array / tensor inputs; files and Audio dicts carry their own. Arrays without it
                are taken to be at `self.sampling_rate` (with a warning).
            padding, max_length, truncation, pad_to_multiple_of: as [`~SequenceFeatureExtractor.pad`].
            return_attention_mask: defaults to `self.return_attention_mask`.
            return_tensors: `"pt"`, `"np"` or `None` (lists of arrays).

        Returns:
            [`BatchFeature`] with `input_values` `(batch, samples)` float32 and `attention_mask` `(batch, samples)`,
            one row per input (a single input gives a batch of one).
        """
        audios = list(audio) if is_audio_batch(audio) else [audio]
        if not audios:
            raise ValueError("no audio given: pass one audio input or a non-empty list of them")
        waveforms = prepare_audio(audios, sampling_rate, self.sampling_rate)
        return self.pad(
            BatchFeature({"input_values": [waveform.cpu().numpy() for waveform in waveforms]}),
            padding=padding,
            max_length=max_length,
            truncation=truncation,
            pad_to_multiple_of=pad_to_multiple_of,
            return_attention_mask=return_attention_mask,
            return_tensors=return_tensors,
        )


__all__ = ["SpiritLMFeatureExtractor"]
