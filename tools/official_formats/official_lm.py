"""Tiny random-weight SPIRIT LM language models in the OFFICIAL file format, for tests and fixture recording.

`write_official_lm(checkpoints_dir, "base" | "expressive")` writes `spiritlm_model/spirit-lm-{variant}-7b/` as the
official `Spiritlm` class reads it with transformers 4.x (`LlamaForCausalLM` + `LlamaTokenizer`): `config.json`,
`generation_config.json`, `pytorch_model.bin` (a `LlamaForCausalLM` state dict; optionally split into
`pytorch_model-0000k-of-0000n.bin` shards with an index), `tokenizer.model`, `tokenizer_config.json` and
`special_tokens_map.json`.

The text tokenizer is a SentencePiece BPE model trained here with Llama 2's settings (byte fallback, dummy prefix,
digits split, no whitespace folding) on a small built-in corpus. The SPIRIT LM markers and units follow the text
pieces, stored one of two ways (`unit_storage`):

- `"sentencepiece"`: user-defined pieces appended to the SentencePiece model;
- `"added_tokens"`: a plain SentencePiece model, the units listed in `tokenizer_config.json`'s `added_tokens_decoder`
  as transformers 4.x `add_tokens` saves them.

Weights come from a seeded numpy generator, so the same call writes the same checkpoint in any environment. This
module imports only json, numpy, torch and sentencepiece, so the official environment can load it by file path:

    spec = importlib.util.spec_from_file_location("official_lm", ".../tools/official_formats/official_lm.py")
"""

import io
import json
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
from sentencepiece import sentencepiece_model_pb2


OFFICIAL_LM_DIRS = {"base": "spirit-lm-base-7b", "expressive": "spirit-lm-expressive-7b"}
UNIT_STORAGES = ("sentencepiece", "added_tokens")
TINY_TEXT_VOCAB_SIZE = 400

_CORPUS = [
    "Hello, this is the spirit language model.",
    "The quick brown fox jumps over the lazy dog.",
    "Speech and text are interleaved at the word level, so the model learns both modalities together.",
    "Good morning, how are you doing today? I am fine, thank you!",
    "In 2024, 31 people read 1,000 pages in 7 days.",
    "A language model reads text and speech units, then writes text or speech.",
    "one two three four five six seven eight nine ten",
    "Café, naïve, über, déjà vu.",
    "Indented  lines  keep  their  double  spaces.",
]
_SPECIAL_PIECES = ("<unk>", "<s>", "</s>")


def official_unit_tokens(variant: str) -> list[str]:
    """Marker and unit tokens of an official tokenizer in id order: `[Text]`, `[Speech]`, `[Hu0]`..`[Hu500]` and,
    for EXPRESSIVE, `[Pi0]`..`[Pi63]`, `[St0]`..`[St99]`."""
    _check_variant(variant)
    tokens = ["[Text]", "[Speech]"] + [f"[Hu{i}]" for i in range(501)]
    if variant == "expressive":
        tokens += [f"[Pi{i}]" for i in range(64)] + [f"[St{i}]" for i in range(100)]
    return tokens


def _check_variant(variant: str) -> None:
    if variant not in OFFICIAL_LM_DIRS:
        raise ValueError(f"unknown variant {variant!r}; use 'base' or 'expressive'")


