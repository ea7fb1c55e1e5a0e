"""llama.cpp (GGUF f16 / q8_0 / q4_0 / q4_K_M) against torch bf16 and fp32 `generate`: decode speed, logit error,
resident memory and time to first audio of a streamed speech answer.

The model has SPIRIT LM 7B's widths (hidden 4096, intermediate 11008, 32 heads, vocab 32768, random weights) and
`--layers` of its 32 decoder layers, saved as a converted repo (bfloat16 weights, a 32000-piece text vocabulary with
the markers and units, the tiny random vocoder) and exported with `export_gguf` to each type. The 32768 x 4096 output
layer is ~25 % of the bytes read per token with 2 layers (2 % with 32): ratios carry over roughly, absolute speeds
are ~10-12x lower for the full model.

- decode: greedy, batch 1, end-of-sequence banned so that every call makes exactly its tokens; each variant once for
  `--new-tokens` tokens and once for 1, per token = the difference / (`--new-tokens` - 1); rounds interleaved
  (A B C, B C A, ...), medians and per-round ratios to torch bf16 from this run.
- logit error: last-position logits of a 64-token prompt against torch float32 (max |difference|, and relative to
  the logits' standard deviation).
- memory: peak resident set size of a child process that loads the model and generates 8 tokens (GGUF pages are
  memory-mapped and count once touched), beside that of a child that only imports the same modules.
- time to first audio: `pipe.stream` of a speech answer to a 100-unit prompt (sampling, seed 0), until the first
  chunk with audio; interleaved rounds, medians.

    python benchmarks/bench_gguf.py [--layers 2] [--threads 1] [--new-tokens 33] [--repeats 5] [--work-dir DIR]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common
import torch
from transformers import LogitsProcessor, LogitsProcessorList, pipeline

from transformers_spiritlm import SpiritLMFeatureExtractor, SpiritLMForCausalLM, SpiritLMProcessor
from transformers_spiritlm.configuration_spiritlm import VOCODER_SUBFOLDER
from transformers_spiritlm.llama_cpp_backend import GGUF_TYPES, SpiritLMLlamaCppForCausalLM, export_gguf
from transformers_spiritlm.testing import tiny_vocoder
from transformers_spiritlm.tokenization_spiritlm import build_spiritlm_tokenizer, spiritlm_token_strings


GGUF_BENCH_TYPES = [gguf_type for gguf_type in GGUF_TYPES if gguf_type != "f32"]
TORCH_DTYPES = {"torch bf16": torch.bfloat16, "torch fp32": torch.float32}
N_CTX = 512

MEMORY_CHILD = """
import sys, torch
from transformers_spiritlm import SpiritLMForCausalLM
from transformers_spiritlm.llama_cpp_backend import SpiritLMLlamaCppForCausalLM
kind, repo, gguf_file, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torch.set_num_threads(threads)
if kind == "imports":
    sys.exit(0)
if kind.startswith("torch"):
    dtype = {"torch bf16": torch.bfloat16, "torch fp32": torch.float32}[kind]
    model = SpiritLMForCausalLM.from_pretrained(repo, dtype=dtype).eval()
else:
    model = SpiritLMLlamaCppForCausalLM.from_pretrained(repo, gguf_file, n_ctx=512, n_threads=threads)
ids = torch.randint(3, 32000, (1, 32), generator=torch.Generator().manual_seed(0))
with torch.inference_mode():
    model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False)
