"""Convert the official SPIRIT LM download into a Hugging Face repo that `from_pretrained` and
`pipeline("spirit-lm")` load as is.

Input: the official `checkpoints/` folder, as Meta distributes it:

    checkpoints/
      speech_tokenizer/
        hubert_25hz/mhubert_base_25hz.pt, hubert_25hz/L11_quantizer_500.pt    # HuBERT and its unit quantizer
        vqvae_f0_quantizer/config.yaml, model.pt                              # pitch units (EXPRESSIVE)
        style_encoder_w2v2/config.json, pytorch_model.bin                     # style units (EXPRESSIVE)
        hifigan_spiritlm_base/config.json, generator.pt, speakers.txt, styles.txt
        hifigan_spiritlm_expressive_w2v2/config.json, generator.pt, speakers.txt
      spiritlm_model/
        spirit-lm-base-7b/, spirit-lm-expressive-7b/    # config.json, generation_config.json, pytorch_model.bin,
                                                        # special_tokens_map.json, tokenizer_config.json, tokenizer.model

Output (`--output-dir`), the converted repo:

    config.json  generation_config.json  model.safetensors (or shards + index)   # SpiritLMForCausalLM
    tokenizer.json  tokenizer_config.json  special_tokens_map.json              # fast tokenizer with the unit tokens
    preprocessor_config.json  processor_config.json                             # SpiritLMProcessor
    speech_tokenizer/config.json  speech_tokenizer/model.safetensors            # SpiritLMSpeechTokenizer
    vocoder/config.json  vocoder/model.safetensors                              # SpiritLMVocoder
    spiritlm_remote.py                                                          # auto_map target (trust_remote_code)
    README.md                                                                   # model card

    python conversion/convert_spiritlm_to_hf.py --checkpoints-dir CKPT --variant {base,expressive} --output-dir OUT \
        [--dtype bfloat16|float16|float32] [--max-shard-size 5GB] [--fcpe-checkpoint PATH] [--push-to-hub REPO_ID] \
        [--force]

Everything is written into a hidden temporary folder next to `--output-dir` and renamed into place only after every
part converted and passed the self-check (reload, tokenizer ids against a SentencePiece reading of the official
files, one LM forward, encode 1 s of audio, vocode it), so an interrupted run never leaves a half-written repo.
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from transformers_spiritlm.configuration_spiritlm import VARIANTS, VOCODER_SUBFOLDER
from transformers_spiritlm.conversion.convert_lm import DEFAULT_MAX_SHARD_SIZE, DTYPES, convert_lm
from transformers_spiritlm.conversion.convert_tokenizer import (
    SlowTokenizerReference,
    convert_tokenizer,
    pieces_encoded_differently,
)
from transformers_spiritlm.remote_code import add_auto_map


LM_DIRS = {"base": "spirit-lm-base-7b", "expressive": "spirit-lm-expressive-7b"}
VOCODER_DIRS = {"base": "hifigan_spiritlm_base", "expressive": "hifigan_spiritlm_expressive_w2v2"}
MODEL_CARDS_DIR = Path(__file__).resolve().parents[1] / "model_cards"
REPO_NAMES = {"base": "spiritlm-base", "expressive": "spiritlm-expressive"}
SELF_CHECK_PROBES = {
    "base": "[Text]Hello world, 123![Speech][Hu0][Hu99][Hu500][Text] and back",
    "expressive": "[Text]Hello world, 123![Speech][St71][Pi39][Hu0][Hu99][Pi63][Hu500][St99][Text] and back",
}
_PARTIAL_SUFFIX = ".partial"


def official_files(variant: str) -> list[Path]:
    """Files of the official `checkpoints/` folder the conversion of `variant` reads (relative paths)."""
    speech = Path("speech_tokenizer")
    lm = Path("spiritlm_model", LM_DIRS[variant])
    vocoder = speech / VOCODER_DIRS[variant]
    files = [speech / "hubert_25hz" / "mhubert_base_25hz.pt", speech / "hubert_25hz" / "L11_quantizer_500.pt"]
    if variant == "expressive":
        files += [speech / "vqvae_f0_quantizer" / name for name in ("config.yaml", "model.pt")]
        files += [speech / "style_encoder_w2v2" / name for name in ("config.json", "pytorch_model.bin")]
    files += [vocoder / name for name in ("config.json", "generator.pt", "speakers.txt")]
    if variant == "base":
        files.append(vocoder / "styles.txt")
    lm_files = ("config.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json")
    files += [lm / name for name in lm_files]
    return files


def check_official_files(checkpoints_dir: Path, variant: str) -> None:
    """Raises `FileNotFoundError` naming the first missing file (the LM weights may be one file or index + shards)."""
    if not checkpoints_dir.is_dir():
        raise FileNotFoundError(f"--checkpoints-dir {checkpoints_dir} is not a folder")
    missing = [path for path in official_files(variant) if not (checkpoints_dir / path).is_file()]
    lm_dir = checkpoints_dir / "spiritlm_model" / LM_DIRS[variant]
    if not (lm_dir / "pytorch_model.bin").is_file() and not (lm_dir / "pytorch_model.bin.index.json").is_file():
        missing.append(lm_dir.relative_to(checkpoints_dir) / "pytorch_model.bin")
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"official checkpoint file not found: {checkpoints_dir / missing[0]}{more}")


def model_card(variant: str, repo_id: str) -> str:
    """`model_cards/spiritlm-{variant}.md` with the Hugging Face metadata front matter, loading from `repo_id`."""
    path = MODEL_CARDS_DIR / f"{REPO_NAMES[variant]}.md"
    if not path.is_file():
        raise FileNotFoundError(f"model card not found: {path} (run the conversion from a checkout of the repo)")
    front_matter = [
        "---",
        "license: other",
        "license_name: fair-noncommercial-research-license",
        "license_link: https://github.com/facebookresearch/spiritlm/blob/main/LICENSE",
        "language:",
        "- en",
        "library_name: transformers",
        "base_model: meta-llama/Llama-2-7b-hf",
        "tags:",
        "- spirit-lm",
        "- speech",
        "- text-to-speech",
        "- automatic-speech-recognition",
        "- llama-2",
        "---",
        "",
    ]
    return "\n".join(front_matter) + path.read_text(encoding="utf-8").replace("REPO_ID", repo_id)


def write_special_tokens_map(repo_dir: Path, tokenizer) -> None:
    """`special_tokens_map.json` of the repo layout (transformers 5 keeps the same tokens in tokenizer_config.json)."""
    names = ("bos_token", "eos_token", "unk_token", "pad_token")
    tokens = {name: str(getattr(tokenizer, name)) for name in names if getattr(tokenizer, name) is not None}
    (repo_dir / "special_tokens_map.json").write_text(json.dumps(tokens, indent=2) + "\n")


def _self_check_audio(sampling_rate: int = 16000) -> np.ndarray:
    """One second of a 220 Hz tone with a little noise: voiced, so pitch extraction has something to track."""
    time_axis = np.arange(sampling_rate) / sampling_rate
    noise = np.random.default_rng(0).standard_normal(sampling_rate)
    return (0.3 * np.sin(2 * np.pi * 220 * time_axis) + 0.01 * noise).astype(np.float32)


def self_check(repo_dir: Path, official_tokenizer, variant: str) -> list[tuple[str, str, str]]:
    """
    Reloads every part of the converted repo in `repo_dir` through the public API and runs it once. Returns the
    summary rows `(part, check, result)`; raises `RuntimeError` when a check fails.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoProcessor

    from transformers_spiritlm import SpiritLMConfig
    from transformers_spiritlm.vocoder import load_vocoder

    rows = []
    config = AutoConfig.from_pretrained(repo_dir)
    if not isinstance(config, SpiritLMConfig) or config.variant != variant:
        raise RuntimeError(f"self-check: config.json reloads as {type(config).__name__} ({config.variant!r})")
    rows.append(
        ("config", "AutoConfig", f"{config.variant}, vocab {config.vocab_size}, [Text]={config.text_token_id}")
    )

    processor = AutoProcessor.from_pretrained(repo_dir)
    probe = SELF_CHECK_PROBES[variant]
    ids = processor.tokenizer(probe).input_ids
    expected = SlowTokenizerReference(official_tokenizer).encode(probe)
    if ids != expected:
        raise RuntimeError(f"self-check: tokenizer ids {ids} differ from the official tokenizer's {expected}")
    rows.append(("tokenizer", "probe ids == official (SentencePiece)", f"{len(ids)} ids equal"))
    differing = pieces_encoded_differently(processor.tokenizer, official_tokenizer)
    result = f"{len(differing)} differ: {', '.join(map(repr, differing[:5]))}" if differing else "all equal"
    rows.append(("tokenizer", "each text piece after a marker", result))

    model = AutoModelForCausalLM.from_pretrained(repo_dir).eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    if logits.shape != (1, len(ids), config.vocab_size) or not torch.isfinite(logits).all():
        raise RuntimeError(f"self-check: LM forward gave logits of shape {tuple(logits.shape)} with non-finite values")
    parameters = sum(parameter.numel() for parameter in model.parameters())
    rows.append(("language model", "one forward", f"{parameters / 1e6:.1f}M params, {model.dtype}, logits finite"))
    del model

    speech_tokenizer = processor.speech_tokenizer
    units = speech_tokenizer.encode_units(_self_check_audio(), sampling_rate=16000)
    if set(units) != set(config.unit_types) or not units["hubert"]:
        raise RuntimeError(f"self-check: 1 s of audio gave unit streams {sorted(units)}, expected {config.unit_types}")
    counts = ", ".join(f"{len(values)} {name}" for name, values in units.items())
    rows.append(("speech tokenizer", "encode 1 s of audio", counts))

    vocoder = load_vocoder(repo_dir)
    waveform = vocoder.decode_string(speech_tokenizer.encode_string(_self_check_audio(), sampling_rate=16000))
    if waveform.ndim != 1 or not len(waveform) or not torch.isfinite(waveform).all():
        raise RuntimeError(f"self-check: the vocoder gave a waveform of shape {tuple(waveform.shape)}")
    rows.append(("vocoder", "vocode the units", f"{len(waveform) / vocoder.config.sampling_rate:.2f} s of audio"))
    return rows


