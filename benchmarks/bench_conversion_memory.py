"""Peak memory of the language-model conversion, as a ratio to the checkpoint size.

Writes a random Llama-shaped official checkpoint of about `--size-gb` GB (bfloat16, the 7B's vocabulary and width
ratios, fewer layers), converts it in a child process (`conversion/convert_lm.py`) and prints that child's peak RSS
divided by the checkpoint size. The conversion streams tensor by tensor, so the ratio stays well under 1.5 (the
target): the interpreter and library baseline plus about one tensor. Both steps run in their own processes (this one
imports no torch) so that no other memory is counted.

    python benchmarks/bench_conversion_memory.py [--size-gb 1.0] [--dtype bfloat16|float32] [--workdir DIR]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

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


def _peak_rss_of(command: list[str]) -> int:
    """Runs `command` and returns its peak resident memory in bytes."""
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)
    return usage.ru_maxrss * 1024  # kilobytes on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--workdir", help="where to write the checkpoints (default: a temporary folder)")
    parser.add_argument("--write-only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_only:
        write_checkpoint(Path(args.write_only), args.size_gb)
        return
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        official, converted = Path(workdir) / "official", Path(workdir) / "converted"
        subprocess.run(
            [sys.executable, __file__, "--write-only", str(official), "--size-gb", str(args.size_gb)], check=True
        )
        size = (official / "pytorch_model.bin").stat().st_size
        script = Path(__file__).resolve().parents[1] / "conversion" / "convert_lm.py"
        command = [sys.executable, str(script), "--input-dir", str(official), "--output-dir", str(converted)]
        command += [
            "--variant",
            "expressive",
            "--text-vocab-size",
            "32000",
            "--dtype",
            args.dtype,
            "--max-shard-size",
            "400MB",
        ]
        peak = _peak_rss_of(command)
        output = sum(path.stat().st_size for path in converted.glob("*.safetensors"))
    print(f"checkpoint      {size / 1e9:8.3f} GB (bfloat16 pytorch_model.bin)")
    print(f"converted       {output / 1e9:8.3f} GB ({args.dtype} safetensors)")
    print(f"peak RSS        {peak / 1e9:8.3f} GB")
    print(f"peak RSS / size {peak / size:8.2f}  (target < 1.5)")


if __name__ == "__main__":
    main()
