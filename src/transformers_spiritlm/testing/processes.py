"""Running a command and killing it midway, for the tests of resumable jobs."""

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path


def run_until_killed(command: list[str], part: Path, lines: int) -> int:
    """Runs `command` and SIGKILLs it as soon as its part file holds `lines` records; returns how many it held."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    # stderr goes to a file: a pipe nobody reads could fill up and stall the command.
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=environment)
        deadline = time.monotonic() + 300
        try:
            while time.monotonic() < deadline:
                written = part.read_bytes().count(b"\n") if part.is_file() else 0
                if written >= lines:
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    return part.read_bytes().count(b"\n")
                if process.poll() is not None:
                    stderr.seek(0)
                    raise AssertionError(f"the run ended before it was killed: {stderr.read().decode()[-2000:]}")
                time.sleep(0.005)
            raise AssertionError(f"{part} never reached {lines} records")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


__all__ = ["run_until_killed"]
