"""Tiny random-weight F0 VQ-VAE checkpoints in the OFFICIAL SPIRIT LM file format, for tests and fixture recording.

`write_official_vqvae_f0(directory)` writes what the official `load_vqvae` reads: `config.yaml` (encoder, bottleneck
and decoder parameters, `features`) and `model.pt` (`{"model": state_dict}`, encoder, decoder and codebook under the
official keys). The architecture is the official one (strided convolutions x4 at stride 2, so 80-sample F0 frames
become 12.5 Hz units; dilated residual stacks; 64 codes), only narrower. Weights come from a seeded torch
generator, so the same call writes the same checkpoint in any environment.

This module imports only math, os, torch and yaml, so the official environment can load it by file path:

    spec = importlib.util.spec_from_file_location("official_pitch", ".../tools/official_formats/official_pitch.py")
"""

import math
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml


# Where the tests download the torchfcpe wheel (real FCPE weights); SPIRITLM_FCPE_CHECKPOINT overrides it.
FCPE_CACHE_DIR = Path.home() / ".cache" / "transformers-spiritlm" / "torchfcpe"
FCPE_DOWNLOAD_COMMAND = f"pip download torchfcpe==0.0.4 --no-deps -d {FCPE_CACHE_DIR}"


def find_fcpe_checkpoint(download: bool = False) -> Path | None:
    """The real FCPE weights for tests: `$SPIRITLM_FCPE_CHECKPOINT` (a `.pt`, a torchfcpe wheel or a folder of
    one) or a torchfcpe wheel in `FCPE_CACHE_DIR`; None when neither exists. With `download=True` a missing wheel
    is first fetched into `FCPE_CACHE_DIR` with `FCPE_DOWNLOAD_COMMAND` (the wheel is read as a zip, never
    installed)."""
    configured = os.environ.get("SPIRITLM_FCPE_CHECKPOINT")
    if configured:
        path = Path(configured).expanduser()
        return path if path.exists() and (path.is_file() or any(path.iterdir())) else None
    if download and not any(FCPE_CACHE_DIR.glob("torchfcpe-*.whl")):
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "torchfcpe==0.0.4",
            "--no-deps",
            "-d",
            str(FCPE_CACHE_DIR),
        ]
        subprocess.run(command, check=False, capture_output=True, timeout=600)
    return FCPE_CACHE_DIR if any(FCPE_CACHE_DIR.glob("torchfcpe-*.whl")) else None


def tiny_official_vqvae_f0_config(
    width: int = 16, depth: int = 2, emb_width: int = 16, l_bins: int = 64, features: str = "norm_f0_interp,vuv"
) -> dict:
    """`config.yaml` contents of a narrow F0 VQ-VAE with the official layout (one level, `downs_t: [4]`,
    `strides_t: [2]`, dilation growth 3)."""
    coder = {
        "input_emb_width": 2,
        "output_emb_width": emb_width,
        "levels": 1,
        "downs_t": [4],
        "strides_t": [2],
        "width": width,
        "depth": depth,
        "m_conv": 1.0,
        "dilation_growth_rate": 3,
    }
    return {
        "features": features,
        "encoder_params": dict(coder),
        "decoder_params": dict(coder),
        "vq_params": {"l_bins": l_bins, "emb_width": emb_width, "mu": 0.99, "levels": 1},
    }


def random_official_vqvae_f0_state_dict(config: dict, seed: int = 0, codebook_scale: float = 0.5) -> dict:
    """Random weights under the official VQVAE keys (`encoder.level_blocks.0.model...`, `vq.level_blocks.0.k`,
    `decoder...`) for a one-level, int-stride `config`. Convolutions are scaled by 1/sqrt(fan-in); the codebook
    by `codebook_scale`, about the spread of the encoder output on normalised F0, so that speech uses many codes."""
    generator = torch.Generator().manual_seed(seed)
    encoder, vq = config["encoder_params"], config["vq_params"]
    if encoder.get("levels", 1) != 1 or isinstance(encoder["strides_t"][0], (list, tuple)):
        raise ValueError("the tiny writer supports one level with an int stride only")
    down, stride = encoder["downs_t"][0], encoder["strides_t"][0]
    width, depth = encoder["width"], encoder["depth"]
    emb, inputs = encoder["output_emb_width"], encoder["input_emb_width"]
    hidden = int(encoder.get("m_conv", 1.0) * width)

    def conv(prefix: str, out_channels: int, in_channels: int, kernel: int, transposed: bool = False) -> dict:
        shape = (in_channels, out_channels, kernel) if transposed else (out_channels, in_channels, kernel)
        bound = 1.0 / math.sqrt(in_channels * kernel)
        return {
            f"{prefix}.weight": (torch.rand(shape, generator=generator) * 2 - 1) * bound,
            f"{prefix}.bias": (torch.rand(out_channels, generator=generator) * 2 - 1) * bound,
        }

    def resnet(prefix: str) -> dict:
        state = {}
        for j in range(depth):
            state.update(conv(f"{prefix}.model.{j}.model.1", hidden, width, 3))
            state.update(conv(f"{prefix}.model.{j}.model.3", width, hidden, 1))
        return state

    state = {}
    for i in range(down):
        prefix = f"encoder.level_blocks.0.model.{i}"
        state.update(conv(f"{prefix}.0", width, inputs if i == 0 else width, 2 * stride))
        state.update(resnet(f"{prefix}.1"))
    state.update(conv(f"encoder.level_blocks.0.model.{down}", emb, width, 3))
    state["vq.level_blocks.0.k"] = torch.randn(vq["l_bins"], vq["emb_width"], generator=generator) * codebook_scale
    state.update(conv("decoder.level_blocks.0.model.0", width, emb, 3))
    for i in range(down):
        prefix = f"decoder.level_blocks.0.model.{i + 1}"
        state.update(resnet(f"{prefix}.0"))
        state.update(conv(f"{prefix}.1", emb if i == down - 1 else width, width, 2 * stride, transposed=True))
    state.update(conv("decoder.out", inputs, emb, 3))
    return state


