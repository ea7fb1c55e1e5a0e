"""Tiny random-weight SPIRIT LM checkpoints, for tests, the offline demo and the benchmarks.

Everything here is random and small: it exercises the real code paths, never produces meaningful speech or text.
"""

import json
import os
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer, PreTrainedTokenizerBase, TokenizersBackend

from ..configuration_spiritlm import VOCODER_SUBFOLDER, SpiritLMConfig
from ..feature_extraction_spiritlm import SpiritLMFeatureExtractor
from ..modeling_spiritlm import SpiritLMForCausalLM
from ..processing_spiritlm import SpiritLMProcessor
from ..remote_code import add_auto_map
from ..tokenization_spiritlm import build_spiritlm_tokenizer, spiritlm_token_strings
from .speech_tokenizer import tiny_speech_tokenizer
from .vocoder import tiny_vocoder


TINY_TEXT_VOCAB_SIZE = 384
TINY_BYTE_LEVEL_VOCAB_SIZE = 320
# The decoder shape of the tiny models: 2 layers, 64 wide, grouped-query attention.
_TINY_LLAMA = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
)
_BYTE_TOKENS = [f"<0x{i:02X}>" for i in range(256)]
_CORPUS = [
    "Hello, this is spirit language model.",
    "The quick brown fox jumps over the lazy dog.",
    "Speech and text are interleaved at the word level, so the model learns both modalities together.",
    "Good morning, how are you doing today?",
    "A language model reads text and speech units, then writes text or speech.",
    "one two three four five six seven eight nine ten",
]


def _train_tiny_bpe(vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>", *_BYTE_TOKENS], show_progress=False
    )
    bpe = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    bpe.train_from_iterator(_CORPUS * 4, trainer)
    vocab = bpe.get_vocab()
    if len(vocab) != vocab_size:
        raise ValueError(f"the tiny corpus yields {len(vocab)} tokens, fewer than vocab_size={vocab_size}")
    merges = json.loads(bpe.to_str())["model"]["merges"]
    return vocab, [tuple(merge.split(" ")) if isinstance(merge, str) else tuple(merge) for merge in merges]


def tiny_text_tokenizer(vocab_size: int = TINY_TEXT_VOCAB_SIZE) -> LlamaTokenizer:
    """A Llama-style (SentencePiece-like BPE with byte fallback) text tokenizer of exactly `vocab_size` tokens:
    `<unk>`, `<s>`, `</s>`, the 256 byte tokens, then merges learnt from a small built-in corpus."""
    vocab, merges = _train_tiny_bpe(vocab_size)
    return LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=True, add_eos_token=False)


def tiny_byte_level_tokenizer(vocab_size: int = TINY_BYTE_LEVEL_VOCAB_SIZE) -> TokenizersBackend:
    """A byte-level BPE text tokenizer (as Llama 3 or SmolLM have) of exactly `vocab_size` tokens: `<|endoftext|>`
    (BOS and EOS), the 256 byte symbols, then merges learnt from the same built-in corpus. No pad or unknown token."""
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(_CORPUS * 4, trainer)
    if bpe.get_vocab_size() != vocab_size:
        raise ValueError(f"the tiny corpus yields {bpe.get_vocab_size()} tokens, fewer than vocab_size={vocab_size}")
    return TokenizersBackend(
        tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>", clean_up_tokenization_spaces=False
    )


TEXT_TOKENIZERS = {"sentencepiece": tiny_text_tokenizer, "byte-level": tiny_byte_level_tokenizer}


