"""Generation speed of SpiritLMForCausalLM: overhead against plain LlamaForCausalLM, and the cost of the output-modality
constraint (SpiritLMModalityLogitsProcessor) against unconstrained decoding and the official `bad_words_ids` path.

The model has the full SPIRIT LM 7B widths (hidden 4096, intermediate 11008, 32 heads, vocab 32768, random weights)
but only `--layers` decoder layers, so that a run fits a small machine. A step of this model costs a fraction of a
32-layer one, so fixed per-step costs (logits processing) weigh *more* here than they would in the real model.
All variants decode greedily the same prompt and run interleaved (A B C, B C A, ...), each once for exactly
`--new-tokens` tokens and once for 1 token: the per-token decode time is their difference over `--new-tokens - 1`,
so that the prompt's forward and the call set-up are not counted (they would dominate a short generation). The table
gives medians (wall-clock and CPU time) and per-round ratios from this one run, and the weights' read bandwidth of
decoding against the bandwidth of a 4096x11008 matrix-vector product measured in the same run (the bound of batch-1
decoding). A second table times the per-call and per-token cost of the constraint alone, with a 1-layer, 64-wide
model of the same vocabulary on one thread, where the forward pass costs almost nothing.

    python benchmarks/bench_generation.py [--layers 2] [--new-tokens 33] [--dtypes fp32 bf16] [--repeats 5]
                                          [--batch-size 1]
"""

import argparse
import statistics
import sys
import time

import common
import torch
from accelerate import init_empty_weights
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList
from transformers.generation.logits_process import NoBadWordsLogitsProcessor

from transformers_spiritlm import SpiritLMConfig, SpiritLMForCausalLM
from transformers_spiritlm.generation import SpiritLMModalityLogitsProcessor, banned_token_ranges


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def plain_llama(model: SpiritLMForCausalLM) -> LlamaForCausalLM:
    """A stock `LlamaForCausalLM` sharing `model`'s weight tensors (no copy): the baseline of the overhead figure."""
    fields = {key: value for key, value in model.config.to_dict().items() if key in LlamaConfig.__dataclass_fields__}
    fields.pop("model_type", None)
    with init_empty_weights(include_buffers=False):
        llama = LlamaForCausalLM(LlamaConfig(**fields))
    llama.load_state_dict(model.state_dict(), assign=True, strict=True)
    llama.generation_config = model.generation_config
    return llama.eval()


def official_bad_words_ids(config: SpiritLMConfig, output_modality: str) -> list[list[int]]:
    """What the official code passes to `generate` as `bad_words_ids`: one single-token list per forbidden id."""
    return [[token_id] for banned in banned_token_ranges(config, output_modality) for token_id in banned]


