"""Convert the official SPIRIT LM language model to a [`SpiritLMForCausalLM`] checkpoint.

Input: `checkpoints/spiritlm_model/spirit-lm-{variant}-7b/` with `config.json` (a transformers 4.x `LlamaConfig`),
`generation_config.json` and `pytorch_model.bin` (a `LlamaForCausalLM` state dict; a `pytorch_model.bin.index.json`
with `pytorch_model-*.bin` shards works too). Output: `config.json` with the SPIRIT LM fields,
`generation_config.json` and `model.safetensors` (or `model-0000k-of-0000n.safetensors` + index when larger than
`max_shard_size`).

The weights stream through: each pickle is opened memory-mapped (`torch.load(..., mmap=True, weights_only=True)`),
and tensors are cast and written one at a time into the safetensors files, the pages of each tensor released once
written. Memory stays near one tensor, never two copies of the model.

    python conversion/convert_lm.py --input-dir CKPT/spiritlm_model/spirit-lm-base-7b --variant base \
        --text-vocab-size 32000 --output-dir OUT
"""

import argparse
import ctypes
import json
import mmap
import pickle
import struct
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, LlamaConfig
from transformers.utils.hub import convert_file_size_to_int

from transformers_spiritlm.configuration_spiritlm import VARIANTS, SpiritLMConfig
from transformers_spiritlm.conversion import ConversionError, read_json
from transformers_spiritlm.modeling_spiritlm import SpiritLMForCausalLM


# bfloat16: the official weights' range, for CPUs and GPUs with bfloat16 (Ampere and later); float16: GPUs without
# bfloat16 (T4, V100), checked for overflow; float32: exact, twice the size.
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
DEFAULT_MAX_SHARD_SIZE = "5GB"
SAFETENSORS_DTYPES = {torch.bfloat16: "BF16", torch.float32: "F32", torch.float16: "F16"}
# Buffers older transformers versions saved with the weights; the model recomputes them.
_IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)
_MADV_DONTNEED = 4


class LMConversionError(ConversionError):
    """The official language model files are unreadable or inconsistent."""


def _read_json(path: Path) -> dict:
    return read_json(path, "language model", LMConversionError)