def write_tiny_text_model(
    output_dir: str | os.PathLike, tokenizer: str = "sentencepiece", seed: int = 0, **config_kwargs
) -> Path:
    """
    Writes a tiny random-weight `LlamaForCausalLM` (the decoder shape of [`tiny_lm_config`]) with its text tokenizer
    (`"sentencepiece"`: [`tiny_text_tokenizer`], `"byte-level"`: [`tiny_byte_level_tokenizer`]) to `output_dir`: a
    text model to start a SPIRIT LM from (`spiritlm init --text-model`). Returns its path.
    """
    if tokenizer not in TEXT_TOKENIZERS:
        raise ValueError(f"unknown tokenizer {tokenizer!r}; use one of {sorted(TEXT_TOKENIZERS)}")
    text_tokenizer = TEXT_TOKENIZERS[tokenizer]()
    torch.manual_seed(seed)
    config = LlamaConfig(
        **{
            **_TINY_LLAMA,
            "vocab_size": len(text_tokenizer),
            "bos_token_id": text_tokenizer.bos_token_id,
            "eos_token_id": text_tokenizer.eos_token_id,
            **config_kwargs,
        }
    )
    LlamaForCausalLM(config).save_pretrained(output_dir)
    text_tokenizer.save_pretrained(output_dir)
    return Path(output_dir)


def tiny_spiritlm_tokenizer(config: SpiritLMConfig) -> PreTrainedTokenizerBase:
    """The tiny text vocabulary plus the SPIRIT LM markers and units, built like a converted official tokenizer
    (units as SentencePiece pieces: same ids and decoding rules as the official transformers 4.x tokenizer)."""
    vocab, merges = _train_tiny_bpe(config.text_vocab_size)
    return build_spiritlm_tokenizer(vocab, merges, spiritlm_token_strings(config))


def tiny_lm_config(
    variant: str = "expressive", text_vocab_size: int = TINY_TEXT_VOCAB_SIZE, **kwargs
) -> SpiritLMConfig:
    """A 2-layer, 64-wide SPIRIT LM config whose id layout follows `text_vocab_size`."""
    num_tokens = text_vocab_size + 2 + 501 + 64 + 100
    defaults = dict(
        variant=variant, text_vocab_size=text_vocab_size, vocab_size=num_tokens, pad_token_id=0, **_TINY_LLAMA
    )
    defaults.update(kwargs)
    return SpiritLMConfig(**defaults)


def build_tiny_repo(
    output_dir: str | os.PathLike,
    variant: str = "expressive",
    seed: int = 0,
    speech_tokenizer: bool = True,
    vocoder: bool = True,
) -> Path:
    """
    Writes a complete converted SPIRIT LM repo with random weights to `output_dir` (the layout `spiritlm convert`
    writes) and returns its path: the LM (config, generation config, safetensors), the text + unit tokenizer,
    `preprocessor_config.json` and `processor_config.json`, (unless switched off) the speech tokenizer in
    `speech_tokenizer/` and the vocoder in `vocoder/`, and the `auto_map` module `spiritlm_remote.py`.
    `spiritlm tiny-repo DIR` runs this from the command line.
    """
    output_dir = Path(output_dir)
    torch.manual_seed(seed)
    config = tiny_lm_config(variant)
    tokenizer = tiny_spiritlm_tokenizer(config)
    model = SpiritLMForCausalLM(config).eval()
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(output_dir)
    speech_model = tiny_speech_tokenizer(seed=seed, variant=variant) if speech_tokenizer else None
    SpiritLMProcessor(SpiritLMFeatureExtractor(), tokenizer, speech_tokenizer=speech_model).save_pretrained(output_dir)
    if vocoder:
        tiny_vocoder(variant, seed=seed).save_pretrained(output_dir / VOCODER_SUBFOLDER)
    add_auto_map(output_dir)
    return output_dir


__all__ = [
    "TEXT_TOKENIZERS",
    "TINY_BYTE_LEVEL_VOCAB_SIZE",
    "TINY_TEXT_VOCAB_SIZE",
    "build_tiny_repo",
    "tiny_lm_config",
    "tiny_spiritlm_tokenizer",
    "tiny_byte_level_tokenizer",
    "tiny_text_tokenizer",
    "tiny_vocoder",
    "write_tiny_text_model",
]
