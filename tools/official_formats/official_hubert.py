"""Random-weight checkpoints in the official SPIRIT LM HuBERT file formats, for tests and benchmarks.

Imports only torch, so the official reference environment can load this file directly (by path) to record expected
outputs on exactly the weights our tests convert. The files are what the official loaders read:

`speech_tokenizer/hubert_25hz/mhubert_base_25hz.pt`, a "converted" fairseq HuBERT: a dict with
    - `model_cfg`: fairseq `HubertConfig` fields (`conv_feature_layers` is a python expression string such as
      `"[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 3"`, `encoder_layers`, `encoder_embed_dim`, ...),
    - `task_cfg`: `HubertPretrainingConfig` fields (`sample_rate`, `normalize`, ...),
    - `model_weight`: the fairseq state dict (`feature_extractor.conv_layers.{i}.0.weight`, the first layer's
      GroupNorm at `.2`, `layer_norm`, `post_extract_proj`, `encoder.pos_conv.0.weight_g/_v`,
      `encoder.layers.{i}.self_attn.{q,k,v,out}_proj`, `fc1`, `fc2`, `*_layer_norm`, `final_proj`, ...),
    - `dictionaries_symbols`: the label dictionaries (unused at inference).
`speech_tokenizer/hubert_25hz/L11_quantizer_500.pt`, the linear quantizer: `model_cfg` (`vocab_size`, `dim`,
    `upstream_dim`) and `model_weight`, the state dict of `Sequential(Linear, LeakyReLU, Linear, LeakyReLU, Linear)`
    (keys `0.*`, `2.*`, `4.*`) mapping layer-11 features to `vocab_size + 1` logits, the last one the CTC blank.
"""

import hashlib
import itertools
import math
from pathlib import Path

import torch


HUBERT_RELATIVE_PATH = Path("speech_tokenizer", "hubert_25hz", "mhubert_base_25hz.pt")
QUANTIZER_RELATIVE_PATH = Path("speech_tokenizer", "hubert_25hz", "L11_quantizer_500.pt")

# 25 Hz: strides 5 * 2**7 = 640 samples per frame at 16 kHz.
TINY_CONV_FEATURE_LAYERS = "[(16,10,5)] + [(16,3,2)] * 4 + [(16,2,2)] * 3"
FULL_CONV_FEATURE_LAYERS = "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 3"

TINY_HUBERT = {
    "conv_feature_layers": TINY_CONV_FEATURE_LAYERS,
    "encoder_layers": 12,
    "encoder_embed_dim": 32,
    "encoder_ffn_embed_dim": 64,
    "encoder_attention_heads": 4,
    "conv_pos": 16,
    "conv_pos_groups": 4,
}
FULL_HUBERT = {
    "conv_feature_layers": FULL_CONV_FEATURE_LAYERS,
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "conv_pos": 128,
    "conv_pos_groups": 16,
}


def _conv_layer_specs(conv_feature_layers: str) -> list[tuple[int, int, int]]:
    # The writer only needs its own fixed strings, "[(d,k,s)] * n + ..."; the converter parses arbitrary ones safely.
    specs = []
    for term in conv_feature_layers.replace(" ", "").split("+"):
        body, _, repeat = term.partition("*")
        dim, kernel, stride = (int(value) for value in body.strip("[()]").split(","))
        specs += [(dim, kernel, stride)] * int(repeat or 1)
    return specs


class _Random:
    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def normal(self, *shape: int, std: float = 1.0, mean: float = 0.0) -> torch.Tensor:
        return torch.randn(*shape, generator=self.generator) * std + mean

    def linear(self, state: dict, prefix: str, fan_in: int, fan_out: int, gain: float = 1.0) -> None:
        state[f"{prefix}.weight"] = self.normal(fan_out, fan_in, std=gain / math.sqrt(fan_in))
        state[f"{prefix}.bias"] = self.normal(fan_out, std=0.02)

    def norm(self, state: dict, prefix: str, dim: int) -> None:
        state[f"{prefix}.weight"] = self.normal(dim, std=0.1, mean=1.0)
        state[f"{prefix}.bias"] = self.normal(dim, std=0.1)


