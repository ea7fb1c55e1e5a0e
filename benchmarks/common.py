"""Shared helpers of the benchmark scripts: machine description and matmul peak, interleaved timing with medians,
peak RSS of a child process, result tables.

The scripts run as `python benchmarks/bench_<name>.py`, which puts this folder on `sys.path`: `import common`.
Timings on a shared machine are noisy, so compared variants run interleaved (A B C, B C A, ...), medians are reported,
CPU time beside wall-clock time, and ratios are only ever taken between numbers measured in the same run.
"""

import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


# Llama-2-7B's widths, which SPIRIT LM 7B keeps (its vocabulary: 32000 text tokens + markers + units, padded).
SPIRITLM_7B_WIDTHS = {
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32768,
}


def spiritlm_config(num_layers: int, **overrides):
    """An EXPRESSIVE `SpiritLMConfig` with the 7B widths (or `overrides`) and `num_layers` of its 32 layers."""
    from transformers_spiritlm import SpiritLMConfig

    widths = {**SPIRITLM_7B_WIDTHS, **overrides}
    return SpiritLMConfig(
        variant="expressive", num_hidden_layers=num_layers, max_position_embeddings=4096, pad_token_id=0, **widths
    )


def set_threads(threads: int) -> None:
    """Runs torch (intra-op) on `threads` threads, as the targets' "2-thread" figures assume."""
    torch.set_num_threads(threads)


def cpu_name() -> str:
    """The CPU model name from `/proc/cpuinfo` (the platform's processor string elsewhere)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def total_memory_gib() -> float | None:
    """Physical memory in GiB, or `None` where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def machine_summary() -> str:
    """One line: CPU, cores, torch threads and ISA, memory, torch and transformers versions."""
    import transformers

    memory = total_memory_gib()
    memory = f", {memory:.0f} GiB RAM" if memory is not None else ""
    return (
        f"{cpu_name()}, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads, "
        f"{torch.backends.cpu.get_cpu_capability()}){memory}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}"
    )


@dataclass
class Timings:
    """Seconds per call of each variant, in call order: wall-clock and CPU (all threads of this process)."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]


def time_interleaved(variants: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> Timings:
    """
    Times each call of each variant: `warmup` untimed rounds, then `repeats` timed rounds, each round calling every
    variant once in turn (A B C, B C A, C A B, ...: the order rotates so that no variant always runs right after the
    same one), so that load from other processes spreads evenly over the variants. Take `statistics.median` of each
    list, or [`paired_ratio`] of two.

    CPU time is reported beside wall-clock time because on a shared machine it varies far less: waiting for a core
    is not counted (contention for caches and memory bandwidth still is).
    """
    for _ in range(warmup):
        for function in variants.values():
            function()
    names = list(variants)
    timings = Timings({name: [] for name in names}, {name: [] for name in names})
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            wall, cpu = time.perf_counter(), time.process_time()
            variants[name]()
            timings.cpu[name].append(time.process_time() - cpu)
            timings.wall[name].append(time.perf_counter() - wall)
    return timings


def paired_ratio(seconds: dict[str, list[float]], name: str, baseline: str) -> float:
    """Median over the rounds of [`time_interleaved`] of `name`'s time over `baseline`'s in the same round (pass
    `timings.wall` or `timings.cpu`): it pairs calls made moments apart, so that drifts of the machine's load cancel."""
    return statistics.median(a / b for a, b in zip(seconds[name], seconds[baseline]))