def write_official_vqvae_f0(
    directory: str | Path, seed: int = 0, config: dict | None = None, codebook_scale: float = 0.5
) -> Path:
    """Write `config.yaml` and `model.pt` of a random F0 VQ-VAE into `directory` (the role of
    `checkpoints/speech_tokenizer/vqvae_f0_quantizer`); return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = tiny_official_vqvae_f0_config() if config is None else config
    (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    state = random_official_vqvae_f0_state_dict(config, seed=seed, codebook_scale=codebook_scale)
    torch.save({"model": state}, directory / "model.pt")
    return directory


def random_fcpe_checkpoint(hidden_size: int = 16, num_layers: int = 1, seed: int = 0) -> dict:
    """A narrow random FCPE checkpoint in torchfcpe's format (`{"model", "config_dict", "global_step"}`, conv-only
    `CFNaiveMelPE`, weight-normed `output_proj`), loadable by torchfcpe's `spawn_infer_model_from_pt`. A stand-in
    for `fcpe_c_v001.pt` where the real weights are not needed (conversion and plumbing tests)."""
    generator = torch.Generator().manual_seed(seed)
    mel_bins, out_dims, f0_min, f0_max = 128, 360, 32.7, 1975.5

    def uniform(*shape: int, fan_in: int) -> torch.Tensor:
        return (torch.rand(shape, generator=generator) * 2 - 1) / math.sqrt(fan_in)

    def conv(prefix: str, out_channels: int, in_channels: int, kernel: int, groups: int = 1) -> dict:
        fan_in = in_channels // groups * kernel
        return {
            f"{prefix}.weight": uniform(out_channels, in_channels // groups, kernel, fan_in=fan_in),
            f"{prefix}.bias": uniform(out_channels, fan_in=fan_in),
        }

    def norm(prefix: str) -> dict:
        return {
            f"{prefix}.weight": 1.0 + 0.1 * torch.randn(hidden_size, generator=generator),
            f"{prefix}.bias": 0.1 * torch.randn(hidden_size, generator=generator),
        }

    inner = 2 * hidden_size
    state = {}
    state.update(conv("input_stack.0", hidden_size, mel_bins, 3))
    state.update(norm("input_stack.1"))
    state.update(conv("input_stack.3", hidden_size, hidden_size, 3))
    for i in range(num_layers):
        prefix = f"net.encoder_layers.{i}"
        state.update(norm(f"{prefix}.conformer.net.0"))
        state.update(conv(f"{prefix}.conformer.net.2", 2 * inner, hidden_size, 1))
        state.update(conv(f"{prefix}.conformer.net.4.conv", inner, inner, 31, groups=inner))
        state.update(conv(f"{prefix}.conformer.net.6", hidden_size, inner, 1))
        state.update(norm(f"{prefix}.norm"))
    state.update(norm("norm"))
    state["output_proj.weight_v"] = torch.randn(out_dims, hidden_size, generator=generator)
    state["output_proj.weight_g"] = 1.0 + torch.rand(out_dims, 1, generator=generator)
    state["output_proj.bias"] = torch.randn(out_dims, generator=generator)
    cents = 1200.0 * torch.log2(torch.tensor([f0_min, f0_max]) / 10.0)
    state["cent_table"] = torch.linspace(cents[0], cents[1], out_dims)
    state["gaussian_blurred_cent_mask"] = 1200.0 * torch.log2(torch.tensor(f0_max / 10.0))
    config = {
        "mel": {
            "sr": 16000,
            "num_mels": mel_bins,
            "n_fft": 1024,
            "win_size": 1024,
            "hop_size": 160,
            "fmin": 0,
            "fmax": 8000,
        },
        "model": {
            "type": "CFNaiveMelPE",
            "out_dims": out_dims,
            "hidden_dims": hidden_size,
            "n_layers": num_layers,
            "n_heads": 8,
            "f0_min": f0_min,
            "f0_max": f0_max,
            "use_fa_norm": True,
            "conv_only": True,
            "residual_dropout": 0.1,
            "attention_dropout": 0.1,
        },
    }
    return {"global_step": 0, "model": state, "config_dict": config}
