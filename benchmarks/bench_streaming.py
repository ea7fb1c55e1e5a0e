"""Streaming speech out: time to first audio and total time of a streamed 200-token speech answer against offline
generate + decode, the decoding speed with the streamer attached, the chunk size of the chunked vocoder, and static
cache + `torch.compile` on CPU.

Model: the full SPIRIT LM 7B widths (hidden 4096, intermediate 11008, 32 heads, vocab 32768, EXPRESSIVE id layout,
random weights) with `--layers` of its 32 decoder layers, as `bench_generation.py`; the full-size EXPRESSIVE vocoder
(random weights, `bench_vocoder.py`'s shapes). The tokenizer has the real id layout (32000 text ids: specials, byte
pieces and fillers, then markers and units), so the ids decode as they would with the real one. Each answer is 200
sampled speech tokens (seeded, identical in every variant; `min_new_tokens` keeps random weights from stopping early).

Sections (`--sections`, all by default except `compile`, which compiles for minutes):
- `chunking`: the chunked vocoder alone on the units of one answer, per chunk size: time against one `decode_string`
  and the units pushed before the first chunk came out (the defaults are chosen from it).
- `e2e`: interleaved rounds of (offline: `generate`, then `post_process_generation` with the vocoder), (streamed:
  `generate` in a thread with a `SpiritLMStreamer`, the caller iterating) and (`generate` of 1 token: the prefill and
  call set-up, subtracted to get the per-token decode time). Medians and per-round ratios.
- `compile`: per-token decode (33 new tokens minus 1) of the dynamic cache, the static cache, and the static cache with
  the forward compiled (`CompileConfig(fullgraph=True)`: a graph break would fail), all with the speech logits
  processor; then the compiled path with a `SpiritLMStreamer` attached, checked to give the same ids.

    python benchmarks/bench_streaming.py [--layers 2] [--repeats 3] [--sections chunking e2e compile]
"""

import argparse
import statistics
import sys
import tempfile
import threading
import time

import common
import numpy as np
import torch
from bench_vocoder import FULL_SIZE
from transformers import CompileConfig, LogitsProcessorList, set_seed

from transformers_spiritlm import (
    SpiritLMFeatureExtractor,
    SpiritLMForCausalLM,
    SpiritLMModalityLogitsProcessor,
    SpiritLMProcessor,
    SpiritLMStreamer,
)
from transformers_spiritlm.tokenization_spiritlm import build_spiritlm_tokenizer, spiritlm_token_strings


# 16 text tokens with this byte-level tokenizer, about what a short question is with the real one.
PROMPT = [{"type": "text", "text": "Tell me a story"}]