def median_time(function: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall-clock seconds of `repeats` calls of `function` after `warmup` untimed ones."""
    return statistics.median(time_interleaved({"f": function}, repeats, warmup).wall["f"])


def matmul_peak_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 10) -> float:
    """
    GFLOP/s of a square `size` matmul in `dtype` on the current torch threads, the best of `repeats`: the practical
    compute peak that the benchmarks' GFLOP/s figures are set against. The best, not the median, because load from
    other processes can only slow a run down.
    """
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(dtype)
    b = torch.randn(size, size, generator=generator).to(dtype)
    out = torch.empty(size, size, dtype=dtype)
    seconds = min(time_interleaved({"mm": lambda: torch.mm(a, b, out=out)}, repeats, warmup=2).wall["mm"])
    return 2 * size**3 / seconds / 1e9


def gemv_bandwidth(dtype: torch.dtype, rows: int = 11008, columns: int = 4096, repeats: int = 20) -> float:
    """
    GB/s at which a `rows x columns` matrix-vector product in `dtype` reads its matrix (default: a Llama-7B MLP
    projection), the best of `repeats`: the bound of batch-1 decoding, which reads every weight once per token.
    """
    generator = torch.Generator().manual_seed(0)
    matrix = torch.randn(rows, columns, generator=generator).to(dtype)
    vector = torch.randn(columns, generator=generator).to(dtype)
    out = torch.empty(rows, dtype=dtype)
    seconds = min(time_interleaved({"mv": lambda: torch.mv(matrix, vector, out=out)}, repeats, warmup=3).wall["mv"])
    return matrix.numel() * matrix.element_size() / seconds / 1e9


def matmul_peaks(dtypes: Sequence[torch.dtype] = (torch.float32, torch.bfloat16)) -> dict[torch.dtype, float]:
    """`matmul_peak_gflops` of each dtype."""
    return {dtype: matmul_peak_gflops(dtype) for dtype in dtypes}


def dtype_name(dtype: torch.dtype) -> str:
    """`torch.bfloat16` -> `"bf16"`, `torch.float32` -> `"fp32"`, else the torch name."""
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


def print_header(title: str, peaks: dict[torch.dtype, float] | None = None, notes: Sequence[str] = ()) -> None:
    """Prints the benchmark title, the date (UTC), the machine, the measured matmul peaks and free-form notes."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"== {title}")
    print(f"date:    {now}")
    print(f"machine: {machine_summary()}")
    if hasattr(os, "getloadavg"):
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
        print(f"load:    {load} (1, 5, 15 min averages; above {os.cpu_count()}, processes wait for a core)")
    if peaks:
        figures = ", ".join(f"{dtype_name(dtype)} {gflops:.0f}" for dtype, gflops in peaks.items())
        print(f"matmul peak ({torch.get_num_threads()} threads, GFLOP/s): {figures}")
    for note in notes:
        print(f"note:    {note}")
    sys.stdout.flush()


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Prints `rows` under `headers` as a Markdown table between blank lines (floats as given: format them before),
    so that the output pastes into a Markdown file as is."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(str(header)), *(len(row[i]) for row in cells)) for i, header in enumerate(headers)]
    print()
    print("| " + " | ".join(str(header).ljust(width) for header, width in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    for row in cells:
        print("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |")
    print()
    sys.stdout.flush()


@dataclass
class ChildResult:
    """Outcome of [`run_child`]: exit status, captured output, peak resident set size (bytes) and wall seconds."""

    returncode: int
    stdout: str
    stderr: str
    peak_rss: int
    seconds: float


def _peak_rss_so_far(pid: int) -> int | None:
    """`VmHWM` (peak resident set size, bytes) of a running process from `/proc`, `None` where unavailable."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def run_child(
    argv: Sequence[str],
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    max_rss: int | None = None,
) -> ChildResult:
    """
    Runs `argv` in a child process and returns its peak RSS: every page it ever had resident, file-backed ones
    (e.g. memory-mapped safetensors) included. The child is killed after `timeout` seconds, or once its RSS reaches
    `max_rss` bytes (Linux), so that a runaway allocation stops before it takes the machine.

    On Linux the peak is the child's own `VmHWM`, read from `/proc` every few milliseconds while it runs (it only
    grows, so only a peak in the child's last milliseconds could be missed). `ru_maxrss` from `wait4` is not used
    there: it starts from the RSS of the forked copy of this (large) process, since the kernel keeps it across exec.
    Elsewhere `ru_maxrss` is the only figure.
    """
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(list(argv), stdout=stdout, stderr=stderr, env=env)
        deadline = None if timeout is None else start + timeout
        peak = None
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            peak = max(filter(None, (peak, _peak_rss_so_far(process.pid))), default=None)
            over_time = deadline is not None and time.perf_counter() > deadline
            if over_time or (max_rss is not None and peak is not None and peak >= max_rss):
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.005)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        if peak is None:
            # ru_maxrss is in KiB on Linux, in bytes on macOS.
            peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        return ChildResult(process.returncode, stdout.read(), stderr.read(), peak, seconds)


def python_child(code: str, *args: str, timeout: float | None = None) -> ChildResult:
    """[`run_child`] of `python -c code args...` with this interpreter, raising `RuntimeError` (with its stderr) if
    the child fails."""
    result = run_child([sys.executable, "-c", code, *args], timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"child process failed with exit status {result.returncode}:\n{result.stderr[-4000:]}")
    return result


__all__ = [
    "SPIRITLM_7B_WIDTHS",
    "ChildResult",
    "Timings",
    "cpu_name",
    "dtype_name",
    "gemv_bandwidth",
    "machine_summary",
    "matmul_peak_gflops",
    "matmul_peaks",
    "median_time",
    "paired_ratio",
    "print_header",
    "print_table",
    "python_child",
    "run_child",
    "set_threads",
    "spiritlm_config",
    "time_interleaved",
    "total_memory_gib",
]