def train_tiny_sentencepiece(vocab_size: int = TINY_TEXT_VOCAB_SIZE) -> bytes:
    """A serialized SentencePiece BPE model of exactly `vocab_size` pieces, trained with Llama 2's settings:
    `<unk>`, `<s>`, `</s>` at 0, 1, 2, the 256 byte pieces, then the learnt pieces."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_CORPUS * 3),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        character_coverage=1.0,
        byte_fallback=True,
        split_digits=True,
        split_by_unicode_script=True,
        split_by_whitespace=True,
        split_by_number=True,
        allow_whitespace_only_pieces=True,
        max_sentencepiece_length=16,
        normalization_rule_name="identity",
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        unk_surface=" \u2047 ",
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    proto = sentencepiece_model_pb2.ModelProto.FromString(model.getvalue())
    if len(proto.pieces) != vocab_size:
        raise ValueError(
            f"the tiny corpus yields {len(proto.pieces)} SentencePiece pieces, not vocab_size={vocab_size}"
        )
    return model.getvalue()


def _added_token(content: str, special: bool) -> dict:
    return {
        "content": content,
        "lstrip": False,
        "normalized": not special,
        "rstrip": False,
        "single_word": False,
        "special": special,
    }


def write_official_tokenizer(
    directory: str | Path,
    variant: str,
    unit_storage: str = "sentencepiece",
    legacy: bool | None = None,
    sentencepiece_model: bytes | None = None,
) -> int:
    """
    Writes `tokenizer.model`, `tokenizer_config.json` and `special_tokens_map.json` of an official-format tokenizer
    (as transformers 4.x `LlamaTokenizer.save_pretrained` writes them) and returns the text vocabulary size.

    `legacy=None` leaves the key out of `tokenizer_config.json` (transformers 4.x then uses the legacy behaviour).
    `sentencepiece_model` is the serialized text model (default: [`train_tiny_sentencepiece`]).
    """
    if unit_storage not in UNIT_STORAGES:
        raise ValueError(f"unknown unit_storage {unit_storage!r}; use one of {', '.join(map(repr, UNIT_STORAGES))}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    proto = sentencepiece_model_pb2.ModelProto.FromString(sentencepiece_model or train_tiny_sentencepiece())
    text_vocab_size = len(proto.pieces)
    units = official_unit_tokens(variant)
    decoder = {str(i): _added_token(token, special=True) for i, token in enumerate(_SPECIAL_PIECES)}
    if unit_storage == "sentencepiece":
        for token in units:
            piece = proto.pieces.add()
            piece.piece, piece.score = token, 0.0
            piece.type = sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED
    else:
        decoder.update({str(text_vocab_size + i): _added_token(token, special=False) for i, token in enumerate(units)})
    (directory / "tokenizer.model").write_bytes(proto.SerializeToString())
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "add_prefix_space": True,
        "added_tokens_decoder": decoder,
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "model_max_length": 1000000000000000019884624838656,
        "pad_token": None,
        "sp_model_kwargs": {},
        "spaces_between_special_tokens": False,
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }
    if legacy is not None:
        config["legacy"] = legacy
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    special = {
        name: {key: value for key, value in _added_token(token, special=True).items() if key != "special"}
        for name, token in (("bos_token", "<s>"), ("eos_token", "</s>"), ("unk_token", "<unk>"))
    }
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return text_vocab_size


def tiny_official_lm_config(variant: str, text_vocab_size: int = TINY_TEXT_VOCAB_SIZE, **overrides) -> dict:
    """
    Official-format `config.json` content (a transformers 4.x `LlamaConfig`) of a 2-layer, 32-wide model. The
    vocabulary is padded past the unit tokens as the official ones are (BASE 32503 -> 32512, EXPRESSIVE 32667 ->
    32768).
    """
    num_tokens = text_vocab_size + len(official_unit_tokens(variant))
    multiple = 64 if variant == "base" else 256
    config = {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 32,
        "initializer_range": 0.02,
        "intermediate_size": 64,
        "max_position_embeddings": 4096,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 4,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.46.3",
        "use_cache": True,
        "vocab_size": -(-num_tokens // multiple) * multiple,
    }
    config.update(overrides)
    return config


def official_lm_state_dict(config: dict, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Random `LlamaForCausalLM` weights for `config` (the official `pytorch_model.bin` content)."""
    rng = np.random.default_rng(seed)
    hidden, inner, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    head_dim = hidden // config["num_attention_heads"]
    kv_dim = head_dim * config["num_key_value_heads"]

    def tensor(*shape, scale, shift=0.0):
        return torch.from_numpy((rng.standard_normal(shape) * scale + shift).astype(np.float32)).to(dtype)

    state = {"model.embed_tokens.weight": tensor(vocab, hidden, scale=1.0)}
    for layer in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{layer}."
        for name, rows in (("q_proj", hidden), ("k_proj", kv_dim), ("v_proj", kv_dim), ("o_proj", hidden)):
            state[f"{prefix}self_attn.{name}.weight"] = tensor(rows, hidden, scale=hidden**-0.5)
        state[f"{prefix}mlp.gate_proj.weight"] = tensor(inner, hidden, scale=hidden**-0.5)
        state[f"{prefix}mlp.up_proj.weight"] = tensor(inner, hidden, scale=hidden**-0.5)
        state[f"{prefix}mlp.down_proj.weight"] = tensor(hidden, inner, scale=inner**-0.5)
        state[f"{prefix}input_layernorm.weight"] = tensor(hidden, scale=0.1, shift=1.0)
        state[f"{prefix}post_attention_layernorm.weight"] = tensor(hidden, scale=0.1, shift=1.0)
    state["model.norm.weight"] = tensor(hidden, scale=0.1, shift=1.0)
    state["lm_head.weight"] = tensor(vocab, hidden, scale=hidden**-0.5)
    return state


def _save_state_dict(directory: Path, state: dict[str, torch.Tensor], shards: int) -> None:
    if shards == 1:
        torch.save(state, directory / "pytorch_model.bin")
        return
    names = list(state)
    weight_map, total_size = {}, 0
    for index, chunk in enumerate(np.array_split(np.arange(len(names)), shards), start=1):
        file_name = f"pytorch_model-{index:05d}-of-{shards:05d}.bin"
        part = {names[i]: state[names[i]] for i in chunk}
        torch.save(part, directory / file_name)
        weight_map.update(dict.fromkeys(part, file_name))
        total_size += sum(tensor.numel() * tensor.element_size() for tensor in part.values())
    index_json = {"metadata": {"total_size": total_size}, "weight_map": weight_map}
    (directory / "pytorch_model.bin.index.json").write_text(json.dumps(index_json, indent=2) + "\n")


def write_official_lm(
    checkpoints_dir: str | Path,
    variant: str,
    unit_storage: str = "sentencepiece",
    legacy: bool | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    shards: int = 1,
    sentencepiece_model: bytes | None = None,
    **config_overrides,
) -> Path:
    """
    Writes `checkpoints_dir/spiritlm_model/spirit-lm-{variant}-7b/` (the official layout, see the module docstring)
    and returns its path. `shards > 1` splits the weights into `pytorch_model-0000k-of-0000n.bin` files with a
    `pytorch_model.bin.index.json`, the other layout official downloads come in.
    """
    _check_variant(variant)
    directory = Path(checkpoints_dir) / "spiritlm_model" / OFFICIAL_LM_DIRS[variant]
    text_vocab_size = write_official_tokenizer(directory, variant, unit_storage, legacy, sentencepiece_model)
    config = tiny_official_lm_config(variant, text_vocab_size, torch_dtype=str(dtype).removeprefix("torch."))
    config.update(config_overrides)
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    generation = {"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2, "transformers_version": "4.46.3"}
    (directory / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    _save_state_dict(directory, official_lm_state_dict(config, seed=seed, dtype=dtype), shards)
    return directory


__all__ = [
    "OFFICIAL_LM_DIRS",
    "TINY_TEXT_VOCAB_SIZE",
    "UNIT_STORAGES",
    "official_lm_state_dict",
    "official_unit_tokens",
    "tiny_official_lm_config",
    "train_tiny_sentencepiece",
    "write_official_lm",
    "write_official_tokenizer",
]
