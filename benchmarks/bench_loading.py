"""Peak memory of loading a converted SPIRIT LM checkpoint: peak RSS of `AutoModelForCausalLM.from_pretrained` in a
fresh child process, as a ratio to the checkpoint's size on disk, for fp32 and bf16 checkpoints.

The checkpoint has the full SPIRIT LM 7B widths (hidden 4096, intermediate 11008, vocab 32768, random weights) and
`--layers` decoder layers (1 by default: 1.9 GB in fp32, 0.9 GB in bf16), written to a temporary folder by
`save_pretrained`. A plain `LlamaForCausalLM` folder over the same weight file is the baseline. Each child imports
torch and transformers, loads, then reads every weight once (safetensors are memory-mapped: weights only become
resident when used). Peak RSS is the child's `VmHWM` (Linux `/proc`); its value after the imports is reported and
subtracted. The page cache is warm (the files were just written), so the times measure memory, not the disk.

    python benchmarks/bench_loading.py [--layers 1] [--repeats 3] [--shard-size 500MB]
"""

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common
import torch
from transformers import LlamaConfig
from transformers.utils import logging

from transformers_spiritlm import SpiritLMForCausalLM


# Runs in the child: arguments are the checkpoint folder and the `dtype` argument ("auto", "float32", "bfloat16").
CHILD = """
import json
import sys
import time

import torch
import transformers_spiritlm
from transformers import AutoModelForCausalLM


def status(field):  # bytes
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(field + ":"))


path, dtype = sys.argv[1], sys.argv[2]
before = {field: status(field) for field in ("VmHWM", "RssAnon")}
start = time.perf_counter()
model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype if dtype == "auto" else getattr(torch, dtype))
load_seconds = time.perf_counter() - start
load_peak = status("VmHWM")
# Weights memory-mapped from safetensors are only read in when first used: read one value per page of each.
with torch.no_grad():
    for tensor in model.state_dict().values():
        tensor.reshape(-1)[:: max(1, 4096 // tensor.element_size())].sum()
print(json.dumps({"before": before["VmHWM"], "load_peak": load_peak, "peak": status("VmHWM"),
                  "anon": status("RssAnon") - before["RssAnon"], "load_seconds": load_seconds,
                  "seconds": time.perf_counter() - start, "class": type(model).__name__,
                  "dtype": str(model.dtype).removeprefix("torch.")}))
"""


def write_checkpoints(directory: Path, num_layers: int, shard_size: str) -> dict[str, Path]:
    """Writes the fp32, bf16 and sharded bf16 SPIRIT LM checkpoints, and a Llama folder over the fp32 weights."""
    torch.manual_seed(0)
    config = common.spiritlm_config(num_layers)
    model = SpiritLMForCausalLM(config).eval()
    folders = {"fp32": directory / "spiritlm-fp32", "bf16": directory / "spiritlm-bf16"}
    model.save_pretrained(folders["fp32"])
    model.to(torch.bfloat16)
    model.save_pretrained(folders["bf16"])
    folders["bf16 sharded"] = directory / "spiritlm-bf16-sharded"
    model.save_pretrained(folders["bf16 sharded"], max_shard_size=shard_size)
    del model

    # Same weight file, stock Llama config: what transformers alone costs.
    folders["llama fp32"] = directory / "llama-fp32"
    fields = {key: value for key, value in config.to_dict().items() if key in LlamaConfig.__dataclass_fields__}
    fields.pop("model_type", None)
    llama_config = LlamaConfig(**fields)
    llama_config.architectures = ["LlamaForCausalLM"]
    llama_config.dtype = torch.float32
    llama_config.save_pretrained(folders["llama fp32"])
    for weights in folders["fp32"].glob("*.safetensors*"):
        (folders["llama fp32"] / weights.name).symlink_to(weights)
    return folders