def convert_lm_config(
    official: dict, variant: str, text_vocab_size: int, dtype: str = "bfloat16", pad_token_id: int = 0
) -> SpiritLMConfig:
    """
    Maps an official `config.json` (a `LlamaConfig` dict) to a [`SpiritLMConfig`]. BASE has no pitch or style tokens
    (its vocabulary, 32512, stops after the hubert units); EXPRESSIVE has 64 and 100. Llama 2 has no padding token:
    `pad_token_id` (default `<unk>`, 0) becomes the padding id.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {', '.join(map(repr, VARIANTS))}")
    if official.get("model_type") != "llama":
        raise LMConversionError(f"the official config.json has model_type={official.get('model_type')!r}, not 'llama'")
    llama = LlamaConfig.from_dict(dict(official)).to_dict()
    for key in ("model_type", "architectures", "transformers_version", "_name_or_path", "dtype"):
        llama.pop(key, None)
    if llama.get("pad_token_id") is None or llama["pad_token_id"] < 0:
        llama["pad_token_id"] = pad_token_id
    num_pitch_units, num_style_units = (64, 100) if variant == "expressive" else (0, 0)
    try:
        config = SpiritLMConfig(
            variant=variant,
            text_vocab_size=text_vocab_size,
            num_pitch_units=num_pitch_units,
            num_style_units=num_style_units,
            **llama,
        )
    except ValueError as error:
        raise LMConversionError(f"the official config.json does not fit the {variant} tokenizer: {error}") from None
    config.architectures = ["SpiritLMForCausalLM"]
    config.dtype = dtype
    return config


def _weight_files(input_dir: Path) -> list[Path]:
    single = input_dir / "pytorch_model.bin"
    if single.is_file():
        return [single]
    index_path = input_dir / "pytorch_model.bin.index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"official language model file not found: {single}")
    weight_map = _read_json(index_path).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise LMConversionError(f"{index_path} has no weight_map")
    files = [input_dir / name for name in dict.fromkeys(weight_map.values())]
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"official language model file not found: {path} (listed in {index_path.name})")
    return files


def _load_mmap(path: Path) -> dict[str, torch.Tensor]:
    # Only zip checkpoints (torch >= 1.6) can be memory-mapped, which _release_pages relies on.
    if not zipfile.is_zipfile(path):
        raise LMConversionError(f"{path} is truncated or corrupt, re-download it (not a complete zip checkpoint)")
    try:
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise LMConversionError(f"{path} is truncated or corrupt, re-download it ({reason})") from None
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise LMConversionError(f"{path} is not a state dict of tensors")
    return state


def _release_pages(tensor: torch.Tensor) -> None:
    """Drops the resident pages of a tensor memory-mapped from a checkpoint (Linux; elsewhere a no-op). The mapping
    is private and never written, so the kernel re-reads the file if the pages are touched again."""
    if not sys.platform.startswith("linux"):
        return
    storage = tensor.untyped_storage()
    start = storage.data_ptr() - storage.data_ptr() % mmap.PAGESIZE
    length = storage.data_ptr() + storage.nbytes() - start
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(length), _MADV_DONTNEED)


@contextmanager
def open_official_weights(input_dir: str | Path) -> Iterator[dict[str, torch.Tensor]]:
    """Memory-maps every official weight file of `input_dir`; yields `{name: tensor}` (nothing read yet)."""
    tensors = {}
    for path in _weight_files(Path(input_dir)):
        tensors.update(_load_mmap(path))
    try:
        yield tensors
    finally:
        tensors.clear()


def _check_weights(tensors: dict[str, torch.Tensor], config: SpiritLMConfig, where: Path) -> list[str]:
    """The model's parameter names, in its order, after checking that the checkpoint has exactly them."""
    with torch.device("meta"):
        expected = {name: tuple(tensor.shape) for name, tensor in SpiritLMForCausalLM(config).state_dict().items()}
    missing = [name for name in expected if name not in tensors]
    unexpected = [name for name in tensors if name not in expected and not name.endswith(_IGNORED_SUFFIXES)]
    if missing or unexpected:
        raise LMConversionError(
            f"the weights in {where} do not match config.json: missing {missing[:4]}, unexpected {unexpected[:4]}"
        )
    wrong = [
        f"{name} {tuple(tensors[name].shape)} != {shape}"
        for name, shape in expected.items()
        if tuple(tensors[name].shape) != shape
    ]
    if wrong:
        raise LMConversionError(f"the weights in {where} do not match config.json: {'; '.join(wrong[:3])}")
    return list(expected)


def _plan_shards(
    names: list[str], tensors: dict[str, torch.Tensor], dtype: torch.dtype, max_bytes: int
) -> list[list[str]]:
    shards, size = [[]], 0
    for name in names:
        nbytes = tensors[name].numel() * dtype.itemsize
        if shards[-1] and size + nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    return shards


