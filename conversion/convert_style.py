"""Convert the official style encoder into a [`SpiritLMStyleEncoder`] state dict + config dict.

Input: `speech_tokenizer/style_encoder_w2v2/{config.json,pytorch_model.bin}` of the official checkpoints, a
`Wav2Vec2ForSequenceClassification` saved by transformers 4.x.

    python conversion/convert_style.py --checkpoints-dir CKPT --output-dir OUT

writes `OUT/config.json` (the style config dict) and `OUT/model.safetensors`. The speech tokenizer conversion
calls [`convert_style`] instead and nests both under its own prefix and config key.
"""

import argparse
import json
import pickle
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import Wav2Vec2Config

from transformers_spiritlm.conversion import ConversionError, read_json
from transformers_spiritlm.speech_tokenizer.style import SpiritLMStyleEncoder


STYLE_SUBDIR = Path("speech_tokenizer") / "style_encoder_w2v2"
# Wav2Vec2Config fields that shape the backbone at inference; the rest (dropouts, SpecAugment, CTC, ...) do not.
BACKBONE_KEYS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "layer_norm_eps",
    "feat_extract_norm",
    "feat_extract_activation",
    "conv_dim",
    "conv_stride",
    "conv_kernel",
    "conv_bias",
    "num_conv_pos_embeddings",
    "num_conv_pos_embedding_groups",
    "do_stable_layer_norm",
)
# Official frames per style unit: `Wav2Vec2StyleEncoder(config, pool_size=50)`, never read from config.json.
OFFICIAL_POOL_SIZE = 50
# Saved by the official class but unused by its forward: a device buffer, the weighted-layer-sum weights (its
# forward takes the last hidden state) and the SpecAugment embedding (training only).
UNUSED_KEYS = ("_float_tensor", "layer_weights", "wav2vec2.masked_spec_embed")
# transformers 4.x checkpoints name the positional conv weight norm as torch.nn.utils.weight_norm did.
LEGACY_WEIGHT_NORM = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}


def convert_style_config(official: Mapping) -> dict:
    """Style config dict of [`SpiritLMStyleEncoder`] from the official `config.json` contents."""
    if official.get("model_type", "wav2vec2") != "wav2vec2":
        raise ConversionError(
            f"style encoder config.json has model_type {official['model_type']!r}, expected 'wav2vec2'"
        )
    if official.get("add_adapter") or official.get("adapter_attn_dim") is not None:
        raise ConversionError("style encoder config.json uses wav2vec2 adapters, which the official forward skips")
    defaults = Wav2Vec2Config()
    backbone = {key: official.get(key, getattr(defaults, key)) for key in BACKBONE_KEYS}
    backbone = {key: list(value) if isinstance(value, tuple) else value for key, value in backbone.items()}
    if "id2label" in official:
        num_styles = len(official["id2label"])
    else:
        num_styles = official.get("num_labels", defaults.num_labels)
    return {
        "wav2vec2": backbone,
        "projector_size": official.get("classifier_proj_size", defaults.classifier_proj_size),
        "num_styles": num_styles,
        "pool_size": OFFICIAL_POOL_SIZE,
    }


def convert_style_state_dict(official: Mapping[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """[`SpiritLMStyleEncoder`] state dict from the official one; checks every key and shape."""
    with torch.device("meta"):
        expected = SpiritLMStyleEncoder(config).state_dict()
    state_dict = {}
    for key, tensor in official.items():
        if key in UNUSED_KEYS:
            continue
        prefix, _, leaf = key.rpartition(".")
        if leaf in LEGACY_WEIGHT_NORM and f"{prefix}.{LEGACY_WEIGHT_NORM[leaf]}" in expected:
            key = f"{prefix}.{LEGACY_WEIGHT_NORM[leaf]}"
        if key not in expected:
            raise ConversionError(
                f"unexpected style encoder weight {key!r}; is this a Wav2Vec2ForSequenceClassification?"
            )
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ConversionError(
                f"style encoder weight {key!r} has shape {tuple(tensor.shape)}, config.json implies "
                f"{tuple(expected[key].shape)}"
            )
        state_dict[key] = tensor.detach().contiguous()
    missing = sorted(set(expected) - set(state_dict))
    if missing:
        raise ConversionError(f"style encoder checkpoint lacks {len(missing)} weights, first {missing[:3]}")
    return state_dict


def _style_dir(path: str | Path) -> Path:
    path = Path(path)
    if (path / STYLE_SUBDIR).is_dir():
        return path / STYLE_SUBDIR
    if not path.is_dir():
        raise FileNotFoundError(f"no style encoder folder at {path}; pass checkpoints/ or its {STYLE_SUBDIR}")
    return path


def load_official_style_encoder(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Official `config.json` and state dict, from `checkpoints/` or its `speech_tokenizer/style_encoder_w2v2`."""
    directory = _style_dir(path)
    config_file, weights_file = directory / "config.json", directory / "pytorch_model.bin"
    for file in (config_file, weights_file):
        if not file.is_file():
            raise FileNotFoundError(f"missing official style encoder file {file}")
    config = read_json(config_file, "style encoder")
    if not isinstance(config, dict):
        raise ConversionError(f"{config_file} holds a JSON {type(config).__name__}, expected an object")
    try:
        state_dict = torch.load(weights_file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as error:
        raise ConversionError(f"cannot read {weights_file} as a torch checkpoint (weights only): {error}") from None
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ConversionError(f"{weights_file} is not a state dict of tensors")
    return config, state_dict


def convert_style(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """State dict and config dict of [`SpiritLMStyleEncoder`] from the official style encoder files."""
    official_config, official_state = load_official_style_encoder(path)
    config = convert_style_config(official_config)
    return convert_style_state_dict(official_state, config), config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints-dir", required=True, help="official checkpoints/ or its style folder")
    parser.add_argument("--output-dir", required=True, help="writes config.json and model.safetensors here")
    args = parser.parse_args(argv)
    try:
        state_dict, config = convert_style(args.checkpoints_dir)
    except (FileNotFoundError, ConversionError) as error:
        sys.exit(f"error: {error}")
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(state_dict, str(output / "model.safetensors"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