def format_summary(rows: list[tuple[str, str, str]]) -> str:
    widths = [max(len(row[column]) for row in [("part", "check", "result"), *rows]) for column in range(3)]
    lines = [("part", "check", "result"), tuple("-" * width for width in widths), *rows]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)


def _remove_stale_partials(output_dir: Path, log: Callable[[str], None]) -> None:
    for stale in output_dir.parent.glob(f".{output_dir.name}.*{_PARTIAL_SUFFIX}"):
        log(f"removing {stale}, left by an interrupted conversion")
        shutil.rmtree(stale, ignore_errors=True)


def _move_into_place(partial: Path, output_dir: Path) -> None:
    """Renames the finished conversion to `output_dir`; an existing one is moved aside first and deleted after."""
    if output_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", suffix=".old", dir=output_dir.parent))
        output_dir.rename(old / output_dir.name)
        partial.rename(output_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        partial.rename(output_dir)


def convert_spiritlm_to_hf(
    checkpoints_dir: str | Path,
    variant: str,
    output_dir: str | Path,
    dtype: str = "bfloat16",
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    fcpe_checkpoint: str | Path | None = None,
    force: bool = False,
    push_to_hub: str | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """
    Converts the official `checkpoints_dir` (layout in the module docstring) for `variant` into a Hugging Face repo at
    `output_dir` and returns its path. `dtype` is the language model's (the speech tokenizer and vocoder stay
    float32); `fcpe_checkpoint` is the FCPE `.pt` or torchfcpe wheel for EXPRESSIVE pitch (default: the installed
    torchfcpe's). Refuses an existing `output_dir` unless `force`. `push_to_hub` uploads the result to that repo id.

    Raises `FileNotFoundError` for a missing file, `FileExistsError` for an existing output without `force`, and a
    `ValueError` for a corrupt or non-official file; nothing is left at `output_dir` then.
    """
    from transformers_spiritlm import SpiritLMFeatureExtractor, SpiritLMProcessor
    from transformers_spiritlm.conversion.convert_speech_tokenizer import convert_speech_tokenizer
    from transformers_spiritlm.conversion.convert_vocoder import convert_vocoder

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {', '.join(map(repr, VARIANTS))}")
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(map(repr, DTYPES))}")
    checkpoints_dir, output_dir = Path(checkpoints_dir), Path(output_dir).absolute()
    if output_dir.exists() and not force:
        raise FileExistsError(f"{output_dir} already exists; pass --force to replace it")
    check_official_files(checkpoints_dir, variant)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(output_dir, log)
    partial = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", suffix=_PARTIAL_SUFFIX, dir=output_dir.parent))
    lm_dir = checkpoints_dir / "spiritlm_model" / LM_DIRS[variant]
    start = time.perf_counter()
    try:
        # The small parts first, so that a bad file fails the run before the long language model conversion.
        card = model_card(variant, push_to_hub or f"path/to/{output_dir.name}")
        log(f"tokenizer: {lm_dir}")
        tokenizer, official_tokenizer = convert_tokenizer(lm_dir, variant)
        log("speech tokenizer: HuBERT" + (", pitch, style" if variant == "expressive" else ""))
        speech_tokenizer = convert_speech_tokenizer(checkpoints_dir, variant=variant, fcpe_checkpoint=fcpe_checkpoint)
        SpiritLMProcessor(SpiritLMFeatureExtractor(), tokenizer, speech_tokenizer=speech_tokenizer).save_pretrained(
            partial
        )
        write_special_tokens_map(partial, tokenizer)
        log(f"vocoder: {VOCODER_DIRS[variant]}")
        convert_vocoder(checkpoints_dir / "speech_tokenizer" / VOCODER_DIRS[variant], partial / VOCODER_SUBFOLDER)
        (partial / "README.md").write_text(card, encoding="utf-8")
        log(f"language model: {lm_dir} -> {dtype} safetensors")
        convert_lm(lm_dir, partial, variant, official_tokenizer.text_vocab_size, dtype, max_shard_size, progress=True)
        add_auto_map(partial)
        log("self-check: reloading every part")
        rows = self_check(partial, official_tokenizer, variant)
        _move_into_place(partial, output_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log(format_summary(rows))
    log(f"converted {variant} in {time.perf_counter() - start:.0f} s: {output_dir}")
    if push_to_hub:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(push_to_hub, exist_ok=True)
        api.upload_folder(repo_id=push_to_hub, folder_path=output_dir, commit_message=f"SPIRIT LM {variant}")
        log(f"pushed to https://huggingface.co/{push_to_hub}")
    return output_dir


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spiritlm convert",
        description=__doc__.split("\n\n")[0].replace("\n", " "),
    )
    parser.add_argument("--checkpoints-dir", required=True, help="the official checkpoints/ folder")
    parser.add_argument("--variant", required=True, choices=VARIANTS)
    parser.add_argument("--output-dir", required=True, help="the repo folder to write")
    parser.add_argument(
        "--dtype",
        default="bfloat16",
        choices=list(DTYPES),
        help="language model dtype: bfloat16 for CPUs and GPUs that have it (A100, RTX 30xx and later), float16 for "
        "GPUs without bfloat16 (T4, V100), float32 for exact results at twice the size; the speech tokenizer and "
        "vocoder stay float32 (default: %(default)s)",
    )
    parser.add_argument(
        "--max-shard-size",
        default=DEFAULT_MAX_SHARD_SIZE,
        help="safetensors shard size (default: %(default)s)",
    )
    parser.add_argument("--fcpe-checkpoint", help="FCPE weights (.pt or torchfcpe wheel) for EXPRESSIVE pitch")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the converted repo to this Hub repo")
    parser.add_argument("--force", action="store_true", help="replace an existing --output-dir")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (also `spiritlm convert`); returns the exit status. Errors print one line."""
    args = build_parser().parse_args(argv)
    try:
        convert_spiritlm_to_hf(
            args.checkpoints_dir,
            args.variant,
            args.output_dir,
            dtype=args.dtype,
            max_shard_size=args.max_shard_size,
            fcpe_checkpoint=args.fcpe_checkpoint,
            force=args.force,
            push_to_hub=args.push_to_hub,
        )
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as error:
        print(f"spiritlm convert: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