"""


class BanEndOfSequence(LogitsProcessor):
    """Every call generates exactly its `max_new_tokens` (random weights may pick the end-of-sequence id)."""

    def __init__(self, eos_token_id: int):
        self.eos_token_id = eos_token_id

    def __call__(self, input_ids, scores):
        scores[:, self.eos_token_id] = -float("inf")
        return scores


def build_repo(folder: Path, layers: int) -> Path:
    """A converted repo with the 7B widths, `layers` layers, random bfloat16 weights and the tiny vocoder."""
    config = common.spiritlm_config(layers)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{byte:02X}>": 3 + byte for byte in range(256)}}
    vocab.update({f"\u2581w{index}": index for index in range(len(vocab), config.text_vocab_size)})
    tokenizer = build_spiritlm_tokenizer(vocab, [], spiritlm_token_strings(config))
    torch.manual_seed(0)
    model = SpiritLMForCausalLM(config).to(torch.bfloat16)
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(folder)
    del model
    SpiritLMProcessor(SpiritLMFeatureExtractor(), tokenizer, speech_tokenizer=None).save_pretrained(folder)
    tiny_vocoder("expressive").save_pretrained(folder / VOCODER_SUBFOLDER)
    return folder


def decode_speed(args, models: dict, config) -> dict[str, list[float]]:
    """Per-round decode seconds per token of each model."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, config.text_vocab_size, (1, args.prompt_tokens), generator=generator)
    processors = LogitsProcessorList([BanEndOfSequence(config.eos_token_id)])
    settings = dict(attention_mask=torch.ones_like(ids), do_sample=False, logits_processor=processors)
    calls = {}
    for name, model in models.items():
        for tokens in (args.new_tokens, 1):
            calls[f"{name} | {tokens}"] = lambda m=model, t=tokens: m.generate(ids, max_new_tokens=t, **settings)
    with torch.inference_mode():
        for name, call in calls.items():
            output = call()
            expected = args.prompt_tokens + int(name.rsplit("| ", 1)[1])
            if output.shape != (1, expected):
                raise RuntimeError(f"{name} generated shape {tuple(output.shape)}, expected (1, {expected})")
        timings = common.time_interleaved(calls, args.repeats, warmup=0)
    steps = args.new_tokens - 1

    def per_token(seconds: dict[str, list[float]], name: str) -> list[float]:
        return [(a - b) / steps for a, b in zip(seconds[f"{name} | {args.new_tokens}"], seconds[f"{name} | 1"])]

    return {name: (per_token(timings.wall, name), per_token(timings.cpu, name)) for name in models}


