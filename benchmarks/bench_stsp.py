"""STSP prediction throughput (`predict_stsp`): batched generation against one item at a time, and the cost of the
per-item seeded sampler against greedy decoding.

The model is a SPIRIT LM with half the 7B widths (hidden 2048, intermediate 5504, 16 heads) and `--layers` decoder
layers, random weights, and the tiny test tokenizer (its vocabulary is small, so the output layer costs less than the
real 32768-row one); the classifier is the tiny RoBERTa of `transformers_spiritlm.testing.classifiers`. Each variant
predicts the same `--items` text -> text items with at most `--new-tokens` new tokens; variants run interleaved
(A B C, B C A, ...) and the table gives medians (wall-clock and CPU time) and per-round ratios from this one run. The
last column says whether the variant's prediction records equal those of batch size 1 (per-item seeds make sampled
outputs independent of batching, up to float rounding of padded batches).

    python benchmarks/bench_stsp.py [--layers 2] [--items 16] [--new-tokens 16] [--batch-sizes 1 4 16] [--repeats 3]
"""

import argparse
import statistics
import sys
import tempfile

import common
import torch

from transformers_spiritlm import SpiritLMFeatureExtractor, SpiritLMForCausalLM, SpiritLMProcessor
from transformers_spiritlm.evaluation import SentimentClassifier, predict_stsp
from transformers_spiritlm.testing import tiny_lm_config, tiny_spiritlm_tokenizer
from transformers_spiritlm.testing.classifiers import build_tiny_text_classifier


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    common.set_threads(args.threads)

    config = tiny_lm_config(hidden_size=2048, intermediate_size=5504, num_attention_heads=16, num_key_value_heads=16,
                            num_hidden_layers=args.layers)  # fmt: skip
    torch.manual_seed(0)
    model = SpiritLMForCausalLM(config).eval()
    processor = SpiritLMProcessor(SpiritLMFeatureExtractor(), tiny_spiritlm_tokenizer(config))
    with tempfile.TemporaryDirectory() as folder:
        classifier = SentimentClassifier.from_pretrained(build_tiny_text_classifier(folder), "text")
    rows = [{"id": i, "asr": f"item {i}: the weather was {'good bad so-so'.split()[i % 3]} today", "_line": i + 1}
            for i in range(args.items)]  # fmt: skip

    results = {}

    def run(batch_size: int, do_sample: bool = True):
        def call():
            records = list(predict_stsp(model, processor, rows, "text_text", classifier, batch_size=batch_size,
                                        do_sample=do_sample, max_new_tokens=args.new_tokens))  # fmt: skip
            results[(batch_size, do_sample)] = records

        return call

    variants = {f"batch {size}, sampled": run(size) for size in args.batch_sizes}
    largest = max(args.batch_sizes)
    variants[f"batch {largest}, greedy"] = run(largest, do_sample=False)
    common.print_header(
        "STSP prediction (predict_stsp, text -> text)",
        notes=[f"{args.items} items, <= {args.new_tokens} new tokens, {args.layers} layers of hidden 2048, fp32"],
    )
    timings = common.time_interleaved(variants, args.repeats)
    baseline = f"batch {min(args.batch_sizes)}, sampled"
    reference = results[(min(args.batch_sizes), True)]
    rows_out = []
    for name, key in zip(variants, [(size, True) for size in args.batch_sizes] + [(largest, False)]):
        wall, cpu = statistics.median(timings.wall[name]), statistics.median(timings.cpu[name])
        rows_out.append([
            name, f"{wall:.2f}", f"{cpu:.2f}", f"{args.items / wall:.2f}",
            f"{common.paired_ratio(timings.wall, name, baseline):.2f}",
            "-" if not key[1] else ("yes" if results[key] == reference else "no"),
        ])  # fmt: skip
    common.print_table(["variant", "wall s", "CPU s", "items/s", f"wall / {baseline}", "same records"], rows_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