def official_hubert_checkpoint(seed: int = 0, label_rate: float = 25.0, **sizes) -> dict:
    """
    Builds (does not write) a random `mhubert_base_25hz.pt` dict. `sizes` overrides `TINY_HUBERT` keys
    (`conv_feature_layers`, `encoder_layers`, `encoder_embed_dim`, `encoder_ffn_embed_dim`,
    `encoder_attention_heads`, `conv_pos`, `conv_pos_groups`); pass `**FULL_HUBERT` for the real model's shapes.
    """
    cfg = {**TINY_HUBERT, **sizes}
    rand = _Random(seed)
    specs = _conv_layer_specs(cfg["conv_feature_layers"])
    embed, dim = specs[-1][0], cfg["encoder_embed_dim"]
    state = {"mask_emb": rand.normal(dim)}

    in_dim = 1
    for i, (out_dim, kernel, _) in enumerate(specs):
        state[f"feature_extractor.conv_layers.{i}.0.weight"] = rand.normal(
            out_dim, in_dim, kernel, std=math.sqrt(2 / (in_dim * kernel))
        )
        if i == 0:
            rand.norm(state, "feature_extractor.conv_layers.0.2", out_dim)
        in_dim = out_dim
    rand.norm(state, "layer_norm", embed)
    if embed != dim:
        rand.linear(state, "post_extract_proj", embed, dim)

    kernel, groups = cfg["conv_pos"], cfg["conv_pos_groups"]
    state["encoder.pos_conv.0.bias"] = rand.normal(dim, std=0.02)
    state["encoder.pos_conv.0.weight_g"] = rand.normal(1, 1, kernel, std=0.1, mean=1.0)
    state["encoder.pos_conv.0.weight_v"] = rand.normal(dim, dim // groups, kernel)
    rand.norm(state, "encoder.layer_norm", dim)
    for i in range(cfg["encoder_layers"]):
        prefix = f"encoder.layers.{i}"
        # A deep random post-LN transformer averages all frames into one vector (near-uniform attention), which
        # would give one unit per clip; sharper attention and a weaker attention residual keep frames distinct.
        for name, gain in (("k_proj", 3.0), ("v_proj", 1.0), ("q_proj", 3.0), ("out_proj", 0.3)):
            rand.linear(state, f"{prefix}.self_attn.{name}", dim, dim, gain)
        rand.norm(state, f"{prefix}.self_attn_layer_norm", dim)
        rand.linear(state, f"{prefix}.fc1", dim, cfg["encoder_ffn_embed_dim"])
        rand.linear(state, f"{prefix}.fc2", cfg["encoder_ffn_embed_dim"], dim)
        rand.norm(state, f"{prefix}.final_layer_norm", dim)
    # Pre-training heads, present in released checkpoints and dropped by every inference loader.
    final_dim = 16
    rand.linear(state, "final_proj", dim, final_dim)
    state["label_embs_concat"] = rand.normal(8, final_dim)

    model_cfg = {
        "_name": "hubert",
        "label_rate": label_rate,
        "extractor_mode": "default",
        "activation_fn": "gelu",
        "layer_type": "transformer",
        "layer_norm_first": False,
        "conv_bias": False,
        "final_dim": final_dim,
        "dropout": 0.1,
        "attention_dropout": 0.1,
        "activation_dropout": 0.0,
        "encoder_layerdrop": 0.05,
        "mask_prob": 0.8,
        "required_seq_len_multiple": 2,
        "latent_temp": (2.0, 0.5, 0.999995),
        **cfg,
    }
    task_cfg = {"_name": "hubert_pretraining", "label_rate": label_rate, "sample_rate": 16000, "normalize": False}
    return {
        "model_cfg": model_cfg,
        "task_cfg": task_cfg,
        "model_weight": state,
        "dictionaries_symbols": [[str(i) for i in range(8)]],
    }


def official_quantizer_checkpoint(
    dim: int = 32, vocab_size: int = 500, upstream_dim: int | None = None, blank_bias: float = 1.3, seed: int = 1
) -> dict:
    """
    Builds a random `L11_quantizer_500.pt` dict for `dim`-wide layer-11 features. The official model derives its
    hidden sizes from `upstream_dim` (default `dim + vocab_size + 1`, i.e. hidden sizes `dim - dim // 4` and
    `dim - dim // 2`); `blank_bias` is added to the blank logit so that blanks, and the official blank filling,
    actually occur.
    """
    upstream_dim = dim + vocab_size + 1 if upstream_dim is None else upstream_dim
    mid_dim = upstream_dim - (vocab_size + 1)
    sizes = [dim, dim - mid_dim // 4, dim - mid_dim // 2, vocab_size + 1]
    rand = _Random(seed)
    state = {}
    for index, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        rand.linear(state, str(2 * index), fan_in, fan_out)
    state["4.bias"][-1] += blank_bias
    return {"model_cfg": {"vocab_size": vocab_size, "dim": dim, "upstream_dim": upstream_dim}, "model_weight": state}


def write_official_hubert_checkpoints(
    checkpoints_dir: str | Path, seed: int = 0, blank_bias: float = 1.3, **sizes
) -> tuple[Path, Path]:
    """
    Writes random `mhubert_base_25hz.pt` and `L11_quantizer_500.pt` under `checkpoints_dir/speech_tokenizer/
    hubert_25hz/` (the official layout) and returns their paths. Same arguments, same bytes of weights.
    """
    checkpoints_dir = Path(checkpoints_dir)
    hubert = official_hubert_checkpoint(seed=seed, **sizes)
    quantizer = official_quantizer_checkpoint(
        dim=hubert["model_cfg"]["encoder_embed_dim"], blank_bias=blank_bias, seed=seed + 1
    )
    paths = checkpoints_dir / HUBERT_RELATIVE_PATH, checkpoints_dir / QUANTIZER_RELATIVE_PATH
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    torch.save(hubert, paths[0])
    torch.save(quantizer, paths[1])
    return paths


def weights_digest(state_dict: dict) -> str:
    """sha256 of a state dict's names and float32 values, to check that two environments built the same weights."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        digest.update(name.encode())
        digest.update(state_dict[name].to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def weights_fingerprint(state_dict: dict) -> dict[str, list[float]]:
    """
    Per tensor, float64 sums of |x|, x² and |x| weighted by position (1 to 2 along the flattened tensor): what
    [`weights_digest`] checks, up to float32 rounding. `torch.randn`'s vectorised Box-Muller rounds differently per
    instruction set (AVX2 and AVX-512 agree, `ATEN_CPU_CAPABILITY=default` does not), so the bytes of a writer's
    weights depend on the CPU while, to a relative 1e-6, these sums do not; a different seed, scale, shape or order
    changes them far more.
    """
    fingerprint = {}
    for name in sorted(state_dict):
        values = state_dict[name].to(torch.float64).flatten().abs()
        ramp = torch.linspace(1, 2, len(values), dtype=torch.float64)
        fingerprint[name] = [values.sum().item(), values.square().sum().item(), (values * ramp).sum().item()]
    return fingerprint


def assert_recorded_weights(state_dict: dict, digest: str, fingerprint: dict[str, list[float]]) -> None:
    """Asserts that `state_dict` holds the weights a recording noted: byte for byte ([`weights_digest`]) where
    `torch.randn` rounds as on the recording machines (AVX2, AVX-512), to float32 rounding ([`weights_fingerprint`])
    everywhere."""
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        assert weights_digest(state_dict) == digest
    actual = weights_fingerprint(state_dict)
    assert list(actual) == list(fingerprint)
    torch.testing.assert_close(
        torch.tensor(list(actual.values()), dtype=torch.float64),
        torch.tensor(list(fingerprint.values()), dtype=torch.float64),
        rtol=1e-6,
        atol=0,
    )


__all__ = [
    "FULL_HUBERT",
    "HUBERT_RELATIVE_PATH",
    "QUANTIZER_RELATIVE_PATH",
    "TINY_HUBERT",
    "assert_recorded_weights",
    "official_hubert_checkpoint",
    "official_quantizer_checkpoint",
    "weights_digest",
    "weights_fingerprint",
    "write_official_hubert_checkpoints",
]
