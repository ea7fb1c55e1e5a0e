"""Sharding of corpus jobs (`spiritlm tokenize`) over the processes of `accelerate launch`: every process takes one
contiguous shard of the inputs and writes its own JSONL part; the main process then concatenates the parts, in
input order, into the output file. Without a launcher the same code is one process writing the output directly.

On a machine without GPUs, `accelerate launch --num_processes N` starts a single process (its CPU launcher does not
fork); start N CPU processes with `accelerate launch --multi_gpu --num_processes N` (torchrun), which then
synchronise over gloo.
"""

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

import torch
from accelerate import PartialState


def distributed_state() -> PartialState:
    """The accelerate process state (`process_index`, `num_processes`, `device`); CPU processes use gloo."""
    return PartialState(cpu=not torch.cuda.is_available())


def shard_range(num_items: int, index: int, count: int) -> range:
    """Indices of the `index`-th of `count` contiguous, near-equal shards of `num_items` items."""
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is out of range for {count} shards")
    size, extra = divmod(num_items, count)
    start = index * size + min(index, extra)
    return range(start, start + size + (index < extra))


def process_shard(items: Sequence, state: PartialState) -> list:
    """The items of this process: its contiguous shard of `items` (all of them in a single process)."""
    return [items[i] for i in shard_range(len(items), state.process_index, state.num_processes)]


def _part_path(output: Path, index: int, count: int) -> Path:
    return output.with_name(f"{output.name}.part-{index}-of-{count}")


@contextlib.contextmanager
def sharded_output(output: str | os.PathLike, state: PartialState) -> Iterator[TextIO]:
    """
    Opens where this process writes its records: `output` itself in a single process (`"-"`: stdout), else its part
    file `<output>.part-<i>-of-<n>`. When every process has left the block, the main process concatenates the parts in
    process order into `output` and deletes them; every process returns once `output` is complete. The file
    appears only when complete (it is written under a temporary name, then renamed).
    """
    count = state.num_processes
    if os.fspath(output) == "-":
        if count > 1:
            raise ValueError(f"{count} processes cannot share stdout ('-'): give an output file")
        yield sys.stdout
        return
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    target = _part_path(output, state.process_index, count) if count > 1 else output.with_name(f"{output.name}.tmp")
    try:
        with open(target, "w", encoding="utf-8") as file:
            yield file
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    if count == 1:
        os.replace(target, output)
        return
    state.wait_for_everyone()
    if state.is_main_process:
        merged = output.with_name(f"{output.name}.tmp")
        with open(merged, "w", encoding="utf-8") as destination:
            for index in range(count):
                part = _part_path(output, index, count)
                with open(part, encoding="utf-8") as source:
                    destination.writelines(source)
                part.unlink()
        os.replace(merged, output)
    state.wait_for_everyone()


__all__ = ["distributed_state", "process_shard", "shard_range", "sharded_output"]
