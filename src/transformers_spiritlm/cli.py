"""The `spiritlm` command line: demo | tokenize | resynthesize | generate | convert.

Each subcommand is a thin layer over the library (pipeline, processor, speech tokenizer, vocoder); the functions
`find_audio_files` / `tokenize_files` / `write_jsonl` are reusable building blocks of `tokenize`.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import soundfile
import torch
from tqdm.auto import tqdm

from . import __version__


# Made once with espeak-ng 1.51 and sox: `espeak-ng -v en-us -s 160 -w q.wav "What is the capital of France?"` then
# `sox q.wav -r 16000 -b 16 -c 1 demo_prompt_16k.wav`.
DEMO_PROMPT_WAV = Path(__file__).parent / "assets" / "demo_prompt_16k.wav"
DEMO_PROMPT_TEXT = "What is the capital of France?"
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
_DEMO_MARKER = "demo-complete.txt"


def default_cache_dir() -> Path:
    """`$SPIRITLM_CACHE`, else `$XDG_CACHE_HOME/transformers-spiritlm`, else `~/.cache/transformers-spiritlm`."""
    if os.environ.get("SPIRITLM_CACHE"):
        return Path(os.environ["SPIRITLM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "transformers-spiritlm"


def default_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def find_audio_files(inputs: Sequence[str | os.PathLike], extensions: Sequence[str] = AUDIO_EXTENSIONS) -> list[Path]:
    """
    The audio files named by `inputs`: files are taken as given (any extension), folders are searched recursively
    for files whose extension is in `extensions` (case-insensitive), in sorted order.
    """
    extensions = tuple(ext.lower() if ext.startswith(".") else f".{ext.lower()}" for ext in extensions)
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(path for path in item.rglob("*") if path.is_file() and path.suffix.lower() in extensions)
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"{item} is neither an audio file nor a folder")
    if not files:
        raise ValueError(f"no audio files ({', '.join(extensions)}) found in {', '.join(map(str, inputs))}")
    return files


def tokenize_files(
    files: Sequence[Path], speech_tokenizer, batch_size: int = 8, progress: bool = True
) -> Iterator[dict]:
    """
    Encodes audio files with a [`SpiritLMSpeechTokenizer`], `batch_size` files per batched call, and yields one
    record per file, in order: `{"audio": path, "hubert": [...], ("pitch": [...], "style": [...]), "string": str}`,
    units NOT deduplicated (25 / 12.5 / 1 per second), `string` the deduplicated SPIRIT LM unit string. A file that
    cannot be read or encoded yields `{"audio": path, "error": message}` instead.
    """
    from .units import units_to_string

    with tqdm(total=len(files), unit="file", desc="tokenizing", disable=not progress) as bar:
        for start in range(0, len(files), batch_size):
            batch = list(files[start : start + batch_size])
            try:
                units = speech_tokenizer.encode_units([str(path) for path in batch])
            except (OSError, ValueError, TypeError):
                # One bad file fails the batched call: encode one by one to keep the others.
                units = []
                for path in batch:
                    try:
                        units.append(speech_tokenizer.encode_units(str(path)))
                    except (OSError, ValueError, TypeError) as error:
                        units.append(error)
            for path, item in zip(batch, units):
                if isinstance(item, Exception):
                    yield {"audio": str(path), "error": str(item)}
                else:
                    yield {"audio": str(path), **item, "string": units_to_string(item)}
            bar.update(len(batch))


def write_jsonl(records: Iterable[dict], output) -> tuple[int, list[dict]]:
    """Writes records without an `"error"` as JSON lines to the open text file `output`; returns how many were
    written and the failed records."""
    written, failed = 0, []
    for record in records:
        if "error" in record:
            failed.append(record)
            continue
        output.write(json.dumps(record) + "\n")
        written += 1
    return written, failed


def write_wav(path: Path, audio: np.ndarray, sampling_rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.clip(audio, -1.0, 1.0), sampling_rate, subtype="PCM_16")


def _load_pipeline(repo: str, device: str):
    from transformers import pipeline

    return pipeline("spirit-lm", model=repo, device=device)


def _demo_repo(cache_dir: Path | None) -> Path:
    """The tiny random expressive repo of the demo: built once in the cache (or in a temporary folder)."""
    from .testing import build_tiny_repo

    if cache_dir is None:
        return build_tiny_repo(Path(tempfile.mkdtemp(prefix="spiritlm-demo-")) / "tiny-expressive")
    # The cache key covers the builder's source, so a changed builder never serves a stale checkpoint.
    builder_sources = sorted(Path(__file__).with_name("testing").glob("*.py"))
    fingerprint = hashlib.sha256(b"".join(path.read_bytes() for path in builder_sources)).hexdigest()[:12]
    repo = cache_dir / f"demo-tiny-expressive-{__version__}-{fingerprint}"
    if (repo / _DEMO_MARKER).is_file():
        print(f"Using the cached tiny checkpoint in {repo}")
        return repo
    print(f"Building a tiny random-weight SPIRIT LM (expressive) in {repo} (first run only) ...")
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="building-", dir=cache_dir))
    build_tiny_repo(staging)
    (staging / _DEMO_MARKER).write_text(f"built by transformers-spiritlm {__version__}\n")
    shutil.rmtree(repo, ignore_errors=True)
    os.replace(staging, repo)
    return repo


def _describe(segment: dict) -> str:
    if segment["type"] == "text":
        return f"text:   {segment['text']!r}"
    units = segment["units"]
    shown = units if len(units) <= 70 else units[:70] + "..."
    if "audio" not in segment:
        return f"speech: units {shown}"
    seconds = len(segment["audio"]) / segment["sampling_rate"]
    return f"speech: {seconds:.2f} s of audio from units {shown}"


def _print_segments(segments: list[dict], limit: int = 6) -> None:
    for segment in segments[:limit]:
        print("  " + _describe(segment))
    if len(segments) > limit:
        print(f"  ... and {len(segments) - limit} more segments")


def run_demo(args) -> int:
    start = time.perf_counter()
    repo = args.repo or _demo_repo(None if args.no_cache else Path(args.cache_dir))
    print(f"Loading model, processor (with speech tokenizer) and vocoder from {repo} ...")
    pipe = _load_pipeline(str(repo), args.device)
    generation = {"max_new_tokens": args.max_new_tokens, "do_sample": True, "seed": args.seed}

    speech_prompt = [{"type": "speech", "audio": DEMO_PROMPT_WAV}]
    print(f"\nSpeech prompt: {DEMO_PROMPT_WAV.name} (espeak-ng: {DEMO_PROMPT_TEXT!r})")
    print(f"  as SPIRIT LM tokens: {pipe.processor.build_prompt(speech_prompt)[:100]}...")

    print("\n1) speech -> speech (output_modality='speech')")
    speech = pipe(speech_prompt, output_modality="speech", speaker_id=args.speaker_id, **generation)
    _print_segments(speech)
    audio = [segment["audio"] for segment in speech if "audio" in segment]
    output = Path(args.output)
    write_wav(output, np.concatenate(audio) if audio else np.zeros(0, np.float32), 16000)
    print(f"  wrote {output} ({sum(map(len, audio)) / 16000:.2f} s, 16 kHz)")

    print("\n2) speech -> text (output_modality='text')")
    _print_segments(pipe(speech_prompt, output_modality="text", **generation))

    print("\n3) text + speech -> anything (output_modality='arbitrary')")
    mixed = [{"type": "text", "text": "Answer:"}, *speech_prompt]
    _print_segments(pipe(mixed, output_modality="arbitrary", speaker_id=args.speaker_id, **generation))

    if args.repo is None:
        print(
            "\nThe demo model has random weights: its speech is noise and its text gibberish. The same commands run a "
            "converted checkpoint with --repo path/to/spiritlm-expressive."
        )
    print(f"Done in {time.perf_counter() - start:.1f} s.")
    return 0


def run_tokenize(args) -> int:
    from transformers import AutoModel

    from .corpus import distributed_state, process_shard, sharded_output

    # Under `accelerate launch` each process encodes its shard on its own device; the parts are merged in order.
    state = distributed_state()
    device = state.device if state.num_processes > 1 else args.device
    files = process_shard(find_audio_files(args.inputs, args.extensions.split(",")), state)
    speech_tokenizer = AutoModel.from_pretrained(args.repo, subfolder="speech_tokenizer").to(device).eval()
    records = tokenize_files(files, speech_tokenizer, args.batch_size, progress=not args.quiet)
    with sharded_output(args.output, state) as output:
        written, failed = write_jsonl(records, output)
    for record in failed:
        print(f"skipped {record['audio']}: {record['error']}", file=sys.stderr)
    where = "stdout" if args.output == "-" else args.output
    shard = f" (process {state.process_index} of {state.num_processes})" if state.num_processes > 1 else ""
    print(f"tokenized {written} of {len(files)} files into {where}{shard}", file=sys.stderr)
    return 1 if failed else 0


def run_resynthesize(args) -> int:
    from transformers import AutoModel

    from .units import units_to_string
    from .vocoder import SpiritLMVocoder

    speech_tokenizer = AutoModel.from_pretrained(args.repo, subfolder="speech_tokenizer").to(args.device).eval()
    vocoder = SpiritLMVocoder.from_pretrained(args.repo, subfolder="vocoder").to(args.device).eval()
    units = speech_tokenizer.encode_units(args.input)
    string = units_to_string(units)
    if args.through_string:
        audio = vocoder.decode_string(string, speaker_id=args.speaker_id)
    else:
        audio = vocoder(**units, speaker_id=args.speaker_id, dur_pred=False)
    write_wav(Path(args.output), audio.cpu().numpy(), vocoder.config.sampling_rate)
    print(string)
    print(f"wrote {args.output} ({len(audio) / vocoder.config.sampling_rate:.2f} s)", file=sys.stderr)
    return 0


def run_generate(args) -> int:
    if not args.segments:
        raise SystemExit("spiritlm generate: give the prompt with --text, --speech and/or --units (in order)")
    pipe = _load_pipeline(args.repo, args.device)
    kwargs = {"max_new_tokens": args.max_new_tokens, "do_sample": not args.greedy, "speaker_id": args.speaker_id}
    for name in ("seed", "temperature", "top_p"):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    result = pipe(list(args.segments), output_modality=args.output_modality, return_prompt=True, **kwargs)
    if args.print_prompt:
        print(f"prompt: {result['prompt']}")
    output = Path(args.output)
    speech_index = 0
    for segment in result["segments"]:
        print(_describe(segment))
        if "audio" in segment:
            speech_index += 1
            path = output if speech_index == 1 else output.with_name(f"{output.stem}-{speech_index}{output.suffix}")
            write_wav(path, segment["audio"], segment["sampling_rate"])
            print(f"  -> {path}")
    return 0


def run_convert(argv: list[str]) -> int:
    try:
        from .conversion.convert_spiritlm_to_hf import main as convert_main
    except ImportError as error:
        raise SystemExit(f"spiritlm convert: the conversion script is not available ({error})") from None
    status = convert_main(argv)
    return status if isinstance(status, int) else 0


class _AppendSegment(argparse.Action):
    """Appends `{"type": ..., ...}` to `namespace.segments`, keeping the order of --text / --speech / --units."""

    def __call__(self, parser, namespace, value, option_string=None):
        segments = list(getattr(namespace, "segments", None) or [])
        if option_string == "--text":
            segments.append({"type": "text", "text": value})
        elif option_string == "--speech":
            segments.append({"type": "speech", "audio": Path(value)})
        else:
            segments.append({"type": "speech", "units": value})
        namespace.segments = segments


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spiritlm",
        description=(
            "SPIRIT LM for Hugging Face Transformers: a language model that reads and writes both text and speech. "
            "Start with `spiritlm demo` (offline, tiny random model); the other commands take a converted "
            "checkpoint folder or Hub repo (--repo), made from the official weights with `spiritlm convert`."
        ),
    )
    parser.add_argument("--version", action="version", version=f"transformers-spiritlm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_device(sub):
        sub.add_argument(
            "--device", default=default_device(), help="where to run: cpu, cuda, cuda:1, mps (default: %(default)s)"
        )

    demo = commands.add_parser(
        "demo",
        help="try everything offline on a tiny random model: speech -> speech, speech -> text",
        description=(
            "Builds a tiny random-weight SPIRIT LM (expressive) checkpoint once in the cache folder, tokenizes a "
            "bundled spoken question (espeak-ng), generates a spoken continuation (written to --output) and text, "
            "and prints every segment. No download, about a minute on a laptop CPU. The outputs are noise and "
            "gibberish (random weights): the demo shows the data path, not model quality."
        ),
    )
    demo.add_argument(
        "-o", "--output", default="out.wav", help="WAV file for the generated speech (default: %(default)s)"
    )
    demo.add_argument(
        "--cache-dir",
        default=str(default_cache_dir()),
        help="where the tiny checkpoint is kept (default: %(default)s)",
    )
    demo.add_argument(
        "--no-cache", action="store_true", help="build the tiny checkpoint in a temporary folder instead"
    )
    demo.add_argument("--repo", help="run the demo on this converted checkpoint instead of the tiny random one")
    demo.add_argument(
        "--max-new-tokens", type=int, default=100, help="tokens to generate per step (default: %(default)s)"
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed of the sampling (default: %(default)s)")
    demo.add_argument("--speaker-id", type=int, default=2, help="vocoder speaker (default: %(default)s)")
    add_device(demo)
    demo.set_defaults(handler=run_demo)

    tokenize = commands.add_parser(
        "tokenize",
        help="audio files/folders -> JSON lines of speech units",
        description=(
            "Encodes audio files into SPIRIT LM speech units and writes one JSON object per file: "
            '{"audio": path, "hubert": [...], "pitch": [...], "style": [...], "string": "[St71][Pi39][Hu99]..."}. '
            "Unit lists are at 25 / 12.5 / 1 per second and not deduplicated; 'string' is what the language model "
            "reads. Audio at any rate is resampled to 16 kHz, channels are averaged. Unreadable files are skipped "
            "and listed at the end (exit code 1). Under `accelerate launch --num_processes N` every process encodes "
            "one shard of the files (on its own GPU) and the parts are merged, in order, into --output (on CPU-only "
            "machines add --multi_gpu so that accelerate starts N processes)."
        ),
    )
    tokenize.add_argument("inputs", nargs="+", help="audio files and/or folders (searched recursively)")
    tokenize.add_argument("--repo", required=True, help="converted SPIRIT LM checkpoint (uses its speech_tokenizer/)")
    tokenize.add_argument("-o", "--output", default="-", help="JSON lines file, '-' for stdout (default: %(default)s)")
    tokenize.add_argument(
        "--extensions",
        default=",".join(AUDIO_EXTENSIONS),
        help="file types searched in folders (default: %(default)s)",
    )
    tokenize.add_argument("--batch-size", type=int, default=8, help="files encoded together (default: %(default)s)")
    tokenize.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device(tokenize)
    tokenize.set_defaults(handler=run_tokenize)

    resynthesize = commands.add_parser(
        "resynthesize",
        help="audio -> speech units -> audio (hear what the units keep)",
        description=(
            "Encodes an audio file into speech units, prints their SPIRIT LM string, and synthesises speech back from "
            "them with the vocoder. By default the frame-rate units are used as they are (timing kept); "
            "--through-string decodes the deduplicated string with duration prediction, as generated speech is."
        ),
    )
    resynthesize.add_argument("input", help="audio file (wav, flac, ogg, mp3; any rate, mono or stereo)")
    resynthesize.add_argument("--repo", required=True, help="converted SPIRIT LM checkpoint")
    resynthesize.add_argument("-o", "--output", default="resynthesized.wav", help="output WAV (default: %(default)s)")
    resynthesize.add_argument("--speaker-id", type=int, default=2, help="vocoder speaker (default: %(default)s)")
    resynthesize.add_argument("--through-string", action="store_true", help="decode the deduplicated unit string")
    add_device(resynthesize)
    resynthesize.set_defaults(handler=run_resynthesize)

    generate = commands.add_parser(
        "generate",
        help="continue a text/speech prompt with text and/or speech",
        description=(
            "Builds a prompt from --text, --speech and --units arguments, in the order given, and lets SPIRIT LM "
            "continue it. Text output is printed; speech output is written to --output (then OUTPUT-2.wav, ...). "
            'Example: spiritlm generate --repo ./spiritlm-expressive --speech question.wav --text " The answer is" '
            "--output-modality speech"
        ),
    )
    generate.add_argument("--repo", required=True, help="converted SPIRIT LM checkpoint")
    generate.add_argument("--text", action=_AppendSegment, dest="segments", metavar="TEXT", help="a text segment")
    generate.add_argument(
        "--speech", action=_AppendSegment, dest="segments", metavar="AUDIO", help="a speech segment (audio file)"
    )
    generate.add_argument(
        "--units", action=_AppendSegment, dest="segments", metavar="UNITS", help="a speech segment as a unit string"
    )
    generate.add_argument(
        "--output-modality",
        default="arbitrary",
        choices=("text", "speech", "arbitrary"),
        help="what to generate; 'arbitrary' lets the model switch (default: %(default)s)",
    )
    generate.add_argument(
        "-o", "--output", default="generated.wav", help="WAV file for speech output (default: %(default)s)"
    )
    generate.add_argument("--max-new-tokens", type=int, default=200, help="tokens to generate (default: %(default)s)")
    generate.add_argument("--greedy", action="store_true", help="pick the most likely token instead of sampling")
    generate.add_argument("--temperature", type=float, help="sampling temperature")
    generate.add_argument("--top-p", type=float, help="nucleus sampling threshold")
    generate.add_argument("--seed", type=int, help="random seed, for reproducible sampling")
    generate.add_argument("--speaker-id", type=int, default=2, help="vocoder speaker (default: %(default)s)")
    generate.add_argument("--print-prompt", action="store_true", help="print the prompt string given to the model")
    add_device(generate)
    generate.set_defaults(handler=run_generate, segments=[])

    convert = commands.add_parser(
        "convert",
        help="official checkpoints -> converted Hugging Face repo (run `spiritlm convert --help`)",
        add_help=False,
        description="Converts the official SPIRIT LM checkpoints; all arguments go to the conversion script.",
    )
    convert.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the conversion script")
    return parser


def _is_missing_folder(repo: str | None) -> bool:
    """Whether `--repo` is a local path (not a Hub id such as `owner/name`) that is not a folder: the Hub client would
    only complain that it is not a valid repo id."""
    if not repo or os.path.isdir(repo):
        return False
    return os.path.isabs(repo) or repo.startswith((".", "~")) or repo.count("/") > 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `spiritlm` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["convert"]:
        # Everything after `convert`, --help included, belongs to the conversion script's own parser.
        return run_convert(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if _is_missing_folder(getattr(args, "repo", None)):
            raise FileNotFoundError(f"--repo {args.repo} is not a folder (nor a Hub repo id such as 'owner/name')")
        return args.handler(args)
    except (OSError, ValueError) as error:  # bad input: files, repos, values; bugs keep their traceback
        print(f"spiritlm {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
