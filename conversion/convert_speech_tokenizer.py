"""Convert the official speech tokenizer into a [`SpiritLMSpeechTokenizer`]: the HuBERT tokenizer (mHuBERT-base 25 Hz
+ linear quantizer) for BASE, plus the pitch (F0 VQ-VAE + FCPE) and style encoders for EXPRESSIVE.

Inputs, in the official `checkpoints/` folder (pickles, read with `torch.load(weights_only=True)`):
`speech_tokenizer/hubert_25hz/{mhubert_base_25hz.pt,L11_quantizer_500.pt}`, and for EXPRESSIVE
`speech_tokenizer/vqvae_f0_quantizer/{config.yaml,model.pt}`, `speech_tokenizer/style_encoder_w2v2/` and the FCPE
weights of the torchfcpe wheel (`--fcpe-checkpoint`, see `convert_pitch.load_fcpe_checkpoint`).

    python conversion/convert_speech_tokenizer.py --checkpoints-dir CKPT --output-dir OUT \
        [--variant base|expressive] [--fcpe-checkpoint PATH] [--dtype float32]

writes `OUT/speech_tokenizer/{config.json,model.safetensors}`: HuBERT under `hubert.*` / `quantizer.*`, the pitch
encoder under `pitch_encoder.*` (config key `pitch_config`), the style encoder under `style_encoder.*`
(`style_config`).
"""

import argparse
import ast
import pickle
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from transformers_spiritlm.configuration_spiritlm import (
    MHUBERT_BASE_25HZ,
    SPEECH_TOKENIZER_SUBFOLDER,
    VARIANTS,
    SpiritLMSpeechTokenizerConfig,
)
from transformers_spiritlm.conversion import ConversionError
from transformers_spiritlm.conversion.convert_pitch import convert_pitch
from transformers_spiritlm.conversion.convert_style import convert_style
from transformers_spiritlm.speech_tokenizer.modeling_speech_tokenizer import SpiritLMSpeechTokenizer


HUBERT_FILE = Path("speech_tokenizer") / "hubert_25hz" / "mhubert_base_25hz.pt"
VQVAE_DIR = Path("speech_tokenizer") / "vqvae_f0_quantizer"
QUANTIZER_FILE = Path("speech_tokenizer") / "hubert_25hz" / "L11_quantizer_500.pt"
# The official tokenizer quantizes the output of this (1-based) encoder layer; `spiritlm_hubert()` hard-codes it.
OFFICIAL_HUBERT_LAYER = 11
# Defaults of the official (fairseq) HubertConfig / HubertPretrainingConfig for keys a checkpoint may omit.
FAIRSEQ_DEFAULTS = {
    "conv_feature_layers": "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2",
    "conv_bias": False,
    "extractor_mode": "default",
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "activation_fn": "gelu",
    "layer_type": "transformer",
    "layer_norm_first": False,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "conv_pos_batch_norm": False,
    "pos_conv_depth": 1,
}
# Pre-training parameters, unused by the official inference (its loader drops or ignores them).
UNUSED_KEYS = ("mask_emb", "label_embs_concat", "final_proj.weight", "final_proj.bias")
LAYER_RENAMES = {
    "self_attn.q_proj": "attention.q_proj",
    "self_attn.k_proj": "attention.k_proj",
    "self_attn.v_proj": "attention.v_proj",
    "self_attn.out_proj": "attention.out_proj",
    "self_attn_layer_norm": "layer_norm",
    "fc1": "feed_forward.intermediate_dense",
    "fc2": "feed_forward.output_dense",
    "final_layer_norm": "final_layer_norm",
}
TOP_RENAMES = {
    "layer_norm": "feature_projection.layer_norm",
    "post_extract_proj": "feature_projection.projection",
    "encoder.layer_norm": "encoder.layer_norm",
    "encoder.pos_conv.0": "encoder.pos_conv_embed.conv",
}
WEIGHT_NORM_RENAMES = {
    "weight_g": "parametrizations.weight.original0",
    "weight_v": "parametrizations.weight.original1",
}


def parse_conv_feature_layers(expression: str) -> list[tuple[int, int, int]]:
    """`"[(512,10,5)] + [(512,3,2)] * 4"` → `[(dim, kernel, stride), ...]`, without `eval`: only list / tuple
    literals of ints, `+` and `*` are accepted."""

    def evaluate(node):
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            values = [evaluate(element) for element in node.elts]
            return values if isinstance(node, ast.List) else tuple(values)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = evaluate(node.left), evaluate(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise ConversionError(f"unsupported conv_feature_layers expression {expression!r}")

    try:
        layers = evaluate(ast.parse(expression, mode="eval").body)
    except (SyntaxError, TypeError) as error:
        raise ConversionError(f"cannot parse conv_feature_layers {expression!r}: {error}") from None
    if (
        not isinstance(layers, list)
        or not layers
        or not all(
            isinstance(layer, tuple) and len(layer) == 3 and all(isinstance(v, int) for v in layer) for layer in layers
        )
    ):
        raise ConversionError(f"conv_feature_layers {expression!r} is not a list of (dim, kernel, stride)")
    return layers


def _load(path: Path, what: str, keys: tuple[str, ...]) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"missing official {what} {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConversionError(f"cannot read {path} as a torch checkpoint (weights only): {first_line}") from None
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in keys):
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ConversionError(f"{path} is not an official {what}: expected keys {list(keys)}, found {found}")
    return checkpoint


