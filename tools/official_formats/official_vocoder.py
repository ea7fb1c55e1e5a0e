"""Tiny random-weight vocoders in the OFFICIAL SPIRIT LM file format, for tests and fixture recording.

`write_official_vocoder(directory, "base" | "expressive")` writes what the official `HifiGANVocoder` reads:
`config.json`, `generator.pt` (`{"generator": state_dict}` with weight-norm `weight_g` / `weight_v` pairs),
`speakers.txt` and, for BASE, `styles.txt`. Weights come from a seeded numpy generator, so the same call writes the
same checkpoint in any environment.

This module imports only json, numpy and torch, so the official environment (transformers 4.x) can load it by
file path without importing the package:

    spec = importlib.util.spec_from_file_location("official_vocoder", ".../tools/official_formats/official_vocoder.py")
"""

import json
from pathlib import Path

import numpy as np
import torch


# Folder names of the two vocoders under the official `checkpoints/speech_tokenizer/`.
OFFICIAL_VOCODER_DIRS = {"base": "hifigan_spiritlm_base", "expressive": "hifigan_spiritlm_expressive_w2v2"}

TINY_SPEAKERS = ["ex01", "ex02", "ex03", "ex04"]
TINY_STYLES = [
    "read-default", "read-happy", "read-sad", "read-whisper", "conv-angry",
    "conv-happy", "conv-laughing", "conv-sad", "conv-default", "conv-whisper",
]  # fmt: skip


def tiny_official_vocoder_config(variant: str, **overrides) -> dict:
    """
    Official-format `config.json` content of a tiny vocoder: 640 samples per hubert unit (16 kHz at 25 Hz) as the
    real ones, 8-dim embeddings, 32 initial channels. `overrides` replace top-level keys.
    """
    if variant not in OFFICIAL_VOCODER_DIRS:
        raise ValueError(f"unknown variant {variant!r}; use 'base' or 'expressive'")
    embedding_dim = overrides.get("embedding_dim", 8)
    config = {
        "resblock": "1",
        "upsample_rates": [5, 4, 4, 4, 2],
        "upsample_kernel_sizes": [11, 8, 8, 8, 4],
        "upsample_initial_channel": 32,
        "resblock_kernel_sizes": [3, 5],
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]],
        "num_embeddings": 501,
        "embedding_dim": embedding_dim,
        "code_hop_size": 640,
        "sampling_rate": 16000,
        "multispkr": True,
        "num_speakers": len(TINY_SPEAKERS),
        "dur_predictor_params": {
            "encoder_embed_dim": embedding_dim,
            "var_pred_hidden_dim": embedding_dim,
            "var_pred_kernel_size": 3,
            "var_pred_dropout": 0.5,
        },
    }
    if variant == "base":
        config.update(multistyle=True, num_styles=len(TINY_STYLES))
    else:
        config.update(num_f0_tokens=64, f0_hop_size=1280, num_style_tokens=100, style_hop_size=16000)
    config.update(overrides)
    streams = 1 + sum(
        bool(config.get(key)) for key in ("num_f0_tokens", "num_style_tokens", "multispkr", "multistyle")
    )
    config["model_in_dim"] = streams * config["embedding_dim"]
    return config


