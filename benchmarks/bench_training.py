"""Training throughput of SpiritLMForCausalLM: padded batches against padding-free (packed) ones, and the peak memory
of a training step with and without gradient (activation) checkpointing.

The model has the full SPIRIT LM 7B widths (hidden 4096, intermediate 11008, 32 heads, vocab 32768, random weights)
but only `--layers` decoder layers, so that a run fits a small machine. The batch is a SPIRIT LM length mix: speech
and interleaved sequences are long (about 20 tokens per second of audio for BASE), text ones short, so a padded
batch is mostly padding. Padded and packed batches hold the same sequences and give the same loss (checked here);
both run forward + backward (no optimizer step, which is the same for both), interleaved (A B, B A, ...); the table
gives medians and per-round ratios of one run.

The memory figures come from child processes (one per variant, peak resident set size) running one step on the
packed batch: weights and gradients are the same in both, so the difference is the activations kept for the backward
pass.

    python benchmarks/bench_training.py [--layers 1] [--lengths 128 80 48 20 12 8] [--repeats 2]
                                        [--memory-layers 2] [--threads 2]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile

import common
import torch

from transformers_spiritlm import SpiritLMForCausalLM
from transformers_spiritlm.data import SpiritLMDataCollator


# Speech (long), interleaved (medium) and text (short) sequences, in tokens, scaled down so that a step at 7B widths
# takes seconds on a CPU; their ratios are those of a SPIRIT LM batch (a 20 s clip is ~400 BASE units, its
# transcript ~40 tokens).
DEFAULT_LENGTHS = (128, 80, 48, 20, 12, 8)

MEMORY_CHILD = """
import json, sys, torch
sys.path.insert(0, sys.argv[1])
import common
from transformers_spiritlm import SpiritLMForCausalLM

def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096

torch.set_num_threads(int(sys.argv[4]))
config = common.spiritlm_config(int(sys.argv[2]))
torch.manual_seed(0)
model = SpiritLMForCausalLM(config).train()
if sys.argv[3] == "on":
    model.activation_checkpointing_enable()
with open(sys.argv[5]) as file:
    batch = {key: torch.tensor(value) for key, value in json.load(file).items()}
before = rss()
loss = model(**batch, use_cache=False).loss
kept = rss() - before
loss.backward()
print(json.dumps({"loss": loss.item(), "kept": kept}))
"""


def sequences(lengths, vocab_size: int) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    return [{"input_ids": [1, *torch.randint(3, vocab_size, (n - 1,), generator=generator).tolist()]} for n in lengths]


def step(model, batch) -> float:
    model.zero_grad(set_to_none=True)
    loss = model(**batch, use_cache=False).loss
    loss.backward()
    return loss.item()


def peak_memory(layers: int, checkpointing: bool, batch_file: str, threads: int) -> tuple[int, int, float]:
    """Peak RSS, RSS growth over the forward pass (what is kept for backward) and loss of one step, in a child."""
    here = os.path.dirname(os.path.abspath(__file__))
    mode = "on" if checkpointing else "off"
    result = common.python_child(MEMORY_CHILD, here, str(layers), mode, str(threads), batch_file)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return result.peak_rss, report["kept"], report["loss"]


def throughput(config, padded: dict, packed: dict, real_tokens: int, repeats: int) -> None:
    """Prints the padded vs packed table: same sequences, forward + backward, interleaved rounds."""
    torch.manual_seed(0)
    model = SpiritLMForCausalLM(config).train()
    padded_tokens = padded["input_ids"].numel()
    with torch.no_grad():
        padded_loss = model(**padded, use_cache=False).loss.item()
        packed_loss = model(**packed, use_cache=False).loss.item()
    timings = common.time_interleaved(
        {"padded": lambda: step(model, padded), "packed": lambda: step(model, packed)}, repeats
    )
    rows = []
    for name, tokens in (("padded", padded_tokens), ("packed", real_tokens)):
        wall, cpu = statistics.median(timings.wall[name]), statistics.median(timings.cpu[name])
        rows.append(
            [
                name,
                tokens,
                f"{wall:.2f}",
                f"{cpu:.2f}",
                f"{real_tokens / wall:.0f}",
                f"{real_tokens / cpu:.0f}",
                f"{common.paired_ratio(timings.wall, 'padded', name):.2f}x",
                f"{common.paired_ratio(timings.cpu, 'padded', name):.2f}x",
            ]
        )
    print(
        f"{len(padded['input_ids'])} sequences, {real_tokens} real tokens; padded batch "
        f"{tuple(padded['input_ids'].shape)} ({100 * (1 - real_tokens / padded_tokens):.0f}% padding); loss padded "
        f"{padded_loss:.6f}, packed {packed_loss:.6f} (relative difference "
        f"{abs(packed_loss - padded_loss) / padded_loss:.1e})"
    )
    headers = ["batch", "tokens computed", "wall s", "cpu s", "tokens/wall s", "tokens/cpu s", "speed-up wall", "cpu"]
    common.print_table(headers, rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=1, help="decoder layers of the throughput model")
    parser.add_argument("--lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS), help="sequence lengths")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds")
    parser.add_argument("--memory-layers", type=int, default=2, help="decoder layers of the memory model (0: skip)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-only", action="store_true", help="skip the throughput table")
    args = parser.parse_args()

    common.set_threads(args.threads)
    peaks = common.matmul_peaks((torch.float32,))
    common.print_header(
        "bench_training: padded vs padding-free batches, gradient checkpointing memory",
        peaks,
        [f"{args.layers} layer(s) at 7B widths, fp32, forward + backward, lengths {args.lengths}"],
    )
    from transformers_spiritlm.testing import tiny_lm_config, tiny_spiritlm_tokenizer

    config = common.spiritlm_config(args.layers)
    tokenizer = tiny_spiritlm_tokenizer(tiny_lm_config())
    features = sequences(args.lengths, config.vocab_size)
    padded = SpiritLMDataCollator(tokenizer)(features)
    packed = SpiritLMDataCollator(tokenizer, padding_free=True)(features)
    real_tokens = sum(args.lengths)
    if not args.memory_only:
        throughput(config, padded, packed, real_tokens, args.repeats)

    if args.memory_layers:
        results = {}
        with tempfile.NamedTemporaryFile("w", suffix=".json") as batch_file:
            json.dump({key: value.tolist() for key, value in packed.items()}, batch_file)
            batch_file.flush()
            # Memory hardly varies from run to run (unlike time): one child per variant.
            for checkpointing in (False, True):
                results[checkpointing] = peak_memory(args.memory_layers, checkpointing, batch_file.name, args.threads)
        print(
            f"gradient checkpointing, {args.memory_layers} layer(s) at 7B widths, one step on the packed batch "
            f"({real_tokens} tokens), one child process per variant"
        )
        rows = [
            ["on" if checkpointing else "off", f"{kept / 2**20:.0f}", f"{peak / 2**30:.2f}", f"{loss:.6f}"]
            for checkpointing, (peak, kept, loss) in results.items()
        ]
        common.print_table(["checkpointing", "kept by forward MiB", "peak RSS GiB", "loss"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