def load_official_hubert(checkpoints_dir: str | Path) -> tuple[dict, dict]:
    """The official `mhubert_base_25hz.pt` and `L11_quantizer_500.pt` dicts, from the `checkpoints/` folder."""
    checkpoints_dir = Path(checkpoints_dir)
    if not checkpoints_dir.is_dir():
        raise FileNotFoundError(f"official checkpoints folder {checkpoints_dir} does not exist")
    hubert = _load(checkpoints_dir / HUBERT_FILE, "HuBERT checkpoint", ("model_cfg", "task_cfg", "model_weight"))
    quantizer = _load(checkpoints_dir / QUANTIZER_FILE, "quantizer checkpoint", ("model_cfg", "model_weight"))
    return hubert, quantizer


def convert_hubert_config(model_cfg: Mapping, task_cfg: Mapping, layer: int = OFFICIAL_HUBERT_LAYER) -> dict:
    """`HubertConfig` kwargs of the official model truncated to its first `layer` encoder layers."""
    cfg = {**FAIRSEQ_DEFAULTS, **model_cfg}
    unsupported = {
        "extractor_mode": (cfg["extractor_mode"], "default"),
        "layer_type": (cfg["layer_type"], "transformer"),
        "layer_norm_first": (cfg["layer_norm_first"], False),
        "activation_fn": (cfg["activation_fn"], "gelu"),
        "conv_pos_batch_norm": (cfg["conv_pos_batch_norm"], False),
        "pos_conv_depth": (cfg["pos_conv_depth"], 1),
        "task normalize": (task_cfg.get("normalize", False), False),
        "task sample_rate": (task_cfg.get("sample_rate", 16000), 16000),
    }
    for name, (found, expected) in unsupported.items():
        if found != expected:
            raise ConversionError(
                f"unsupported official HuBERT setting {name}={found!r}; only {expected!r} is handled"
            )
    if not 1 <= layer <= cfg["encoder_layers"]:
        raise ConversionError(f"the official model has {cfg['encoder_layers']} layers; cannot take layer {layer}")
    conv_layers = parse_conv_feature_layers(cfg["conv_feature_layers"])
    return {
        **MHUBERT_BASE_25HZ,
        "hidden_size": cfg["encoder_embed_dim"],
        "num_hidden_layers": layer,
        "num_attention_heads": cfg["encoder_attention_heads"],
        "intermediate_size": cfg["encoder_ffn_embed_dim"],
        "conv_dim": [dim for dim, _, _ in conv_layers],
        "conv_kernel": [kernel for _, kernel, _ in conv_layers],
        "conv_stride": [stride for _, _, stride in conv_layers],
        "conv_bias": bool(cfg["conv_bias"]),
        "num_conv_pos_embeddings": cfg["conv_pos"],
        "num_conv_pos_embedding_groups": cfg["conv_pos_groups"],
        "layer_norm_eps": 1e-5,
    }


def _hubert_key(key: str, num_layers: int) -> str | None:
    """HF name (without the `hubert.` prefix) of an official weight, None for weights the tokenizer drops (unused
    pre-training heads, layers above the quantized one)."""
    if key in UNUSED_KEYS:
        return None
    parts = key.split(".")
    name = None
    if key.startswith("feature_extractor.conv_layers.") and len(parts) == 5:
        module = {"0": "conv", "2": "layer_norm"}.get(parts[3])
        name = module and f"feature_extractor.conv_layers.{parts[2]}.{module}.{parts[4]}"
    elif key.startswith("encoder.layers.") and parts[2].isdigit():
        if int(parts[2]) >= num_layers:
            return None
        module = LAYER_RENAMES.get(".".join(parts[3:-1]))
        name = module and f"encoder.layers.{parts[2]}.{module}.{parts[-1]}"
    elif ".".join(parts[:-1]) in TOP_RENAMES:
        name = f"{TOP_RENAMES['.'.join(parts[:-1])]}.{WEIGHT_NORM_RENAMES.get(parts[-1], parts[-1])}"
    if name is None:
        raise ConversionError(f"unexpected official HuBERT weight {key!r}; is this a converted fairseq HuBERT?")
    return name