def official_generator_state_dict(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights for the official `CodeGenerator` built from `config`, with weight-norm parameters."""
    rng = np.random.default_rng(seed)
    state: dict[str, torch.Tensor] = {}

    def tensor(*shape, scale=1.0, shift=0.0):
        return torch.from_numpy((rng.standard_normal(shape) * scale + shift).astype(np.float32))

    def weight_normed_conv(name, out_channels, in_channels, kernel_size, transposed=False, gain=1.0):
        # weight_norm(dim=0): one norm per first-axis slice, stored as weight_g; the direction is weight_v.
        shape = (in_channels, out_channels, kernel_size) if transposed else (out_channels, in_channels, kernel_size)
        state[f"{name}.bias"] = tensor(out_channels, scale=0.1)
        state[f"{name}.weight_g"] = torch.from_numpy(rng.uniform(0.5, 1.5, (shape[0], 1, 1)).astype(np.float32) * gain)
        state[f"{name}.weight_v"] = tensor(*shape)

    channels = config["upsample_initial_channel"]
    weight_normed_conv("conv_pre", channels, config["model_in_dim"], 7)
    num_kernels = len(config["resblock_kernel_sizes"])
    for i, kernel in enumerate(config["upsample_kernel_sizes"]):
        weight_normed_conv(f"ups.{i}", channels // 2, channels, kernel, transposed=True)
        channels //= 2
        for j, (res_kernel, dilations) in enumerate(
            zip(config["resblock_kernel_sizes"], config["resblock_dilation_sizes"])
        ):
            for group in ("convs1", "convs2"):
                for m in range(len(dilations)):
                    weight_normed_conv(f"resblocks.{i * num_kernels + j}.{group}.{m}", channels, channels, res_kernel)
    weight_normed_conv("conv_post", 1, channels, 7, gain=0.5)

    dim = config["embedding_dim"]
    state["dict.weight"] = tensor(config["num_embeddings"], dim)
    if config.get("num_f0_tokens"):
        state["f0_dict.weight"] = tensor(config["num_f0_tokens"], dim)
    if config.get("num_style_tokens"):
        state["style_dict.weight"] = tensor(config["num_style_tokens"], dim)
    if config.get("multispkr"):
        state["spkr.weight"] = tensor(config.get("num_speakers", 200), dim)
    if config.get("multistyle"):
        state["style.weight"] = tensor(config.get("num_styles", 100), dim)
    predictor = config.get("dur_predictor_params")
    if predictor:
        hidden, kernel = predictor["var_pred_hidden_dim"], predictor["var_pred_kernel_size"]
        state["dur_predictor.conv1.0.weight"] = tensor(hidden, predictor["encoder_embed_dim"], kernel, scale=0.3)
        state["dur_predictor.conv1.0.bias"] = tensor(hidden, scale=0.1)
        state["dur_predictor.ln1.weight"] = tensor(hidden, scale=0.1, shift=1.0)
        state["dur_predictor.ln1.bias"] = tensor(hidden, scale=0.1)
        state["dur_predictor.conv2.0.weight"] = tensor(hidden, hidden, kernel, scale=0.3)
        state["dur_predictor.conv2.0.bias"] = tensor(hidden, scale=0.1)
        state["dur_predictor.ln2.weight"] = tensor(hidden, scale=0.1, shift=1.0)
        state["dur_predictor.ln2.bias"] = tensor(hidden, scale=0.1)
        # Bias near 1: exp(log_dur) - 1 then rounds to durations of mostly 1 to 3 frames.
        state["dur_predictor.proj.weight"] = tensor(1, hidden, scale=0.5 / hidden**0.5)
        state["dur_predictor.proj.bias"] = tensor(1, scale=0.0, shift=1.0)
    return state


def write_official_vocoder(directory: str | Path, variant: str, seed: int = 0, **config_overrides) -> Path:
    """
    Writes a tiny random-weight vocoder in the official layout into `directory` (created if needed) and returns it:
    `config.json`, `generator.pt`, `speakers.txt` and, for BASE, `styles.txt`.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = tiny_official_vocoder_config(variant, **config_overrides)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    torch.save({"generator": official_generator_state_dict(config, seed)}, directory / "generator.pt")
    (directory / "speakers.txt").write_text("".join(f"{name}\n" for name in TINY_SPEAKERS))
    if config.get("multistyle"):
        (directory / "styles.txt").write_text("".join(f"{name}\n" for name in TINY_STYLES))
    return directory


def write_official_vocoders(checkpoints_dir: str | Path, seed: int = 0, **config_overrides) -> dict[str, Path]:
    """Writes both tiny vocoders under `checkpoints_dir/speech_tokenizer/` with their official folder names."""
    root = Path(checkpoints_dir) / "speech_tokenizer"
    return {
        variant: write_official_vocoder(root / folder, variant, seed=seed + index, **config_overrides)
        for index, (variant, folder) in enumerate(OFFICIAL_VOCODER_DIRS.items())
    }