def checkpoint_bytes(folder: Path) -> int:
    """Size of the weight files (safetensors shards) of `folder`."""
    return sum(path.stat().st_size for path in folder.glob("*.safetensors"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=1, help="decoder layers (the 7B model has 32)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved loads of each case")
    parser.add_argument("--shard-size", default="500MB", help="max_shard_size of the sharded bf16 checkpoint")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tmp-dir", help="where to write the checkpoints (default: the system temporary folder)")
    args = parser.parse_args()

    common.set_threads(args.threads)
    logging.disable_progress_bar()
    peaks = common.matmul_peaks()
    common.print_header(
        "bench_loading: peak RSS of AutoModelForCausalLM.from_pretrained (child process) vs checkpoint size",
        peaks,
        notes=[
            (
                f"full-width SPIRIT LM (hidden 4096, intermediate 11008, vocab 32768), random weights, {args.layers} "
                "of 32 layers, safetensors written by save_pretrained; page cache warm"
            ),
            "loading does no arithmetic: no GFLOP/s (the matmul peak above is printed for the record only)",
        ],
    )
    directory = Path(tempfile.mkdtemp(prefix="bench_loading_", dir=args.tmp_dir))
    try:
        start = time.perf_counter()
        folders = write_checkpoints(directory, args.layers, args.shard_size)
        print(f"checkpoints written in {time.perf_counter() - start:.1f} s to {directory}")
        cases = {
            "SpiritLM fp32 ckpt, dtype auto": (folders["fp32"], "auto"),
            "Llama fp32 ckpt, dtype auto": (folders["llama fp32"], "auto"),
            "SpiritLM bf16 ckpt, dtype auto": (folders["bf16"], "auto"),
            "SpiritLM bf16 ckpt (shards), auto": (folders["bf16 sharded"], "auto"),
            "SpiritLM bf16 ckpt -> float32": (folders["bf16"], "float32"),
        }
        results = {name: [] for name in cases}
        for _ in range(args.repeats):
            for name, (folder, dtype) in cases.items():
                child = common.python_child(CHILD, str(folder), dtype)
                report = json.loads(child.stdout.strip().splitlines()[-1])
                # The child's own VmHWM; the parent's polled figure can only be lower.
                results[name].append({**report, "peak": max(report["peak"], child.peak_rss)})

        rows = []
        for name, (folder, _) in cases.items():
            size = checkpoint_bytes(folder)
            runs = results[name]
            m = {key: statistics.median(run[key] for run in runs) for key in runs[0] if key not in ("class", "dtype")}
            rows.append(
                [
                    name,
                    f"{runs[0]['class']} {runs[0]['dtype']}",
                    f"{size / 1e9:.2f} ({len(list(folder.glob('*.safetensors')))})",
                    f"{m['before'] / 1e9:.2f}",
                    f"{(m['load_peak'] - m['before']) / size:.2f}",
                    f"{m['peak'] / 1e9:.2f}",
                    f"{(m['peak'] - m['before']) / size:.2f}",
                    f"{m['anon'] / size:.2f}",
                    f"{m['load_seconds']:.2f}",
                    f"{m['seconds']:.2f}",
                ]
            )
        print(
            f"\nmedian of {args.repeats} interleaved loads per case; sizes in GB (1e9 bytes), ratios to the checkpoint"
        )
        common.print_table(
            [
                "case",
                "loaded as",
                "ckpt GB (files)",
                "import RSS",
                "from_pretrained peak / size",
                "peak RSS",
                "(peak - import) / size",
                "private / size",
                "load s",
                "load + read s",
            ],
            rows,
        )
        print(
            "import RSS: peak RSS (VmHWM) of the child after importing torch, transformers and transformers_spiritlm. "
            "from_pretrained peak: right after it returns, before any weight is read (memory-mapped weights are not "
            "resident yet). peak RSS: after reading every weight once, as a first forward pass would. private: "
            "anonymous memory added (weights copied out of the page cache); the rest of the RSS is the file's page "
            "cache, shared and reclaimable. A float32 load of a bf16 checkpoint holds a converted copy by design."
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
