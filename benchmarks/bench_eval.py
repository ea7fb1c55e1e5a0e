"""Minimal-pair scoring throughput (`score_pairs`, behind `spiritlm eval swuggy | sblimp | storycloze | salmon |
pairs`): pairs per second batched (`--batch-sizes`, both items of every pair of a batch in one left-padded forward
pass) against one pair at a time.

The model is a SPIRIT LM with the 7B widths (hidden 4096, intermediate 11008, 32 heads, 32768-row output layer) and
`--layers` decoder layers, random weights, float32, with the tiny test tokenizer (only its ids are used). The pairs
are sWUGGY / SALMon-like: no prompt, two speech items of `--min-units` to `--max-units` HuBERT units each (seeded), as
the speech tokenizer would give them; encoding audio is not timed. Variants run interleaved (A B C, B C A, ...) and
the table gives medians (wall-clock and CPU time), pairs/s and per-round ratios from this one run; the last column
is the largest difference of the variant's scores from those of batch size 1.

    python benchmarks/bench_eval.py [--layers 2] [--pairs 32] [--batch-sizes 1 4 16] [--repeats 2]
"""

import argparse
import random
import statistics
import sys

import common
import torch

from transformers_spiritlm import SpiritLMForCausalLM
from transformers_spiritlm.evaluation import score_pairs
from transformers_spiritlm.testing import tiny_lm_config, tiny_spiritlm_tokenizer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--min-units", type=int, default=15)
    parser.add_argument("--max-units", type=int, default=45)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    common.set_threads(args.threads)

    widths = {key: value for key, value in common.SPIRITLM_7B_WIDTHS.items() if key != "vocab_size"}
    config = tiny_lm_config("base", num_hidden_layers=args.layers, **widths)
    tokenizer = tiny_spiritlm_tokenizer(config)
    config.vocab_size = common.SPIRITLM_7B_WIDTHS["vocab_size"]  # the 7B output layer; the extra rows are never read
    torch.manual_seed(0)
    model = SpiritLMForCausalLM(config).eval()
    rng = random.Random(0)

    def item() -> str:
        return "[Speech]" + "".join(
            f"[Hu{rng.randrange(501)}]" for _ in range(rng.randint(args.min_units, args.max_units))
        )

    pairs = [{"id": str(i), "correct": item(), "wrong": item()} for i in range(args.pairs)]
    results = {}

    def run(batch_size: int):
        def call():
            results[batch_size] = list(score_pairs(model, tokenizer, pairs, batch_size=batch_size))

        return call

    variants = {f"batch {size}": run(size) for size in args.batch_sizes}
    common.print_header(
        "Minimal-pair scoring (score_pairs)",
        notes=[
            f"{args.pairs} pairs of {args.min_units}-{args.max_units} units, no prompt, {args.layers} layers of the "
            "7B widths, fp32"
        ],  # fmt: skip
    )
    timings = common.time_interleaved(variants, args.repeats)
    baseline = f"batch {min(args.batch_sizes)}"
    reference = results[min(args.batch_sizes)]
    rows = []
    for size, name in zip(args.batch_sizes, variants):
        wall, cpu = statistics.median(timings.wall[name]), statistics.median(timings.cpu[name])
        difference = max(
            abs(record[key] - base[key])
            for record, base in zip(results[size], reference)
            for key in ("score_correct", "score_wrong")
        )
        rows.append([
            name, f"{wall:.2f}", f"{cpu:.2f}", f"{args.pairs / wall:.2f}",
            f"{1 / common.paired_ratio(timings.wall, name, baseline):.2f}", f"{difference:.1e}",
        ])  # fmt: skip
    common.print_table(
        ["variant", "wall s", "CPU s", "pairs/s", f"speed-up over {baseline}", "max |score diff|"], rows
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
