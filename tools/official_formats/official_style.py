"""Tiny random-weight style encoder checkpoints in the official SPIRIT LM file format.

The official style encoder is a `Wav2Vec2ForSequenceClassification` saved with `save_pretrained`:
`style_encoder_w2v2/config.json` + `style_encoder_w2v2/pytorch_model.bin`. This module writes that layout with
torch only (no transformers import), so the official environment (transformers 4.x) can load it by file path:

    spec = importlib.util.spec_from_file_location("official_style", ".../tools/official_formats/official_style.py")
"""

import json
import math
from pathlib import Path

import torch


def tiny_official_style_config(num_styles: int = 100) -> dict:
    """`config.json` of a tiny `Wav2Vec2ForSequenceClassification` with wav2vec2-base's conv stack (50 frames/s)."""
    return {
        "architectures": ["Wav2Vec2ForSequenceClassification"],
        "model_type": "wav2vec2",
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
        "feat_extract_norm": "group",
        "feat_extract_activation": "gelu",
        "conv_dim": [32] * 7,
        "conv_stride": [5, 2, 2, 2, 2, 2, 2],
        "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
        "conv_bias": False,
        "num_conv_pos_embeddings": 128,
        "num_conv_pos_embedding_groups": 16,
        "do_stable_layer_norm": False,
        "mask_time_prob": 0.05,
        "use_weighted_layer_sum": False,
        "classifier_proj_size": 16,
        "id2label": {str(i): f"LABEL_{i}" for i in range(num_styles)},
        "label2id": {f"LABEL_{i}": i for i in range(num_styles)},
    }


def random_official_style_state_dict(config: dict, seed: int = 0, legacy_weight_norm: bool = True) -> dict:
    """Random weights under the official `Wav2Vec2ForSequenceClassification` keys for `config`.

    Weights are scaled by 1/sqrt(fan-in) and norms are perturbed around identity, so that different seconds of
    speech land in different style classes. `legacy_weight_norm` names the positional convolution's weight norm
    `weight_g`/`weight_v` (checkpoints saved before torch parametrizations) instead of
    `parametrizations.weight.original0/1`.
    """
    generator = torch.Generator().manual_seed(seed)

    def weight(*shape: int, fan_in: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) / math.sqrt(fan_in)

    def norm(prefix: str, size: int) -> dict:
        return {
            f"{prefix}.weight": 1.0 + 0.02 * torch.randn(size, generator=generator),
            f"{prefix}.bias": 0.02 * torch.randn(size, generator=generator),
        }

    def linear(prefix: str, out_features: int, in_features: int) -> dict:
        return {
            f"{prefix}.weight": weight(out_features, in_features, fan_in=in_features),
            f"{prefix}.bias": 0.02 * torch.randn(out_features, generator=generator),
        }

    hidden = config["hidden_size"]
    conv_dim = config["conv_dim"]
    state = {"wav2vec2.masked_spec_embed": torch.rand(hidden, generator=generator)}
    in_channels = 1
    for i, (channels, kernel) in enumerate(zip(conv_dim, config["conv_kernel"])):
        prefix = f"wav2vec2.feature_extractor.conv_layers.{i}"
        state[f"{prefix}.conv.weight"] = weight(channels, in_channels, kernel, fan_in=in_channels * kernel)
        if config["conv_bias"]:
            state[f"{prefix}.conv.bias"] = 0.02 * torch.randn(channels, generator=generator)
        if config["feat_extract_norm"] == "layer" or i == 0:
            state.update(norm(f"{prefix}.layer_norm", channels))
        in_channels = channels
    state.update(norm("wav2vec2.feature_projection.layer_norm", conv_dim[-1]))
    state.update(linear("wav2vec2.feature_projection.projection", hidden, conv_dim[-1]))

    kernel = config["num_conv_pos_embeddings"]
    group_size = hidden // config["num_conv_pos_embedding_groups"]
    pos_conv = "wav2vec2.encoder.pos_conv_embed.conv"
    g_key, v_key = (
        ("weight_g", "weight_v")
        if legacy_weight_norm
        else ("parametrizations.weight.original0", "parametrizations.weight.original1")
    )
    state[f"{pos_conv}.{g_key}"] = 1.0 + 0.5 * torch.rand(1, 1, kernel, generator=generator)
    state[f"{pos_conv}.{v_key}"] = torch.randn(hidden, group_size, kernel, generator=generator)
    state[f"{pos_conv}.bias"] = 0.02 * torch.randn(hidden, generator=generator)
    state.update(norm("wav2vec2.encoder.layer_norm", hidden))

    intermediate = config["intermediate_size"]
    for i in range(config["num_hidden_layers"]):
        prefix = f"wav2vec2.encoder.layers.{i}"
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            state.update(linear(f"{prefix}.attention.{name}", hidden, hidden))
        state.update(norm(f"{prefix}.layer_norm", hidden))
        state.update(linear(f"{prefix}.feed_forward.intermediate_dense", intermediate, hidden))
        state.update(linear(f"{prefix}.feed_forward.output_dense", hidden, intermediate))
        state.update(norm(f"{prefix}.final_layer_norm", hidden))

    if config.get("use_weighted_layer_sum", False):
        state["layer_weights"] = torch.ones(config["num_hidden_layers"] + 1) / (config["num_hidden_layers"] + 1)
    projector_size = config["classifier_proj_size"]
    state.update(linear("projector", projector_size, hidden))
    state.update(linear("classifier", len(config["id2label"]), projector_size))
    return state


def write_official_style_encoder(
    directory: str | Path, seed: int = 0, config: dict | None = None, legacy_weight_norm: bool = True
) -> Path:
    """Write `config.json` and `pytorch_model.bin` of a random style encoder into `directory`; return it.

    `directory` plays the role of `checkpoints/speech_tokenizer/style_encoder_w2v2`.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = tiny_official_style_config() if config is None else config
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    state = random_official_style_state_dict(config, seed=seed, legacy_weight_norm=legacy_weight_norm)
    torch.save(state, directory / "pytorch_model.bin")
    return directory
