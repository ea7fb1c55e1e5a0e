"""Helpers shared by the `spiritlm` subcommands: defaults, WAV writing, pipeline loading, segment printing."""

import argparse
import os
from pathlib import Path

import numpy as np
import soundfile
import torch


def default_cache_dir() -> Path:
    """`$SPIRITLM_CACHE`, else `$XDG_CACHE_HOME/transformers-spiritlm`, else `~/.cache/transformers-spiritlm`."""
    if os.environ.get("SPIRITLM_CACHE"):
        return Path(os.environ["SPIRITLM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "transformers-spiritlm"


def default_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default=default_device(), help="where to run: cpu, cuda, cuda:1, mps (default: %(default)s)"
    )


def write_wav(path: Path, audio: np.ndarray, sampling_rate: int) -> None:
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