def _write_safetensors(
    path: Path, names: list[str], tensors: dict[str, torch.Tensor], dtype: torch.dtype, bar: tqdm
) -> None:
    """Writes one safetensors file tensor by tensor: the header is computed from shapes, then each tensor is cast,
    written and released before the next one is read."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name in names:
        nbytes = tensors[name].numel() * dtype.itemsize
        header[name] = {
            "dtype": SAFETENSORS_DTYPES[dtype],
            "shape": list(tensors[name].shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    with open(path, "wb") as file:
        file.write(struct.pack("<Q", len(header_bytes)))
        file.write(header_bytes)
        for name in names:
            source = tensors[name]
            converted = source.to(dtype).contiguous()
            if dtype == torch.float16 and not torch.isfinite(converted).all() and torch.isfinite(source).all():
                raise ValueError(
                    f"{name} has values beyond float16's range (|x| > 65504); convert with --dtype bfloat16 or float32"
                )
            file.write(converted.reshape(-1).view(torch.uint8).numpy().data)
            bar.update(converted.numel() * dtype.itemsize)
            del converted
            _release_pages(source)


def convert_lm(
    input_dir: str | Path,
    output_dir: str | Path,
    variant: str,
    text_vocab_size: int,
    dtype: str = "bfloat16",
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    progress: bool = False,
) -> SpiritLMConfig:
    """
    Converts the official language model in `input_dir` into `output_dir` (config, generation config, safetensors
    shards of at most `max_shard_size`, e.g. `"5GB"`) and returns the config. `text_vocab_size` comes from the
    tokenizer (32000 for the official files); `progress` shows a progress bar. Raises `FileNotFoundError` for a missing file and `LMConversionError`
    (a `ValueError`) for a corrupt or inconsistent one.
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(map(repr, DTYPES))}")
    if sys.byteorder != "little":
        raise RuntimeError("safetensors files are little-endian; convert on a little-endian machine")
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    max_bytes = convert_file_size_to_int(max_shard_size) if isinstance(max_shard_size, str) else int(max_shard_size)
    official = _read_json(input_dir / "config.json")
    config = convert_lm_config(official, variant, text_vocab_size, dtype)
    generation_path = input_dir / "generation_config.json"
    generation = (
        GenerationConfig.from_dict(_read_json(generation_path)) if generation_path.is_file() else GenerationConfig()
    )
    if generation.pad_token_id is None or generation.pad_token_id < 0:
        generation.pad_token_id = config.pad_token_id
    generation.bos_token_id = generation.bos_token_id if generation.bos_token_id is not None else config.bos_token_id
    generation.eos_token_id = generation.eos_token_id if generation.eos_token_id is not None else config.eos_token_id

    output_dir.mkdir(parents=True, exist_ok=True)
    torch_dtype = DTYPES[dtype]
    with open_official_weights(input_dir) as tensors:
        names = _check_weights(tensors, config, input_dir)
        shards = _plan_shards(names, tensors, torch_dtype, max_bytes)
        total_size = sum(tensors[name].numel() for name in names) * torch_dtype.itemsize
        bar = tqdm(
            total=total_size, unit="B", unit_scale=True, desc="language model", disable=None if progress else True
        )
        if len(shards) == 1:
            _write_safetensors(output_dir / "model.safetensors", names, tensors, torch_dtype, bar)
        else:
            weight_map = {}
            for index, shard in enumerate(shards, start=1):
                file_name = f"model-{index:05d}-of-{len(shards):05d}.safetensors"
                _write_safetensors(output_dir / file_name, shard, tensors, torch_dtype, bar)
                weight_map.update(dict.fromkeys(shard, file_name))
            index_json = {"metadata": {"total_size": total_size}, "weight_map": weight_map}
            (output_dir / "model.safetensors.index.json").write_text(json.dumps(index_json, indent=2) + "\n")
        bar.close()
    config.save_pretrained(output_dir)
    generation.save_pretrained(output_dir)
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input-dir", required=True, help="official spiritlm_model/spirit-lm-{variant}-7b folder")
    parser.add_argument("--variant", required=True, choices=VARIANTS)
    parser.add_argument(
        "--text-vocab-size", type=int, default=32000, help="text pieces before [Text] (official: 32000)"
    )
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--dtype", default="bfloat16", choices=list(DTYPES))
    parser.add_argument("--max-shard-size", default=DEFAULT_MAX_SHARD_SIZE, help='e.g. "5GB", "500MB"')
    args = parser.parse_args(argv)
    convert_lm(
        args.input_dir, args.output_dir, args.variant, args.text_vocab_size, args.dtype, args.max_shard_size, True
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
