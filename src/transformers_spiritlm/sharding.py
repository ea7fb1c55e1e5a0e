"""Sharding of corpus jobs (`spiritlm tokenize`, `spiritlm eval stsp`) over the processes of `accelerate launch` /
`torchrun`: every process takes one contiguous shard of the inputs and appends its records, as it finishes them, to
its own JSONL part file; the main process then merges the parts, in input order, into the output file. Without a
launcher the same code is one process with one part file.

Records that carry a key (`key="id"`, `key="audio"`) make a run resumable: after a crash or a kill, the same command
with `resume=True` skips the keys already in the part files (or in a finished output) and merges everything into the
file an uninterrupted run writes.

One job at a time writes an output: before it writes anything, its main process locks `<output>.lock`, which it removes
once the merged file is in place; a second job on the same output stops at once, and the processes of one job share
the lock of their main process. The operating system releases the lock of a killed job, so the file such a job leaves
behind blocks nobody.

On a machine without GPUs, `accelerate launch --num_processes N` starts a single process (its CPU launcher does not
fork; `distributed_state` warns then); start N CPU processes with `accelerate launch --multi_gpu --num_processes N`
or `torchrun --nproc_per_node N`, which then synchronise over gloo.
"""

import contextlib
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from filelock import FileLock, Timeout


def distributed_state() -> PartialState:
    """The accelerate process state (`process_index`, `num_processes`, `device`); CPU processes use gloo. Warns when
    `accelerate launch --num_processes N` (N > 1) started this process alone."""
    state = PartialState(cpu=not torch.cuda.is_available())
    # accelerate's single-process launcher sets ACCELERATE_USE_CPU, and MASTER_ADDR only when more processes were
    # asked for; its multi-process launchers set WORLD_SIZE instead.
    launched_alone = "ACCELERATE_USE_CPU" in os.environ and "MASTER_ADDR" in os.environ
    if state.num_processes == 1 and launched_alone and "WORLD_SIZE" not in os.environ:
        warnings.warn(
            "accelerate launch was asked for several processes but started this one alone: without GPUs it forks "
            "only with --multi_gpu. Run `accelerate launch --multi_gpu --num_processes N ...` (CPU processes then "
            "use gloo) or `torchrun --nproc_per_node N ...`",
            stacklevel=2,
        )
    return state


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


def part_files(output: str | os.PathLike) -> list[Path]:
    """The part files of `output` left by earlier runs, with any number of processes."""
    output = Path(output)
    return sorted(output.parent.glob(f"{output.name}.part-*-of-*"))


def _complete_lines(path: Path) -> Iterator[str]:
    """The lines of a JSONL file that end with a newline (a killed writer can leave half a line)."""
    with open(path, encoding="utf-8") as file:
        for line in file:
            if line.endswith("\n") and line.strip():
                yield line


def finished_records(output: str | os.PathLike, key: str, include_output: bool = True) -> dict[str, str]:
    """
    The records already written for `output`, as `{str(record[key]): json line}`: the complete lines of its part
    files and (with `include_output`) of `output` itself when it exists. The first record of a key wins.
    """
    output = Path(output)
    sources = ([output] if include_output and output.is_file() else []) + part_files(output)
    records: dict[str, str] = {}
    for source in sources:
        for number, line in enumerate(_complete_lines(source), start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{source}, line {number}: not JSON ({error}); delete the file to start over"
                ) from None
            if not isinstance(record, dict) or key not in record:
                raise ValueError(
                    f"{source}, line {number}: a record without {key!r}; it does not belong to this run, delete it"
                )
            records.setdefault(str(record[key]), line)
    return records


def _drop_incomplete_line(path: Path) -> None:
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as file:
            file.truncate(data.rfind(b"\n") + 1)


def _lock_output(output: Path, resume: bool, force: bool, inputs: Sequence[str | os.PathLike]) -> FileLock:
    """Checks that `output` can be written, creating nothing when it cannot, and returns its held lock."""
    if output.is_dir():
        raise IsADirectoryError(f"the output {output} is a folder; give the path of a file (e.g. inside it)")
    if output.exists():
        written = output.stat()
        if any(os.path.samestat(written, Path(item).stat()) for item in inputs if Path(item).exists()):
            raise ValueError(f"the output {output} is one of the inputs; give another output file")
    lock = lock_job_output(output)
    try:
        if not resume and not force:
            if output.exists():
                raise FileExistsError(f"{output} exists; pass --resume to complete it or --force to overwrite it")
            if part_files(output):
                raise FileExistsError(
                    f"{output} has partial results of an earlier run ({part_files(output)[0].name}, ...); pass "
                    "--resume to continue them or --force to start over"
                )
    except BaseException:
        unlock_job_output(lock)
        raise
    return lock


