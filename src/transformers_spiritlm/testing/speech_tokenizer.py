"""Tiny random-weight [`SpiritLMSpeechTokenizer`]s (BASE and EXPRESSIVE), for tests and the demo."""

import tempfile
from pathlib import Path

import torch

from ..configuration_spiritlm import MHUBERT_BASE_25HZ, VARIANTS, SpiritLMSpeechTokenizerConfig
from ..speech_tokenizer.modeling_speech_tokenizer import SpiritLMSpeechTokenizer
from .official_pitch import random_fcpe_checkpoint, tiny_official_vqvae_f0_config, write_official_vqvae_f0
from .official_style import tiny_official_style_config, write_official_style_encoder


# The shapes of `official_hubert.TINY_HUBERT` as converted: 25 Hz conv stack (16 channels), 11 layers of width 32.
TINY_HUBERT_CONFIG = {
    **MHUBERT_BASE_25HZ,
    "hidden_size": 32,
    "num_hidden_layers": 11,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "conv_dim": [16] * 8,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
}


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {', '.join(map(repr, VARIANTS))}")


def tiny_expressive_sub_configs() -> dict:
    """`pitch_config` and `style_config` of the tiny EXPRESSIVE tokenizer: what converting the tiny official-format
    F0 VQ-VAE (`official_pitch.tiny_official_vqvae_f0_config`, width 16), the narrow random FCPE
    (`random_fcpe_checkpoint`, width 16, one layer) and the tiny style encoder (`official_style`) gives."""
    from ..conversion.convert_pitch import convert_fcpe, vqvae_config_to_pitch_kwargs
    from ..conversion.convert_style import convert_style_config
    from ..speech_tokenizer.pitch import PitchUnitEncoderConfig

    _, fcpe = convert_fcpe(random_fcpe_checkpoint())
    pitch = PitchUnitEncoderConfig(fcpe=fcpe, **vqvae_config_to_pitch_kwargs(tiny_official_vqvae_f0_config()))
    return {"pitch_config": pitch, "style_config": convert_style_config(tiny_official_style_config())}


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
    quantizer are randomly initialised from `seed`. EXPRESSIVE's pitch and style encoders get the converted weights
    of the official-format writers (`write_official_vqvae_f0`, `random_fcpe_checkpoint`, `write_official_style_encoder`,
    all with `seed`), whose codebook and classifier spread speech over many units, unlike a default initialisation.
    """
    torch.manual_seed(seed)
    model = SpiritLMSpeechTokenizer(tiny_speech_tokenizer_config(variant, **kwargs)).eval()
    if variant == "expressive":
        from ..conversion.convert_pitch import convert_pitch
        from ..conversion.convert_style import convert_style

        with tempfile.TemporaryDirectory() as directory:
            vqvae_dir = write_official_vqvae_f0(Path(directory) / "vqvae_f0_quantizer", seed=seed)
            pitch_state, _ = convert_pitch(vqvae_dir, random_fcpe_checkpoint(seed=seed))
            style_state, _ = convert_style(write_official_style_encoder(Path(directory) / "style", seed=seed))
        model.pitch_encoder.load_state_dict(pitch_state)
        model.style_encoder.load_state_dict(style_state)
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
    "tiny_expressive_sub_configs",
    "tiny_speech_tokenizer",
    "tiny_speech_tokenizer_config",
    "write_tiny_hubert_checkpoint",
]