def decode_flops(config: SpiritLMConfig, batch_size: int, prompt_tokens: int, new_tokens: int) -> float:
    """
    Floating-point operations of the decoding steps of a `generate` call of `new_tokens` tokens (one forward per token
    after the first, with the KV cache), without the prompt's forward. Matmuls and causal attention only.
    """
    hidden, layers = config.hidden_size, config.num_hidden_layers
    kv_width = config.num_key_value_heads * (hidden // config.num_attention_heads)
    per_token_layer = 2 * (hidden * (hidden + 2 * kv_width) + hidden * hidden + 3 * hidden * config.intermediate_size)
    head = 2 * hidden * config.vocab_size

    def attention(context: int) -> int:  # scores and weighted values over `context` positions, all heads, all layers
        return layers * 2 * 2 * context * hidden

    decode = sum(
        layers * per_token_layer + attention(context) + head
        for context in range(prompt_tokens + 1, prompt_tokens + new_tokens)
    )
    return batch_size * decode


def streamed_weight_bytes(model: SpiritLMForCausalLM) -> int:
    """Bytes of the weights each forward reads (all but the input embedding, which is only gathered from)."""
    embedding = model.get_input_embeddings().weight
    return sum(p.numel() * p.element_size() for p in model.parameters() if p is not embedding)


def benchmark_decoding(args, dtype: torch.dtype, peak: float, gemv: float, model: SpiritLMForCausalLM) -> None:
    """Times the generate variants on `model` (already in `dtype`) and prints their table."""
    config = model.config
    llama = plain_llama(model)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, config.text_vocab_size, (args.batch_size, args.prompt_tokens), generator=generator)
    common_kwargs = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "do_sample": False,
        "pad_token_id": config.pad_token_id,
        "eos_token_id": config.eos_token_id,
    }

    def processor(modality):
        return LogitsProcessorList([SpiritLMModalityLogitsProcessor(config, modality)])

    # A new processor per call, as a user's call (or our pipeline) builds it; likewise the bad-words list.
    variants = {
        "LlamaForCausalLM": lambda **kw: llama.generate(**common_kwargs, **kw),
        "SpiritLMForCausalLM": lambda **kw: model.generate(**common_kwargs, **kw),
        "+ processor, text": lambda **kw: model.generate(**common_kwargs, logits_processor=processor("text"), **kw),
        "+ processor, speech": lambda **kw: model.generate(
            **common_kwargs, logits_processor=processor("speech"), **kw
        ),
        "+ bad_words_ids, speech": lambda **kw: model.generate(
            **common_kwargs, bad_words_ids=official_bad_words_ids(config, "speech"), **kw
        ),
    }
    calls = {}
    for name, function in variants.items():
        for tokens in (args.new_tokens, 1):
            calls[f"{name} | {tokens}"] = lambda f=function, t=tokens: f(max_new_tokens=t, min_new_tokens=t)
    with torch.inference_mode():
        outputs = {
            name: function(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
            for name, function in variants.items()
        }
        timings = common.time_interleaved(calls, args.repeats, warmup=0)
    _check_outputs(config, outputs, args)
    # The probe ran before the timings: the best of it and one right after them (load can only slow a run down).
    gemv = max(gemv, common.gemv_bandwidth(dtype))
    steps = args.new_tokens - 1

    def per_token(seconds: dict[str, list[float]], name: str) -> list[float]:
        """Per-round decode time per token: (call of `new_tokens` - call of 1) / (`new_tokens` - 1)."""
        return [(a - b) / steps for a, b in zip(seconds[f"{name} | {args.new_tokens}"], seconds[f"{name} | 1"])]

    decode = {name: (per_token(timings.wall, name), per_token(timings.cpu, name)) for name in variants}
    flops = decode_flops(config, args.batch_size, args.prompt_tokens, args.new_tokens) / steps
    weight_bytes = streamed_weight_bytes(model)  # one forward per generated token

    def ratios(name: str, baseline: str) -> str:
        wall, cpu = (statistics.median(a / b for a, b in zip(decode[name][i], decode[baseline][i])) for i in (0, 1))
        return f"{wall:.3f} / {cpu:.3f}"

    rows = []
    for name in variants:
        wall = statistics.median(decode[name][0])
        rows.append(
            [
                name,
                f"{wall * 1e3:.1f}",
                f"{statistics.median(decode[name][1]) * 1e3:.1f}",
                f"{statistics.median(timings.wall[f'{name} | 1']) * 1e3:.0f}",
                ratios(name, "LlamaForCausalLM"),
                ratios(name, "SpiritLMForCausalLM"),
                f"{flops / wall / 1e9:.2f}",
                f"{100 * flops / wall / 1e9 / peak:.1f} %",
                f"{weight_bytes / wall / 1e9:.1f} ({100 * weight_bytes / wall / 1e9 / gemv:.0f} %)",
            ]
        )
    spread = _spread(decode["SpiritLMForCausalLM"][0]), _spread(decode["SpiritLMForCausalLM"][1])
    print(
        f"\n{common.dtype_name(dtype)}: {config.num_hidden_layers} layers, batch {args.batch_size}, "
        f"prompt {args.prompt_tokens}, decode = ({args.new_tokens} new tokens - 1) / {steps}, median of {args.repeats} "
        f"interleaved runs (spread of SpiritLMForCausalLM's per-token wall times: {spread[0]}, CPU times: {spread[1]})"
    )
    common.print_table(
        [
            "variant",
            "decode ms / token",
            "CPU ms / token",
            "1-token call ms",
            "vs Llama (wall / CPU)",
            "vs unconstrained (wall / CPU)",
            "GFLOP/s",
            "of matmul peak",
            "weights GB/s (of GEMV)",
        ],
        rows,
    )
    print(
        "decode ms / token: (generate of new tokens - generate of 1 token) / (new tokens - 1), wall-clock, prompt "
        "forward and call set-up excluded (the 1-token call is both); CPU: CPU time of all threads. vs Llama, vs "
        "unconstrained: median of the per-round ratios of decode time to LlamaForCausalLM with the same weights and "
        "to SpiritLMForCausalLM without a constraint. GFLOP/s and weights GB/s from the decode time; matmul peak "
        f"{common.dtype_name(dtype)} {peak:.0f} GFLOP/s; GEMV: a 4096x11008 {common.dtype_name(dtype)} matrix-vector "
        f"product reads its weights at {gemv:.1f} GB/s in this run"
    )


def _spread(seconds: list[float]) -> str:
    """Fastest and slowest run relative to the median, e.g. `-4% .. +9%`."""
    median = statistics.median(seconds)
    return f"{min(seconds) / median - 1:+.0%} .. {max(seconds) / median - 1:+.0%}"


def _check_outputs(config: SpiritLMConfig, outputs: dict[str, torch.Tensor], args) -> None:
    """The variants must do the same work: same lengths, Llama == SpiritLM, processor == bad words, modality kept."""
    expected_shape = (args.batch_size, args.prompt_tokens + args.new_tokens)
    for name, output in outputs.items():
        if tuple(output.shape) != expected_shape:
            raise RuntimeError(f"{name} generated shape {tuple(output.shape)}, expected {expected_shape}")
    new = {name: output[:, args.prompt_tokens :] for name, output in outputs.items()}
    if not torch.equal(new["LlamaForCausalLM"], new["SpiritLMForCausalLM"]):
        raise RuntimeError("LlamaForCausalLM and SpiritLMForCausalLM generated different tokens from the same weights")
    if not torch.equal(new["+ processor, speech"], new["+ bad_words_ids, speech"]):
        raise RuntimeError("the modality processor and the official bad_words_ids generated different speech tokens")
    if (new["+ processor, speech"] < config.hubert_token_offset).any():
        raise RuntimeError("speech-constrained generation produced a non-unit token")
    text_new = new["+ processor, text"]
    if ((text_new >= config.text_token_id) & (text_new < config.num_spiritlm_tokens)).any():
        raise RuntimeError("text-constrained generation produced a marker or unit token")


def benchmark_constraint_cost(args) -> None:
    """
    Per-call and per-token cost of the constraint alone: a 1-layer, 64-wide model with the full vocabulary, on one
    thread (such a model gains nothing from two, and on a shared machine the waits of two would swamp the figures).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = common.spiritlm_config(
        1, hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=4
    )
    model = SpiritLMForCausalLM(config).eval()
    input_ids = torch.randint(3, config.text_vocab_size, (args.batch_size, args.prompt_tokens))
    kwargs = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "do_sample": False,
        "max_new_tokens": args.new_tokens,
        "min_new_tokens": args.new_tokens,
        "pad_token_id": config.pad_token_id,
        "eos_token_id": config.eos_token_id,
    }
    modalities = ("text", "speech")

    def ours(modality):
        return SpiritLMModalityLogitsProcessor(config, modality)

    def bad_words(modality):
        return NoBadWordsLogitsProcessor(official_bad_words_ids(config, modality), config.eos_token_id)

    calls = {"unconstrained": lambda: model.generate(**kwargs)}
    for modality in modalities:
        calls[f"processor, {modality}"] = lambda m=modality: model.generate(
            **kwargs, logits_processor=LogitsProcessorList([ours(m)])
        )
        calls[f"bad_words_ids, {modality}"] = lambda m=modality: model.generate(
            **kwargs, bad_words_ids=official_bad_words_ids(config, m)
        )
    with torch.inference_mode():
        call_seconds = common.time_interleaved(calls, args.repeats * 3, warmup=1).wall

    # The processors on their own, on one decoding step's (batch, vocab) float32 scores: built once and called
    # (`step`), or built and called once (`setup`, which includes building the tensors they prepare on that call).
    scores = torch.randn(args.batch_size, config.vocab_size)
    ids = torch.randint(0, config.vocab_size, (args.batch_size, args.prompt_tokens + args.new_tokens))
    steps, setups = {}, {}
    for modality in modalities:
        for name, build in ((f"processor, {modality}", ours), (f"bad_words_ids, {modality}", bad_words)):
            processor = build(modality)
            processor(ids, scores)
            steps[name] = _repeat(lambda p=processor: p(ids, scores), 200)
            setups[name] = lambda b=build, m=modality: b(m)(ids, scores)
    step_seconds = common.time_interleaved(steps, args.repeats * 3).wall
    setup_seconds = common.time_interleaved(setups, args.repeats * 3).wall
    torch.set_num_threads(threads)

    unconstrained = statistics.median(call_seconds["unconstrained"])
    rows = [["unconstrained", f"{unconstrained * 1e3:.1f}", "+0.0", "-", "-"]]
    for name in steps:
        seconds = statistics.median(call_seconds[name])
        rows.append(
            [
                name,
                f"{seconds * 1e3:.1f}",
                f"{(seconds - unconstrained) * 1e3:+.1f}",
                f"{statistics.median(step_seconds[name]) / 200 * 1e6:.0f}",
                f"{statistics.median(setup_seconds[name]) * 1e3:.2f}",
            ]
        )
    print(
        f"\nconstraint cost alone: 1 layer, hidden 64, vocab {config.vocab_size}, batch {args.batch_size}, "
        f"prompt {args.prompt_tokens} + {args.new_tokens} new tokens, fp32, 1 thread, median of {args.repeats * 3} "
        "interleaved runs (no GFLOP/s: the forward is negligible)"
    )
    common.print_table(
        ["variant", "ms / generate call", "vs unconstrained (ms)", "µs / processor step", "ms to build + 1st step"],
        rows,
    )


def _repeat(function, times: int):
    def repeated():
        for _ in range(times):
            function()

    return repeated


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2, help="decoder layers (the 7B model has 32)")
    parser.add_argument("--new-tokens", type=int, default=33)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--dtypes", nargs="+", choices=tuple(DTYPES), default=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed rounds (after one untimed round)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    common.set_threads(args.threads)
    dtypes = [DTYPES[name] for name in args.dtypes]
    peaks = common.matmul_peaks(dtypes)
    bandwidths = {dtype: common.gemv_bandwidth(dtype) for dtype in dtypes}
    common.print_header(
        "bench_generation: SpiritLMForCausalLM generate vs LlamaForCausalLM, modality constraint vs bad_words_ids",
        peaks,
        notes=[
            (
                "full-width SPIRIT LM (hidden 4096, intermediate 11008, 32 heads, vocab 32768), random weights, "
                f"{args.layers} of 32 layers"
            ),
            "batch-1 decoding streams every weight once per token: it is memory-bound, far from the matmul peak",
            "GEMV 4096x11008 weights GB/s at the start of the run (re-measured after each table's timings): "
            + ", ".join(f"{common.dtype_name(dtype)} {value:.1f}" for dtype, value in bandwidths.items()),
        ],
    )
    torch.manual_seed(0)
    start = time.perf_counter()
    model = SpiritLMForCausalLM(common.spiritlm_config(args.layers)).eval()
    print(f"model built in {time.perf_counter() - start:.1f} s, {model.num_parameters() / 1e6:.0f} M parameters")
    for dtype in dtypes:
        model.to(dtype)
        benchmark_decoding(args, dtype, peaks[dtype], bandwidths[dtype], model)
    del model
    benchmark_constraint_cost(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