def lock_job_output(output: Path) -> FileLock:
    """Takes `<output>.lock` for the one job that writes `output` (its folder is created); a second job gets a
    `BlockingIOError` at once. The operating system releases the lock of a killed job."""
    output.parent.mkdir(parents=True, exist_ok=True)
    lock_path = output.with_name(f"{output.name}.lock")
    lock = FileLock(lock_path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise BlockingIOError(
            f"another job is writing {output} (it holds {lock_path}; `lsof {lock_path}` names its process): wait "
            "for it to end or choose another output"
        ) from None
    return lock


def unlock_job_output(lock: FileLock) -> None:
    """Releases a lock of [`lock_job_output`]."""
    # Removed while still held: filelock (>= 3.20.4) takes a lock won on a file removed meanwhile as not acquired, so
    # a job that opened the old file cannot run beside one that creates a new file.
    Path(lock.lock_file).unlink(missing_ok=True)
    lock.release()


def _claim_output(
    output: Path, state: PartialState, resume: bool, force: bool, inputs: Sequence[str | os.PathLike]
) -> FileLock | None:
    """The main process checks and locks `output` (and holds the lock it returns); every process raises its error."""
    lock, error = None, None
    if state.is_main_process:
        try:
            lock = _lock_output(output, resume, force, inputs)
        except (OSError, ValueError) as caught:
            error = caught
    if state.num_processes > 1:
        error = broadcast_object_list([error])[0]
    if error is not None:
        raise error
    return lock


@contextlib.contextmanager
def sharded_output(
    output: str | os.PathLike,
    state: PartialState,
    key: str | None = None,
    order: Sequence[str] | None = None,
    resume: bool = False,
    force: bool = False,
    inputs: Sequence[str | os.PathLike] = (),
) -> Iterator[TextIO]:
    """
    Opens where this process writes its JSON lines: its part file `<output>.part-<i>-of-<n>` (line-buffered, so that
    every finished record is on disk), or stdout for `output="-"` in a single process. When every process has left
    the block, the main process merges the parts into `output` (written under a temporary name, then renamed) and
    deletes them; every process returns once `output` is complete.

    Before anything is written, the main process locks `output` for this job (`<output>.lock`, removed at the end):
    a job that finds it locked raises `BlockingIOError`, as do the other processes of that job. An `output` that is a
    folder or one of `inputs` is refused, and so is an existing `output` or its part files unless `resume` or `force`
    (`FileExistsError`); a refused job creates nothing. Work the result depends on (reading what an earlier run
    finished, loading models) goes inside the block, where the lock is held.

    Args:
        key: the record field that names an item (`"id"`, `"audio"`). With it, the merge writes one record per key in
            `order` (keys without a record are skipped), taking records from all part files, whatever the number of
            processes that wrote them, and a failed run keeps a part file that holds records for a resumed one.
            Without it, the parts are concatenated in process order and a failed run leaves nothing.
        order: the keys of all items (`str`), in the order of the merged file; required with `key`.
        resume: keep the records of an earlier run (its part files and its finished `output`) instead of starting
            over; the caller skips the keys of [`finished_records`].
        force: start over even when `output` or part files of an earlier run exist (`output` is replaced at the end).
        inputs: the files the job reads, none of which may be `output`.
    """
    count = state.num_processes
    if os.fspath(output) == "-":
        if count > 1:
            raise ValueError(f"{count} processes cannot share stdout ('-'): give an output file")
        if resume:
            raise ValueError("cannot resume a run that writes to stdout ('-'): give an output file")
        yield sys.stdout
        return
    if (key is None) != (order is None):
        raise ValueError("give both key= and order= (or neither)")
    if resume and key is None:
        raise ValueError("resuming needs keyed records: pass key= and order=")
    output = Path(output)
    lock = _claim_output(output, state, resume, force, inputs)
    try:
        target = _part_path(output, state.process_index, count)
        if not resume:
            if state.is_main_process:
                for stale in part_files(output):
                    stale.unlink()
            state.wait_for_everyone()
        else:
            _drop_incomplete_line(target)
        try:
            with open(target, "a" if resume else "w", encoding="utf-8", buffering=1) as file:
                yield file
        except BaseException:
            if key is None or (target.is_file() and target.stat().st_size == 0):
                target.unlink(missing_ok=True)
            raise
        state.wait_for_everyone()
        if state.is_main_process:
            merged = output.with_name(f"{output.name}.tmp")
            parts = part_files(output) if key is not None else [_part_path(output, i, count) for i in range(count)]
            with open(merged, "w", encoding="utf-8") as destination:
                if key is None:
                    for part in parts:
                        destination.writelines(_complete_lines(part))
                else:
                    records = finished_records(output, key, include_output=resume)
                    destination.writelines(records[name] for name in order if name in records)
            os.replace(merged, output)
            for part in parts:
                part.unlink()
        state.wait_for_everyone()
    finally:
        if lock is not None:
            unlock_job_output(lock)


def run_sharded(
    output: str | os.PathLike,
    rows: Sequence[dict],
    predict: Callable[[list[dict]], Iterator[dict]],
    state: PartialState,
    key: str = "id",
    resume: bool = False,
    force: bool = False,
    inputs: Sequence[str | os.PathLike] = (),
) -> dict[str, int]:
    """
    The job of an evaluation task: this process's shard of `rows` (less, with `resume`, the keys already written)
    goes through `predict`, whose records (each with `key`, as `str(row[key])`) are written as they come, then merged
    into `output` in the order of `rows` ([`sharded_output`]). `predict` runs inside the output's lock and only when
    there is work left, so that it may load the models itself.

    Returns:
        `{"written": records written by this process, "skipped": rows of its shard already done}`.
    """
    order = [str(row[key]) for row in rows]
    with sharded_output(output, state, key=key, order=order, resume=resume, force=force, inputs=inputs) as file:
        done = finished_records(output, key) if resume else {}
        shard = process_shard(rows, state)
        todo = [row for row in shard if str(row[key]) not in done]
        written = 0
        if todo:
            for record in predict(todo):
                file.write(json.dumps(record) + "\n")
                written += 1
    return {"written": written, "skipped": len(shard) - len(todo)}


__all__ = [
    "distributed_state",
    "finished_records",
    "lock_job_output",
    "part_files",
    "process_shard",
    "run_sharded",
    "shard_range",
    "sharded_output",
    "unlock_job_output",
]
