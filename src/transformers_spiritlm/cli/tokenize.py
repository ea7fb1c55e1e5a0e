"""`spiritlm tokenize`: audio files and folders -> JSON lines of speech units, over one process or several.

`find_audio_files` / `tokenize_files` / `write_jsonl` are reusable building blocks.
"""

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from ..audio import AUDIO_EXTENSIONS, find_audio_files
from .common import add_device_argument


def tokenize_files(
    files: Sequence[Path], speech_tokenizer, batch_size: int = 8, progress: bool = True
) -> Iterator[dict]:
    """
    Encodes audio files with a [`SpiritLMSpeechTokenizer`], `batch_size` files per batched call, and yields one
    record per file, in order: `{"audio": path, "hubert": [...], ("pitch": [...], "style": [...]), "string": str}`,
    units NOT deduplicated (25 / 12.5 / 1 per second), `string` the deduplicated SPIRIT LM unit string. A file that
    cannot be read or encoded yields `{"audio": path, "error": message}` instead.
    """
    from ..units import units_to_string

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


def run_tokenize(args) -> int:
    from transformers import AutoModel

    from ..configuration_spiritlm import SPEECH_TOKENIZER_SUBFOLDER
    from ..corpus import distributed_state, finished_records, process_shard, sharded_output

    # Under `accelerate launch` each process encodes its shard on its own device; the parts are merged in order.
    state = distributed_state()
    device = state.device if state.num_processes > 1 else args.device
    all_files = find_audio_files(args.inputs, args.extensions.split(","))
    files = process_shard(all_files, state)
    order = [str(path) for path in all_files]
    with sharded_output(
        args.output, state, key="audio", order=order, resume=args.resume, force=args.force, inputs=all_files
    ) as output:
        done = finished_records(args.output, "audio") if args.resume else {}
        todo = [path for path in files if str(path) not in done]
        speech_tokenizer = AutoModel.from_pretrained(args.repo, subfolder=SPEECH_TOKENIZER_SUBFOLDER).to(device).eval()
        records = tokenize_files(todo, speech_tokenizer, args.batch_size, progress=not args.quiet)
        written, failed = write_jsonl(records, output)
    for record in failed:
        print(f"skipped {record['audio']}: {record['error']}", file=sys.stderr)
    where = "stdout" if args.output == "-" else args.output
    shard = f" (process {state.process_index} of {state.num_processes})" if state.num_processes > 1 else ""
    resumed = f", {len(files) - len(todo)} already done" if args.resume else ""
    print(f"tokenized {written} of {len(files)} files into {where}{shard}{resumed}", file=sys.stderr)
    return 1 if failed else 0


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
