"""Helpers shared by the `spiritlm` subcommands: defaults, the --device check, WAV writing, pipeline loading,
segment printing. Building the parser imports neither torch nor transformers: the helpers that need them
import them when called."""

import argparse
import os
from pathlib import Path

import numpy as np


def default_cache_dir() -> Path:
    """`$SPIRITLM_CACHE`, else `$XDG_CACHE_HOME/transformers-spiritlm`, else `~/.cache/transformers-spiritlm`."""
    if os.environ.get("SPIRITLM_CACHE"):
        return Path(os.environ["SPIRITLM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "transformers-spiritlm"


def default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    # No default here: finding one imports torch, which `--help` should not wait for (see `main`).
    parser.add_argument(
        "--device", help="where to run: cpu, cuda, cuda:1, mps (default: cuda if available, else mps, else cpu)"
    )


def check_device(device: str) -> None:
    """Refuses a `--device` this torch cannot run on, before anything loads."""
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r} is not a device: use cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            why = "no GPU is visible" if torch.backends.cuda.is_built() else "it was built without CUDA"
            raise ValueError(
                f"--device {device}: this torch {torch.__version__} cannot use CUDA ({why}); use --device cpu"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"--device {device}: MPS is not available in this torch {torch.__version__}; use --device cpu"
        )


def set_verbosity(verbose: bool) -> None:
    """Quiet by default: transformers' warnings below errors and its weight-loading progress bars off (our own
    progress bars for long work stay); `--verbose` shows them all."""
    from transformers.utils import logging

    if verbose:
        logging.set_verbosity_info()
        logging.enable_progress_bar()
    else:
        logging.set_verbosity_error()
        logging.disable_progress_bar()


def write_wav(path: Path, audio: np.ndarray, sampling_rate: int) -> None:
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.clip(audio, -1.0, 1.0), sampling_rate, subtype="PCM_16")


def load_pipeline(repo: str, device: str):
    from transformers import pipeline

    return pipeline("spirit-lm", model=repo, device=device)


def describe_segment(segment: dict) -> str:
    if segment["type"] == "text":
        return f"text:   {segment['text']!r}"
    units = segment["units"]
    shown = units if len(units) <= 70 else units[:70] + "..."
    if "audio" not in segment:
        return f"speech: units {shown}"
    seconds = len(segment["audio"]) / segment["sampling_rate"]
    return f"speech: {seconds:.2f} s of audio from units {shown}"


def print_segments(segments: list[dict], limit: int = 6) -> None:
    for segment in segments[:limit]:
        print("  " + describe_segment(segment))
    if len(segments) > limit:
        print(f"  ... and {len(segments) - limit} more segments")