def layout_tokenizer(config):
    """A tokenizer with the real id layout: `<unk> <s> </s>`, the 256 byte pieces, `▁`, fillers up to the 32000 text
    ids, then the markers and units. Text encodes as bytes (there are no merges)."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{i:02X}>": 3 + i for i in range(256)}, "▁": 259}
    vocab.update({f"<extra_{i}>": i for i in range(len(vocab), config.text_vocab_size)})
    return build_spiritlm_tokenizer(vocab, [], spiritlm_token_strings(config))


def full_size_vocoder():
    from official_vocoder import write_official_vocoder

    from transformers_spiritlm.conversion.convert_vocoder import load_official_vocoder

    with tempfile.TemporaryDirectory() as directory:
        return load_official_vocoder(write_official_vocoder(directory, "expressive", **FULL_SIZE)).eval()


class Setup:
    def __init__(self, args):
        torch.manual_seed(0)
        start = time.perf_counter()
        self.model = SpiritLMForCausalLM(common.spiritlm_config(args.layers)).eval()
        self.config = self.model.config
        self.processor = SpiritLMProcessor(SpiritLMFeatureExtractor(), layout_tokenizer(self.config))
        self.vocoder = full_size_vocoder()
        self.inputs = self.processor(PROMPT, output_modality="speech")
        self.new_tokens = args.new_tokens
        print(
            f"LM built in {time.perf_counter() - start:.1f} s: {self.model.num_parameters() / 1e6:.0f} M parameters, "
            f"{args.layers} layers; prompt {self.inputs['input_ids'].shape[1]} tokens; vocoder "
            f"{self.vocoder.num_parameters() / 1e6:.1f} M parameters, receptive field (left, right) "
            f"{self.vocoder.receptive_field()} frames"
        )

    def generate_kwargs(self, new_tokens: int | None = None, do_sample: bool = True, **extra) -> dict:
        speech_only = SpiritLMModalityLogitsProcessor(self.config, "speech")
        new_tokens = new_tokens or self.new_tokens
        return {
            **self.inputs,
            "max_new_tokens": new_tokens,
            "min_new_tokens": new_tokens,
            "do_sample": do_sample,
            **({"top_k": 0} if do_sample else {}),
            "logits_processor": LogitsProcessorList([speech_only]),
            "pad_token_id": self.config.pad_token_id,
            **extra,
        }


def weight_bytes(model: SpiritLMForCausalLM) -> int:
    """Bytes every decoding step reads: all weights but the input embedding (only gathered from)."""
    embedding = model.get_input_embeddings().weight
    return sum(p.numel() * p.element_size() for p in model.parameters() if p is not embedding)


def offline_answer(setup: Setup) -> dict:
    set_seed(0)
    start = time.perf_counter()
    sequences = setup.model.generate(**setup.generate_kwargs())
    generated = time.perf_counter() - start
    (segment,) = setup.processor.post_process_generation(
        sequences, setup.inputs["attention_mask"], output_modality="speech", vocoder=setup.vocoder
    )[0]
    return {
        "generate": generated,
        "complete": time.perf_counter() - start,
        "audio": segment["audio"],
        "units": segment["units"],
    }


def streamed_answer(setup: Setup, **chunking) -> dict:
    set_seed(0)
    streamer = SpiritLMStreamer(setup.processor, setup.vocoder, output_modality="speech", timeout=900, **chunking)
    times = {}

    def generate():
        begin = time.perf_counter()
        try:
            setup.model.generate(**setup.generate_kwargs(), streamer=streamer)
        finally:
            times["generate"] = time.perf_counter() - begin

    start = time.perf_counter()
    thread = threading.Thread(target=generate)
    thread.start()
    first, chunks = None, []
    for chunk in streamer:
        if first is None and len(chunk.get("audio", ())):
            first = time.perf_counter() - start
        chunks.append(chunk)
    total = time.perf_counter() - start
    thread.join()
    audio = np.concatenate([chunk["audio"] for chunk in chunks if "audio" in chunk])
    return {
        "generate": times["generate"],
        "first": first,
        "total": total,
        "chunks": len(chunks),
        "audio": audio,
        "units": "".join(chunk["units"] for chunk in chunks),
    }


def prefill_call(setup: Setup) -> float:
    set_seed(0)
    start = time.perf_counter()
    setup.model.generate(**setup.generate_kwargs(new_tokens=1))
    return time.perf_counter() - start


def section_chunking(setup: Setup, args, units: str) -> None:
    vocoder = setup.vocoder
    tokens = [token + "]" for token in units.split("]") if token]
    sizes = (10, 20, 40)

    def chunked(size: int):
        decoder = vocoder.chunked_decoder(chunk_size=size, first_chunk_size=5)
        chunks, first_at = [], None
        for index, token in enumerate(tokens):
            out = decoder.push(token)
            if out and first_at is None:
                first_at = index + 1
            chunks += out
        chunks += decoder.flush()
        return first_at, chunks

    offline = vocoder.decode_string(units)
    variants = {"decode_string": lambda: vocoder.decode_string(units)}
    variants.update({f"chunk_size={size}": (lambda s=size: chunked(s)) for size in sizes})
    timings = common.time_interleaved(variants, args.repeats, warmup=1)
    rows = []
    base = statistics.median(timings.wall["decode_string"])
    seconds_of_audio = len(offline) / vocoder.config.sampling_rate
    rows.append(["decode_string (offline)", f"{base:.3f}", "1.00", "-", "-", f"{seconds_of_audio / base:.1f}", "-"])
    for size in sizes:
        first_at, chunks = chunked(size)
        error = float((torch.cat([chunk.waveform for chunk in chunks]) - offline).abs().max())
        wall = statistics.median(timings.wall[f"chunk_size={size}"])
        rows.append(
            [
                f"chunked, chunk_size={size}, first 5",
                f"{wall:.3f}",
                f"{common.paired_ratio(timings.wall, f'chunk_size={size}', 'decode_string'):.2f}",
                str(len(chunks)),
                str(first_at),
                f"{seconds_of_audio / wall:.1f}",
                f"{error:.1e}",
            ]
        )
    print(
        f"\nchunked vocoding alone: the units of one answer ({units.count('[Hu')} hubert units, "
        f"{seconds_of_audio:.2f} s of audio), pushed token by token; median of {args.repeats} interleaved rounds"
    )
    common.print_table(
        [
            "variant",
            "wall s",
            "vs offline (paired)",
            "chunks",
            "tokens pushed at 1st chunk",
            "audio s / wall s",
            "max |diff|",
        ],
        rows,
    )


def section_e2e(setup: Setup, args) -> dict:
    results = {"offline": [], "streamed": [], "prefill": []}
    calls = {
        "offline": lambda: offline_answer(setup),
        "streamed": lambda: streamed_answer(setup),
        "prefill": lambda: prefill_call(setup),
    }
    names = list(calls)
    offline_answer(setup)  # warm-up
    for round_index in range(args.repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(calls[name]())
    offline, streamed, prefill = results["offline"][-1], results["streamed"][-1], results["prefill"]
    if offline["units"] != streamed["units"] or offline["audio"].shape != streamed["audio"].shape:
        raise RuntimeError("streamed and offline answers differ: the variants did not do the same work")
    error = float(np.abs(offline["audio"] - streamed["audio"]).max())
    seconds_of_audio = len(offline["audio"]) / 16000

    def median(name: str, key: str) -> float:
        return statistics.median(result[key] for result in results[name])

    def paired(name: str, key: str, base: str, base_key: str) -> float:
        return statistics.median(a[key] / b[base_key] for a, b in zip(results[name], results[base]))

    prefill_median = statistics.median(prefill)
    decode = {
        name: [
            (result["generate"] - prefill[index]) / (setup.new_tokens - 1)
            for index, result in enumerate(results[name])
        ]
        for name in ("offline", "streamed")
    }
    per_token = {name: statistics.median(values) for name, values in decode.items()}
    speed_ratio = statistics.median(a / b for a, b in zip(decode["offline"], decode["streamed"]))
    gemv = common.gemv_bandwidth(torch.float32)
    weights = weight_bytes(setup.model)
    print(
        f"\nend to end: {setup.new_tokens} speech tokens ({offline['units'].count('[Hu')} hubert units, "
        f"{seconds_of_audio:.2f} s of audio), median of {args.repeats} interleaved rounds; streamed in "
        f"{streamed['chunks']} chunks (defaults: chunk_size 40, first 5), max |streamed - offline| {error:.1e}"
    )
    rows = [
        [
            "offline: generate + decode",
            "-",
            f"{median('offline', 'complete'):.2f}",
            f"{median('offline', 'generate'):.2f}",
            f"{per_token['offline'] * 1e3:.1f}",
            f"{weights / per_token['offline'] / 1e9:.1f} ({100 * weights / per_token['offline'] / 1e9 / gemv:.0f} %)",
            f"{seconds_of_audio / median('offline', 'complete'):.2f}",
        ],
        [
            "streamed (SpiritLMStreamer)",
            f"{median('streamed', 'first'):.2f}",
            f"{median('streamed', 'total'):.2f}",
            f"{median('streamed', 'generate'):.2f}",
            f"{per_token['streamed'] * 1e3:.1f}",
            f"{weights / per_token['streamed'] / 1e9:.1f} ({100 * weights / per_token['streamed'] / 1e9 / gemv:.0f} %)",
            f"{seconds_of_audio / median('streamed', 'total'):.2f}",
        ],
    ]
    common.print_table(
        [
            "variant",
            "first audio s",
            "complete s",
            "generate s",
            "decode ms / token",
            "weights GB/s (of GEMV)",
            "real-time factor",
        ],
        rows,
    )
    ttfa = paired("streamed", "first", "offline", "complete")
    total = paired("streamed", "total", "offline", "complete")
    print(
        f"prefill + call set-up (generate of 1 token): {prefill_median:.2f} s; decode ms / token = (generate - that) / "
        f"{setup.new_tokens - 1}; GEMV 4096x11008 fp32 in this run: {gemv:.1f} GB/s; real-time factor: audio s / wall s "
        "to the complete waveform\n"
        f"targets (paired per round): time to first audio / offline complete = {ttfa:.3f} (target <= 0.20: "
        f"{'met' if ttfa <= 0.20 else 'missed'}); streamed total / offline total = {total:.3f} (target <= 1.10: "
        f"{'met' if total <= 1.10 else 'missed'}); decode tokens/s with / without the streamer = {speed_ratio:.3f} "
        f"(target >= 0.90: {'met' if speed_ratio >= 0.90 else 'missed'})"
    )
    keys = {"streamed": "total", "offline": "complete"}
    spread = {name: ", ".join(f"{result[key]:.1f}" for result in results[name]) for name, key in keys.items()}
    print(f"spread of the rounds: streamed totals {spread['streamed']} s; offline {spread['offline']} s")
    return offline


def section_compile(setup: Setup, args) -> None:
    compiled = CompileConfig(fullgraph=True, mode="default")
    compiled._compile_all_devices = True  # transformers compiles on accelerators only unless told
    variants = {
        "dynamic cache, eager": {},
        "static cache, eager": {"cache_implementation": "static"},
        "static cache, compiled forward": {"cache_implementation": "static", "compile_config": compiled},
    }
    new_tokens = 33

    def call(extra: dict, tokens: int, **more):
        set_seed(0)
        return setup.model.generate(**setup.generate_kwargs(new_tokens=tokens, do_sample=False, **extra), **more)

    start = time.perf_counter()
    outputs = {name: call(extra, new_tokens) for name, extra in variants.items()}
    print(f"\ncompile section: first calls (compilation included) took {time.perf_counter() - start:.0f} s")
    reference = outputs["dynamic cache, eager"]
    for name, output in outputs.items():
        if not torch.equal(output, reference):
            raise RuntimeError(f"{name} generated other ids than the dynamic cache")
    streamer = SpiritLMStreamer(setup.processor, setup.vocoder, output_modality="speech", timeout=900)
    result = {}
    thread = threading.Thread(
        target=lambda: result.update(
            ids=call(variants["static cache, compiled forward"], new_tokens, streamer=streamer)
        )
    )
    thread.start()
    chunks = list(streamer)
    thread.join()
    if not torch.equal(result["ids"], reference):
        raise RuntimeError("the compiled path with a SpiritLMStreamer generated other ids")
    print(f"compiled + static + SpiritLMStreamer: same ids as eager dynamic, {len(chunks)} chunks")
    calls = {}
    for name, extra in variants.items():
        calls[f"{name} | {new_tokens}"] = lambda e=extra: call(e, new_tokens)
        calls[f"{name} | 1"] = lambda e=extra: call(e, 1)
    timings = common.time_interleaved(calls, args.repeats, warmup=1)
    weights = weight_bytes(setup.model)
    gemv = common.gemv_bandwidth(torch.float32)
    rows = []
    base = None
    for name in variants:
        long, short = timings.wall[f"{name} | {new_tokens}"], timings.wall[f"{name} | 1"]
        per_token = [(a - b) / (new_tokens - 1) for a, b in zip(long, short)]
        seconds = statistics.median(per_token)
        base = base or per_token
        ratio = statistics.median(b / a for a, b in zip(per_token, base))
        rows.append(
            [
                name,
                f"{seconds * 1e3:.1f}",
                f"{ratio:.2f}",
                f"{statistics.median(short):.2f}",
                f"{weights / seconds / 1e9:.1f} ({100 * weights / seconds / 1e9 / gemv:.0f} %)",
            ]
        )
    print(
        f"per-token decode, fp32, {setup.config.num_hidden_layers} layers, greedy with the speech logits processor: ({new_tokens} new tokens - 1) / {new_tokens - 1}, median of {args.repeats} "
        f"interleaved rounds; GEMV 4096x11008 fp32 in this run: {gemv:.1f} GB/s"
    )
    common.print_table(
        ["variant", "decode ms / token", "speed vs dynamic (paired)", "1-token call s", "weights GB/s (of GEMV)"],
        rows,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2, help="decoder layers (the 7B model has 32)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timed rounds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=200, help="speech tokens per answer")
    parser.add_argument("--sections", nargs="+", choices=("chunking", "e2e", "compile"), default=["chunking", "e2e"])
    args = parser.parse_args()
    common.set_threads(args.threads)
    peaks = common.matmul_peaks([torch.float32])
    common.print_header(
        "bench_streaming: streamed speech answer vs offline generate + decode",
        peaks,
        notes=[
            f"full-width SPIRIT LM (EXPRESSIVE layout), random weights, {args.layers} of 32 layers, fp32; full-size "
            "EXPRESSIVE vocoder, random weights",
            "no torch.inference_mode: the streamed generate runs in a thread of its own, where a caller's mode does "
            "not apply, so neither variant has it (generate and the vocoder run under no_grad)",
            "the streamer's work (decoding ids, vocoding) runs in the iterating thread, beside generation",
        ],
    )
    setup = Setup(args)
    units = None
    if "e2e" in args.sections:
        units = section_e2e(setup, args)["units"]
    if "chunking" in args.sections:
        if units is None:
            units = offline_answer(setup)["units"]
        section_chunking(setup, args, units)
    if "compile" in args.sections:
        section_compile(setup, args)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