def logit_errors(models: dict, config, reference: str = "torch fp32") -> dict[str, tuple[float, float]]:
    """`name -> (max |logit - reference logit|, that / std of the reference logits)` at the last of 64 tokens."""
    ids = torch.randint(3, config.text_vocab_size, (1, 64), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = models[reference](ids).logits[0, -1].float()
        errors = {}
        for name, model in models.items():
            if isinstance(model, SpiritLMLlamaCppForCausalLM):
                error = (model.last_logits(ids[0]) - expected).abs().max().item()
            else:
                error = (model(ids).logits[0, -1].float() - expected).abs().max().item()
            errors[name] = (error, error / expected.std().item())
    return errors


def time_to_first_audio(args, pipes: dict) -> dict[str, list[float]]:
    """Per-round seconds from `pipe.stream(...)` to its first chunk with audio."""
    prompt = [{"type": "speech", "units": "".join(f"[Hu{(7 * index) % 501}]" for index in range(100))}]
    settings = dict(output_modality="speech", max_new_tokens=200, do_sample=True, seed=0, first_chunk_size=5)

    def first_audio(pipe) -> None:
        stream = pipe.stream(prompt, **settings)
        try:
            for chunk in stream:
                if len(chunk.get("audio", ())):
                    return
            raise RuntimeError("the streamed answer had no audio")
        finally:
            stream.close()

    calls = {name: (lambda p=pipe: first_audio(p)) for name, pipe in pipes.items()}
    return common.time_interleaved(calls, args.repeats, warmup=1).wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="threads of torch and of llama.cpp (default: 1)")
    parser.add_argument("--new-tokens", type=int, default=33)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work-dir", help="where the repo and GGUF files go (default: a temporary folder)")
    args = parser.parse_args()
    common.set_threads(args.threads)
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work_dir:
        work = Path(work_dir)
        start = time.perf_counter()
        repo = build_repo(work / "repo", args.layers)
        files, sizes = {}, {}
        for gguf_type in GGUF_BENCH_TYPES:
            files[gguf_type] = export_gguf(repo, work / f"{gguf_type}.gguf", gguf_type, n_threads=args.threads)
            sizes[gguf_type] = files[gguf_type].stat().st_size
        print(f"repo and exports written in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        models = {
            name: SpiritLMForCausalLM.from_pretrained(repo, dtype=dtype).eval() for name, dtype in TORCH_DTYPES.items()
        }
        for gguf_type, path in files.items():
            models[f"llama.cpp {gguf_type}"] = SpiritLMLlamaCppForCausalLM.from_pretrained(
                repo, path, n_ctx=N_CTX, n_threads=args.threads
            )
        config = models["torch fp32"].config
        common.print_header(
            f"GGUF / llama.cpp against torch generate: 7B widths, {args.layers} layers, batch 1, "
            f"{args.threads} thread(s)"
        )
        decode = decode_speed(args, models, config)
        errors = logit_errors(models, config)
        rows = []
        for name, (wall, cpu) in decode.items():
            ratios = [
                statistics.median(b / s for s, b in zip(seconds, decode["torch bf16"][index]))
                for index, seconds in enumerate((wall, cpu))
            ]
            median = statistics.median(wall)
            error, relative = errors[name]
            size = sizes.get(name.removeprefix("llama.cpp "))
            rows.append(
                [
                    name,
                    f"{1 / median:.1f}",
                    f"{1 / statistics.median(cpu):.1f}",
                    f"{ratios[0]:.2f}x / {ratios[1]:.2f}x",
                    f"{min(wall) / median - 1:+.0%} .. {max(wall) / median - 1:+.0%}",
                    f"{error:.2e} ({relative:.1e})",
                    "" if size is None else f"{size / 2**20:.0f}",
                ]
            )
        common.print_table(
            [
                "model",
                "tokens/s (wall)",
                "tokens / CPU s",
                "vs torch bf16 (wall / CPU)",
                "wall spread",
                "max |logit error| vs fp32 (/ std)",
                "file MiB",
            ],
            rows,
        )
        print(
            f"decode: ({args.new_tokens} tokens - 1 token) / {args.new_tokens - 1}, greedy, prompt "
            f"{args.prompt_tokens} tokens, median of {args.repeats} interleaved rounds; vs torch bf16: median of the "
            f"per-round ratios; llama.cpp context {N_CTX} tokens, KV cache f16 (f32 for an f32 file)"
        )

        pipes = {
            name: pipeline("spirit-lm", model=models[name], processor=str(repo), device="cpu")
            for name in ["torch bf16", "torch fp32", *(f"llama.cpp {t}" for t in GGUF_BENCH_TYPES)]
        }
        first_audio = time_to_first_audio(args, pipes)
        common.print_table(
            ["model", "time to first audio (s)", "vs torch bf16"],
            [
                [
                    name,
                    f"{statistics.median(seconds):.3f}",
                    f"{statistics.median(b / s for s, b in zip(seconds, first_audio['torch bf16'])):.2f}x",
                ]
                for name, seconds in first_audio.items()
            ],
        )
        print(
            "time to first audio: pipe.stream of a speech answer to a 100-unit prompt, sampling (seed 0), first chunk "
            "of 5 units vocoded by the tiny vocoder; median of interleaved rounds"
        )
        del pipes, models

        memory_rows = []
        imports = common.python_child(MEMORY_CHILD, "imports", str(repo), "-", str(args.threads)).peak_rss
        for name in ["torch bf16", "torch fp32", *(f"llama.cpp {t}" for t in GGUF_BENCH_TYPES)]:
            path = str(files.get(name.removeprefix("llama.cpp "), "-"))
            peak = common.python_child(MEMORY_CHILD, name, str(repo), path, str(args.threads)).peak_rss
            memory_rows.append([name, f"{peak / 2**20:.0f}", f"{(peak - imports) / 2**20:.0f}"])
        common.print_table(["model", "peak RSS MiB", "above the imports MiB"], memory_rows)
        print(
            f"peak RSS of a child that loads the model and generates 8 tokens; imports alone: {imports / 2**20:.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
