"""Tiny random-weight [`SpiritLMSpeechTokenizer`]s (BASE and EXPRESSIVE), for tests and the demo."""

from pathlib import Path

import torch

from ..configuration_spiritlm import (
    MHUBERT_BASE_25HZ,
    VARIANTS,
    FCPEConfig,
    PitchUnitEncoderConfig,
    SpiritLMSpeechTokenizerConfig,
    SpiritLMStyleEncoderConfig,
)
from ..speech_tokenizer.modeling_speech_tokenizer import SpiritLMSpeechTokenizer
from .weights import randomize_weights_


# The shapes of the tiny official-format HuBERT of the conversion tests, as converted: 25 Hz conv stack (16 channels),
# 11 layers of width 32.
TINY_HUBERT_CONFIG = dict(
    MHUBERT_BASE_25HZ,
    hidden_size=32,
    num_attention_heads=4,
    intermediate_size=64,
    conv_dim=[16] * 8,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)
# The real pitch units (FCPE every 80 samples, VQ-VAE down 16 times to 12.5 Hz, 64 codes) at width 16, one FCPE layer.
TINY_PITCH_CONFIG = {
    "fcpe": {"hidden_size": 16, "num_layers": 1},
    "width": 16,
    "output_emb_width": 16,
    "emb_width": 16,
    "depth": 2,
}
# wav2vec 2.0 at width 32 with two layers, its real conv stack (50 frames/s), 100 styles pooled over 50 frames.
TINY_STYLE_CONFIG = {
    "wav2vec2": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-05,
        "feat_extract_norm": "group",
        "feat_extract_activation": "gelu",
        "conv_dim": [32] * 7,
        "conv_stride": [5, 2, 2, 2, 2, 2, 2],
        "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
        "conv_bias": False,
        "num_conv_pos_embeddings": 128,
        "num_conv_pos_embedding_groups": 16,
        "do_stable_layer_norm": False,
    },
    "projector_size": 16,
    "num_styles": 100,
    "pool_size": 50,
}


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {', '.join(map(repr, VARIANTS))}")


def tiny_expressive_sub_configs() -> dict:
    """`pitch_config` and `style_config` of the tiny EXPRESSIVE tokenizer (`TINY_PITCH_CONFIG`, `TINY_STYLE_CONFIG`)."""
    pitch = {**TINY_PITCH_CONFIG, "fcpe": FCPEConfig(**TINY_PITCH_CONFIG["fcpe"])}
    return {
        "pitch_config": PitchUnitEncoderConfig(**pitch),
        "style_config": SpiritLMStyleEncoderConfig(**TINY_STYLE_CONFIG),
    }


def tiny_speech_tokenizer_config(variant: str = "base", **kwargs) -> SpiritLMSpeechTokenizerConfig:
    """Speech tokenizer config with the 25 Hz hop, 501 units and tiny widths, plus tiny pitch and style encoders for
    `variant="expressive"`; `kwargs` override fields."""
    _check_variant(variant)
    defaults = {"hubert_config": dict(TINY_HUBERT_CONFIG), "quantizer_hidden_sizes": [24, 16]}
    if variant == "expressive":
        defaults.update(tiny_expressive_sub_configs())
    return SpiritLMSpeechTokenizerConfig(**{**defaults, **kwargs})


def tiny_speech_tokenizer(seed: int = 0, variant: str = "base", **kwargs) -> SpiritLMSpeechTokenizer:
    """
    A tiny random speech tokenizer (eval mode); `kwargs` go to `tiny_speech_tokenizer_config`. HuBERT and its
    quantizer are randomly initialised from `seed`. EXPRESSIVE's pitch and style encoders get `randomize_weights_`
    (seeded by `seed`) and a codebook spread like the encoder output on normalised F0, so that speech uses many pitch
    and style units, unlike a default initialisation.
    """
    torch.manual_seed(seed)
    model = SpiritLMSpeechTokenizer(tiny_speech_tokenizer_config(variant, **kwargs)).eval()
    if variant == "expressive":
        randomize_weights_(model.pitch_encoder, seed)
        randomize_weights_(model.style_encoder, seed)
        model.pitch_encoder.codebook.codebook.data.mul_(2.0)
    return model


def write_tiny_hubert_checkpoint(folder: str | Path, seed: int = 0, **kwargs) -> Path:
    """Writes a random transformers `HubertModel` of `TINY_HUBERT_CONFIG` shapes (`kwargs` override them) to `folder`
    with `save_pretrained`, as `spiritlm train-units --hubert` takes one; returns `folder`."""
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(seed)
    HubertModel(HubertConfig(**{**TINY_HUBERT_CONFIG, **kwargs})).save_pretrained(folder)
    return Path(folder)


__all__ = [
    "TINY_HUBERT_CONFIG",
    "TINY_PITCH_CONFIG",
    "TINY_STYLE_CONFIG",
    "tiny_expressive_sub_configs",
    "tiny_speech_tokenizer",
    "tiny_speech_tokenizer_config",
    "write_tiny_hubert_checkpoint",
]
