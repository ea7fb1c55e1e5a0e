"""Helpers shared by the `spiritlm` subcommands: defaults, checks of --repo and --device, WAV writing, pipeline
loading, segment printing. Building the parser imports neither torch nor transformers: the helpers that need them
import them when called."""

import argparse
import json
import os
import struct
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


def is_local_path(repo: str) -> bool:
    """Whether `--repo` names a local folder, never a Hub repo id (`owner/name`): a bare name (no SPIRIT LM repo on
    the Hub is one), an absolute or relative path, a path with more than one part, or one whose first part is a
    local folder."""
    owner, slash, name = repo.partition("/")
    return (
        os.path.isabs(repo)
        or repo.startswith((".", "~"))
        or "\\" in repo
        or not slash
        or not name
        or "/" in name
        or os.path.isdir(owner)
    )


def check_repo(repo: str) -> None:
    """
    Refuses, in one line and before anything loads, a `--repo` folder the commands cannot load: a path that is not a
    folder (never sent to the Hub, where it would only fail after a minute of retries), a LoRA adapter, weights only
    in a pickle, a truncated safetensors file, a language model without its tokenizer. Hub ids pass unchecked.
    """
    if not is_local_path(repo):
        return
    root = Path(repo)
    if not root.is_dir():
        raise FileNotFoundError(f"--repo {repo} is not a folder (nor a Hub repo id such as 'owner/name')")
    if (root / "adapter_config.json").is_file():
        base = json.loads((root / "adapter_config.json").read_text()).get("base_model_name_or_path") or "BASE_REPO"
        raise ValueError(
            f"--repo {repo} is a LoRA adapter (adapter_config.json), not a SPIRIT LM checkpoint: pass the merged "
            "model that examples/finetune_spiritlm.py writes with --merged-output-dir, or merge it yourself: "
            f"PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({base!r}), {repo!r})"
            ".merge_and_unload().save_pretrained(DIR)"
        )
    for folder in (root, root / "speech_tokenizer", root / "vocoder"):
        safetensors = sorted(folder.glob("*.safetensors"))
        pickles = sorted(folder.glob("pytorch_model*.bin"))
        if pickles and not safetensors:
            raise ValueError(
                f"{pickles[0]} holds pickled weights, which the spiritlm commands do not load (a converted repo holds "
                "safetensors): convert the official checkpoints with `spiritlm convert`, or load your model in Python "
                "and save it with save_pretrained"
            )
        for path in safetensors:
            check_safetensors(path)
    if (root / "config.json").is_file() and not (root / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"--repo {repo} has a language model but no tokenizer.json (the text tokenizer with the unit tokens): "
            "copy it from the repo the model was converted or trained from, or convert the official checkpoints again"
        )


def check_safetensors(path: Path) -> None:
    """Raises a `ValueError` naming `path` unless its header reads and its tensors end where the file ends: a cut
    download or copy fails this. Reads the header only, a few kB whatever the file's size."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as file:
            (header_size,) = struct.unpack("<Q", file.read(8))
            # A header longer than the file is a cut file as well: not worth reading.
            header = json.loads(file.read(header_size)) if 8 + header_size <= size else {}
        tensors = [info for key, info in header.items() if key != "__metadata__"]
        end = 8 + header_size + max((info["data_offsets"][1] for info in tensors), default=0)
    except (struct.error, ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
        raise ValueError(
            f"{path} is truncated or corrupt: its header does not read ({error}); download or convert it again"
        ) from None
    if end != size:
        raise ValueError(
            f"{path} is truncated or corrupt: the file has {size} bytes, its header describes {end}; download or "
            "convert it again"
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
    """[`transformers_spiritlm.audio.write_wav`], imported when called (the parser imports no torch)."""
    from ..audio import write_wav

    write_wav(path, audio, sampling_rate)


def add_gguf_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gguf",
        metavar="FILE",
        help="run the language model with llama.cpp from this GGUF file of --repo (`spiritlm export-gguf`); the repo "
        "still gives the processor and vocoder. Needs the [gguf] extra",
    )


def load_pipeline(repo: str, device: str, gguf: str | None = None):
    """The `"spirit-lm"` pipeline of `repo`; with `gguf`, its language model runs in llama.cpp from that file."""
    from transformers import pipeline

    from ..modeling_spiritlm import load_language_model

    if gguf is None:
        return pipeline("spirit-lm", model=repo, device=device)
    return pipeline("spirit-lm", model=load_language_model(repo, device, gguf), processor=repo, device=device)


def describe_segment(segment: dict) -> str:
    if segment["type"] == "text":
        return f"text:   {segment['text']!r}"
    units = segment["units"]
    shown = units if len(units) <= 70 else units[:70] + "..."
    if not len(segment.get("audio", ())):
        return f"speech: no audio from units {shown}"
    seconds = len(segment["audio"]) / segment["sampling_rate"]
    return f"speech: {seconds:.2f} s of audio from units {shown}"


def print_segments(segments: list[dict], limit: int = 6) -> None:
    for segment in segments[:limit]:
        print("  " + describe_segment(segment))
    if len(segments) > limit:
        print(f"  ... and {len(segments) - limit} more segments")
