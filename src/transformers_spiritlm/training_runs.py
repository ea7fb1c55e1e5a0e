"""Output folders of resumable training jobs (`spiritlm train-units`, `examples/train_vocoder.py`).

A job writes its result to an output folder, all at once (staged beside it, then renamed), and keeps its progress in
one checkpoint file beside it, `<output>.checkpoint.safetensors`: tensors, and the job's JSON state in the safetensors
metadata, replaced atomically after each step. A killed job leaves only that file; the same command with `resume=True`
continues from it. One job at a time: the job locks `<output>.lock` before it writes anything.
"""

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save_file

from .sharding import lock_job_output, unlock_job_output


def checkpoint_path(output: str | os.PathLike) -> Path:
    """The checkpoint file of the job writing `output`."""
    output = Path(output)
    return output.with_name(f"{output.name}.checkpoint.safetensors")


@contextlib.contextmanager
def training_output(output: str | os.PathLike, resume: bool = False, force: bool = False) -> Iterator[Path]:
    """
    Claims `output` for one training job: refuses an existing output without `force` and an earlier job's checkpoint
    without `resume` or `force` (`force` deletes it), then holds `<output>.lock` until the job ends. Yields the
    checkpoint path.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"the output {output} is a file; give a folder path")
    lock = lock_job_output(output)
    try:
        checkpoint = checkpoint_path(output)
        if output.exists() and not force:
            raise FileExistsError(f"{output} exists; pass --force to replace it")
        if checkpoint.exists() and not resume:
            if not force:
                raise FileExistsError(
                    f"{checkpoint} holds an unfinished run; pass --resume to continue it or --force to start over"
                )
            checkpoint.unlink()
        yield checkpoint
    finally:
        unlock_job_output(lock)


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], state: dict) -> None:
    """Writes `tensors` and the JSON-able `state` to `path` atomically (a kill leaves the previous checkpoint)."""
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
    save_file(tensors, staging, metadata={"state": json.dumps(state)})
    os.replace(staging, path)


def load_checkpoint(path: Path, expected: dict) -> tuple[dict[str, torch.Tensor], dict] | None:
    """
    The tensors and state of the checkpoint at `path` (`None` if there is none). `expected` are the settings of the
    job resuming it (`state["settings"]`): a checkpoint of other settings is an error, not silently mixed in.
    """
    if not path.exists():
        return None
    expected = json.loads(json.dumps(expected))  # as stored: tuples are lists
    with safe_open(path, framework="pt") as file:
        state = json.loads(file.metadata()["state"])
    if state["settings"] != expected:
        changed = sorted(
            key for key in {*expected, *state["settings"]} if expected.get(key) != state["settings"].get(key)
        )
        raise ValueError(
            f"{path} is the checkpoint of a run with other settings ({', '.join(changed)} differ); rerun with the "
            "same ones, or pass --force to start over"
        )
    return load_file(path), state


def pack_state(state) -> tuple[object, dict[str, torch.Tensor]]:
    """
    Splits a nested state (dicts with str or int keys, lists, tuples, tensors, numbers, strings, `None`: what
    `state_dict()` of modules, optimizers and schedulers returns) into a JSON-able tree and its tensors, for
    `save_checkpoint`; [`unpack_state`] rebuilds it. No pickle.
    """
    tensors: dict[str, torch.Tensor] = {}

    def pack(value, path: str):
        if isinstance(value, torch.Tensor):
            tensors[path] = value
            return {"tensor": path}
        if isinstance(value, dict):
            return {"dict": [[key, pack(item, f"{path}.{key}")] for key, item in value.items()]}
        if isinstance(value, (list, tuple)):
            packed = [pack(item, f"{path}.{index}") for index, item in enumerate(value)]
            return {"tuple" if isinstance(value, tuple) else "list": packed}
        if value is None or isinstance(value, (bool, int, float, str)):
            return {"value": value}
        raise TypeError(f"cannot checkpoint {type(value).__name__} at {path or 'the top'}")

    return pack(state, ""), tensors


def unpack_state(tree, tensors: dict[str, torch.Tensor]):
    """The state [`pack_state`] split into `tree` and `tensors`."""
    kind, value = next(iter(tree.items()))
    if kind == "tensor":
        return tensors[value]
    if kind == "dict":
        return {key: unpack_state(item, tensors) for key, item in value}
    if kind in ("list", "tuple"):
        items = [unpack_state(item, tensors) for item in value]
        return tuple(items) if kind == "tuple" else items
    return value


def publish(output: Path, write: Callable[[Path], None]) -> None:
    """Writes the finished result with `write(folder)` into a staging folder beside `output`, then renames it to
    `output` (replacing it: `training_output` allowed that), so that `output` is never half-written."""
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    try:
        write(staging)
        if output.exists():
            shutil.rmtree(output)
        os.replace(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


__all__ = [
    "checkpoint_path",
    "load_checkpoint",
    "pack_state",
    "publish",
    "save_checkpoint",
    "training_output",
    "unpack_state",
]