def convert_hubert(
    checkpoints_dir: str | Path, layer: int = OFFICIAL_HUBERT_LAYER
) -> tuple[dict[str, torch.Tensor], dict]:
    """
    State dict (`hubert.*`, `quantizer.*`) and [`SpiritLMSpeechTokenizerConfig`] kwargs of the official HuBERT
    tokenizer in `checkpoints_dir`. Every official weight is either mapped or known to be unused; every key and
    shape of the result is checked against the model.
    """
    hubert, quantizer = load_official_hubert(checkpoints_dir)
    hubert_config = convert_hubert_config(hubert["model_cfg"], hubert["task_cfg"], layer)

    weights = quantizer["model_weight"]
    layer_ids = sorted({key.split(".")[0] for key in weights}, key=lambda name: int(name) if name.isdigit() else -1)
    expected_keys = {f"{name}.{leaf}" for name in layer_ids for leaf in ("weight", "bias")}
    if not layer_ids or not all(name.isdigit() for name in layer_ids) or set(weights) != expected_keys:
        raise ConversionError(
            f"{QUANTIZER_FILE} weights are not the official Linear/LeakyReLU stack: keys {sorted(weights)[:6]}"
        )
    widths = [weights[f"{name}.weight"].shape[0] for name in layer_ids]
    cfg = quantizer["model_cfg"]
    if widths[-1] != cfg.get("vocab_size", -1) + 1 or weights[f"{layer_ids[0]}.weight"].shape[1] != cfg.get("dim"):
        raise ConversionError(
            f"{QUANTIZER_FILE}: model_cfg {dict(cfg)} does not match its weights (output width {widths[-1]})"
        )
    config = {
        "hubert_config": hubert_config,
        "num_hubert_units": widths[-1],
        "quantizer_hidden_sizes": widths[:-1],
    }

    state_dict = {}
    for key, tensor in hubert["model_weight"].items():
        name = _hubert_key(key, layer)
        if name is not None:
            state_dict[f"hubert.{name}"] = tensor
    if "hubert.feature_projection.projection.weight" not in state_dict:
        # fairseq has no projection when the conv and encoder widths agree; HF always has one, so make it identity.
        width = hubert_config["hidden_size"]
        state_dict["hubert.feature_projection.projection.weight"] = torch.eye(width)
        state_dict["hubert.feature_projection.projection.bias"] = torch.zeros(width)
    for index, name in enumerate(layer_ids):
        for leaf in ("weight", "bias"):
            state_dict[f"quantizer.layers.{index}.{leaf}"] = weights[f"{name}.{leaf}"]

    with torch.device("meta"):
        expected = SpiritLMSpeechTokenizer(SpiritLMSpeechTokenizerConfig(**config)).state_dict()
    missing, unexpected = sorted(set(expected) - set(state_dict)), sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise ConversionError(
            f"official weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    for key, tensor in state_dict.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ConversionError(
                f"official weight for {key!r} has shape {tuple(tensor.shape)}, the config implies "
                f"{tuple(expected[key].shape)}"
            )
    return {key: tensor.detach().to(torch.float32).contiguous() for key, tensor in state_dict.items()}, config


def convert_speech_tokenizer(
    checkpoints_dir: str | Path,
    output_dir: str | Path | None = None,
    dtype: torch.dtype = torch.float32,
    variant: str = "base",
    fcpe_checkpoint: str | Path | dict | None = None,
) -> SpiritLMSpeechTokenizer:
    """
    Builds the [`SpiritLMSpeechTokenizer`] of `variant` from the official checkpoints in `checkpoints_dir` and, when
    `output_dir` is given, saves it to `output_dir/speech_tokenizer/` (config.json + model.safetensors).

    EXPRESSIVE adds the pitch encoder (`vqvae_f0_quantizer/` + the FCPE weights `fcpe_checkpoint`: a `.pt`, a
    torchfcpe wheel, a folder of one, a loaded checkpoint dict, or `None` for an installed torchfcpe's) and the
    style encoder (`style_encoder_w2v2/`). `dtype` applies to HuBERT and the style encoder; the pitch encoder stays
    float32.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {', '.join(map(repr, VARIANTS))}")
    state_dict, config = convert_hubert(checkpoints_dir)
    if variant == "expressive":
        for prefix, (weights, sub_config) in (
            ("pitch", convert_pitch(Path(checkpoints_dir) / VQVAE_DIR, fcpe_checkpoint)),
            ("style", convert_style(checkpoints_dir)),
        ):
            config[f"{prefix}_config"] = sub_config
            state_dict.update({f"{prefix}_encoder.{key}": value for key, value in weights.items()})
    model = SpiritLMSpeechTokenizer(SpiritLMSpeechTokenizerConfig(**config))
    model.load_state_dict(state_dict, strict=True)
    model = model.to(dtype).eval()
    if model.pitch_encoder is not None:
        model.pitch_encoder.float()
    if output_dir is not None:
        model.save_pretrained(Path(output_dir) / SPEECH_TOKENIZER_SUBFOLDER)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints-dir", required=True, help="the official checkpoints/ folder")
    parser.add_argument("--output-dir", required=True, help="writes speech_tokenizer/ into this folder")
    parser.add_argument("--variant", default="base", choices=VARIANTS, help="expressive adds pitch and style")
    parser.add_argument("--fcpe-checkpoint", help="FCPE weights (.pt, torchfcpe wheel or a folder of one), expressive")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args(argv)
    try:
        convert_speech_tokenizer(
            args.checkpoints_dir, args.output_dir, getattr(torch, args.dtype), args.variant, args.fcpe_checkpoint
        )
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
