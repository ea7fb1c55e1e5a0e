"""Peak memory of the language-model conversion, as a ratio to the checkpoint size.

Writes a random Llama-shaped official checkpoint of about `--size-gb` GB (bfloat16, the 7B's vocabulary and width
ratios, fewer layers), converts it in a child process (`conversion/convert_lm.py`) to each output dtype and prints that
child's peak RSS divided by the checkpoint size. The conversion streams tensor by tensor, so the ratio stays well
under 1.5 (the target): the interpreter and library baseline plus about one tensor.

    python benchmarks/bench_conversion_memory.py [--size-gb 1.0] [--dtypes bfloat16 float32] [--workdir DIR]
"""

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import common


HIDDEN, INTERMEDIATE, VOCAB, HEADS = 2048, 5504, 32768, 16


def write_checkpoint(directory: Path, size_gb: float) -> int:
    """Writes config.json, generation_config.json and pytorch_model.bin (bfloat16); returns the .bin size in bytes."""
    import torch

    per_layer = (4 * HIDDEN * HIDDEN + 3 * HIDDEN * INTERMEDIATE + 2 * HIDDEN) * 2
    layers = max(1, round((size_gb * 1e9 - 2 * VOCAB * HIDDEN * 2) / per_layer))
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_attention_heads": HEADS,
        "num_key_value_heads": HEADS,
        "num_hidden_layers": layers,
        "vocab_size": VOCAB,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
    generator = torch.Generator().manual_seed(0)

    def tensor(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float32).to(torch.bfloat16)

    state = {"model.embed_tokens.weight": tensor(VOCAB, HIDDEN)}
    for layer in range(layers):
        prefix = f"model.layers.{layer}."
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            state[f"{prefix}self_attn.{name}.weight"] = tensor(HIDDEN, HIDDEN)
        state[f"{prefix}mlp.gate_proj.weight"] = tensor(INTERMEDIATE, HIDDEN)
        state[f"{prefix}mlp.up_proj.weight"] = tensor(INTERMEDIATE, HIDDEN)
        state[f"{prefix}mlp.down_proj.weight"] = tensor(HIDDEN, INTERMEDIATE)
        state[f"{prefix}input_layernorm.weight"] = tensor(HIDDEN)
        state[f"{prefix}post_attention_layernorm.weight"] = tensor(HIDDEN)
    state["model.norm.weight"] = tensor(HIDDEN)
    state["lm_head.weight"] = tensor(VOCAB, HIDDEN)
    torch.save(state, directory / "pytorch_model.bin")
    return (directory / "pytorch_model.bin").stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"], choices=["bfloat16", "float32"])
    parser.add_argument("--workdir", help="where to write the checkpoints (default: a temporary folder)")
    parser.add_argument("--write-only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_only:
        write_checkpoint(Path(args.write_only), args.size_gb)
        return 0
    common.print_header(
        "language model conversion: peak RSS / checkpoint size (target < 1.5)",
        notes=["bfloat16 pytorch_model.bin, Llama-2 widths, fewer layers; peak = the converter process's VmHWM"],
    )
    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        official = Path(workdir) / "official"
        writer = common.run_child(
            [sys.executable, __file__, "--write-only", str(official), "--size-gb", str(args.size_gb)]
        )
        if writer.returncode:
            raise RuntimeError(f"writing the checkpoint failed:\n{writer.stderr[-4000:]}")
        size = (official / "pytorch_model.bin").stat().st_size
        script = Path(__file__).resolve().parents[1] / "conversion" / "convert_lm.py"
        for dtype in args.dtypes:
            converted = Path(workdir) / f"converted-{dtype}"
            command = [sys.executable, str(script), "--input-dir", str(official), "--output-dir", str(converted)]
            command += ["--variant", "expressive", "--text-vocab-size", "32000", "--dtype", dtype]
            result = common.run_child([*command, "--max-shard-size", "400MB"])
            if result.returncode:
                raise RuntimeError(f"the conversion failed:\n{result.stderr[-4000:]}")
            output = sum(path.stat().st_size for path in converted.glob("*.safetensors"))
            rows.append(
                [dtype, f"{size / 1e9:.3f}", f"{output / 1e9:.3f}", f"{result.seconds:.1f}",
                 f"{result.peak_rss / 1e9:.3f}", f"{result.peak_rss / size:.2f}"]
            )  # fmt: skip
            shutil.rmtree(converted)
    common.print_table(["output dtype", "checkpoint GB", "output GB", "seconds", "peak RSS GB", "peak / size"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
