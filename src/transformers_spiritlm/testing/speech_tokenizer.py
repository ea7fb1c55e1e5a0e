"""A tiny random-weight [`SpiritLMSpeechTokenizer`], built directly (no official files), for tests and the demo."""

import torch

from ..configuration_spiritlm import MHUBERT_BASE_25HZ, SpiritLMSpeechTokenizerConfig
from ..speech_tokenizer.modeling_speech_tokenizer import SpiritLMSpeechTokenizer


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


def tiny_speech_tokenizer_config(**kwargs) -> SpiritLMSpeechTokenizerConfig:
    """Speech tokenizer config with the 25 Hz hop, 501 units and tiny widths; `kwargs` override fields."""
    defaults = {"hubert_config": dict(TINY_HUBERT_CONFIG), "quantizer_hidden_sizes": [24, 16]}
    return SpiritLMSpeechTokenizerConfig(**{**defaults, **kwargs})


def tiny_speech_tokenizer(seed: int = 0, **kwargs) -> SpiritLMSpeechTokenizer:
    """A randomly initialised tiny speech tokenizer (eval mode); `kwargs` go to `tiny_speech_tokenizer_config`."""
    torch.manual_seed(seed)
    return SpiritLMSpeechTokenizer(tiny_speech_tokenizer_config(**kwargs)).eval()


__all__ = ["TINY_HUBERT_CONFIG", "tiny_speech_tokenizer", "tiny_speech_tokenizer_config"]
