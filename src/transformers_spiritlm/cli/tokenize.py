"""`spiritlm tokenize`: audio files and folders -> JSON lines of speech units (`speech_tokenizer.files`)."""

import sys

from .common import add_device_argument


# audio.AUDIO_EXTENSIONS, written out so that building the parser does not import torch; tests/test_cli.py checks it.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


def run_tokenize(args) -> int:
    from ..speech_tokenizer.files import tokenize_to_jsonl

    run = tokenize_to_jsonl(
        args.inputs,
        args.repo,
        args.output,
        extensions=args.extensions.split(","),
        batch_size=args.batch_size,
        device=args.device,
        resume=args.resume,
        force=args.force,
        progress=not args.quiet,
    )
    for record in run.failed:
        print(f"skipped {record['audio']}: {record['error']}", file=sys.stderr)
    where = "stdout" if args.output == "-" else args.output
    shard = f" (process {run.process_index} of {run.num_processes})" if run.num_processes > 1 else ""
    resumed = f", {run.already_done} already done" if args.resume else ""
    print(f"tokenized {run.written} of {run.shard_size} files into {where}{shard}{resumed}", file=sys.stderr)
    return 1 if run.failed else 0


def add_parser(commands) -> None:
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
            "machines add --multi_gpu so that accelerate starts N processes). Each process appends finished files to "
            "<output>.part-<i>-of-<n> as it goes; after a crash or a kill, the same command with --resume skips them. "
            "An existing --output is kept unless --resume or --force is given, and a second job on the same --output "
            "stops at once (<output>.lock)."
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
    tokenize.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run into the same --output: files already tokenized (in its part files) are skipped",
    )
    tokenize.add_argument("--force", action="store_true", help="overwrite an existing --output")
    tokenize.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_argument(tokenize)
    tokenize.set_defaults(handler=run_tokenize)
