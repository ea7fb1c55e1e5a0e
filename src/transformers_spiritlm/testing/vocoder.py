"""Tiny random-weight [`SpiritLMVocoder`]s (BASE and EXPRESSIVE), for tests, the demo and the benchmarks."""

from ..configuration_spiritlm import VARIANTS, SpiritLMVocoderConfig
from ..vocoder import SpiritLMVocoder
from .weights import randomize_weights_


TINY_SPEAKERS = ["ex01", "ex02", "ex03", "ex04"]
TINY_STYLES = [
    "read-default", "read-happy", "read-sad", "read-whisper", "conv-angry",
    "conv-happy", "conv-laughing", "conv-sad", "conv-default", "conv-whisper",
]  # fmt: skip


def tiny_vocoder_config(variant: str = "expressive", **kwargs) -> SpiritLMVocoderConfig:
    """
    A vocoder config with the real hop sizes (640 samples per hubert unit at 16 kHz), 8-dim embeddings, 32 initial
    channels and four speakers; BASE adds ten styles, EXPRESSIVE the pitch and style units. `kwargs` override fields.
    These are the shapes of the tiny official-format vocoders the conversion tests write.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {', '.join(map(repr, VARIANTS))}")
    fields = dict(
        embedding_dim=8,
        upsample_initial_channel=32,
        upsample_rates=[5, 4, 4, 4, 2],
        upsample_kernel_sizes=[11, 8, 8, 8, 4],
        resblock_kernel_sizes=[3, 5],
        resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]],
        duration_predictor_hidden_size=8,
        duration_predictor_kernel_size=3,
        duration_predictor_dropout=0.5,
        num_speakers=len(TINY_SPEAKERS),
        speakers=list(TINY_SPEAKERS),
    )
    if variant == "base":
        fields.update(num_styles=len(TINY_STYLES), styles=list(TINY_STYLES), default_style_id=8)
    else:
        fields.update(num_pitch_units=64, num_style_units=100)
    return SpiritLMVocoderConfig(**{**fields, **kwargs})


def tiny_vocoder(variant: str = "expressive", seed: int = 0, **kwargs) -> SpiritLMVocoder:
    """
    A tiny random-weight vocoder (eval mode) of `tiny_vocoder_config(variant, **kwargs)`, weights seeded by `seed`
    (`randomize_weights_`): non-silent audio, and a duration predictor whose output bias of 1 gives durations of
    mostly 1 to 3 frames (`round(exp(x) - 1)`), as a trained one does.
    """
    model = randomize_weights_(SpiritLMVocoder(tiny_vocoder_config(variant, **kwargs)), seed).eval()
    model.duration_predictor.proj.weight.data.mul_(0.5)
    model.duration_predictor.proj.bias.data.fill_(1.0)
    model.conv_post.weight.data.mul_(0.5)
    return model


__all__ = ["TINY_SPEAKERS", "TINY_STYLES", "tiny_vocoder", "tiny_vocoder_config"]
