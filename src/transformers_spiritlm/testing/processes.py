"""Running a command and killing or stopping it midway, for the tests of resumable and concurrent jobs."""

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _start(command: list[str], stderr: IO) -> subprocess.Popen:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    # stderr goes to a file: a pipe nobody reads could fill up and stall the command.
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=environment)


def _signal_when_written(process: subprocess.Popen, part: Path, lines: int, signum: int, stderr: IO) -> None:
    """Sends `signum` to `process` as soon as its part file holds `lines` records."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        written = part.read_bytes().count(b"\n") if part.is_file() else 0
        if written >= lines:
            process.send_signal(signum)
            return
        if process.poll() is not None:
            stderr.seek(0)
            name = signal.Signals(signum).name
            raise AssertionError(f"the run ended before it got {name}: {stderr.read().decode()[-2000:]}")
        time.sleep(0.005)
    raise AssertionError(f"{part} never reached {lines} records")


def run_until_killed(command: list[str], part: Path, lines: int) -> int:
    """Runs `command` and SIGKILLs it as soon as its part file holds `lines` records; returns how many it held."""
    with tempfile.TemporaryFile() as stderr:
        process = _start(command, stderr)
        try:
            _signal_when_written(process, part, lines, signal.SIGKILL, stderr)
            process.wait()
            return part.read_bytes().count(b"\n")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


@contextlib.contextmanager
def stopped_midway(command: list[str], part: Path, lines: int) -> Iterator[subprocess.Popen]:
    """
    Runs `command`, stops it (SIGSTOP) as soon as its part file holds `lines` records and runs the block meanwhile;
    then lets it continue (SIGCONT) and waits for it, raising `AssertionError` with its stderr when it fails.
    """
    with tempfile.TemporaryFile() as stderr:
        process = _start(command, stderr)
        try:
            _signal_when_written(process, part, lines, signal.SIGSTOP, stderr)
            yield process
            process.send_signal(signal.SIGCONT)
            if process.wait(timeout=300) != 0:
                stderr.seek(0)
                raise AssertionError(f"the run failed once continued: {stderr.read().decode()[-2000:]}")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


__all__ = ["run_until_killed", "stopped_midway"]
