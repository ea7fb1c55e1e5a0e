"""Audio files and folders -> JSON lines of speech units (`spiritlm tokenize`), over one process or several.

[`tokenize_to_jsonl`] is the whole job: find the files, shard them over the processes of `accelerate launch` /
`torchrun`, encode them in batches, and write one record per file, resumable (see `sharding.py`).
"""

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ..audio import AUDIO_EXTENSIONS, find_audio_files
from ..units import units_to_string


def tokenize_files(
    files: Sequence[Path], speech_tokenizer, batch_size: int = 8, progress: bool = True
) -> Iterator[dict]:
    """
    Encodes audio files with a [`SpiritLMSpeechTokenizer`], `batch_size` files per batched call, and yields one
    record per file, in order: `{"audio": path, "hubert": [...], ("pitch": [...], "style": [...]), "string": str}`,
    units NOT deduplicated (25 / 12.5 / 1 per second), `string` the deduplicated SPIRIT LM unit string. A file that
    cannot be read or encoded yields `{"audio": path, "error": message}` instead.
    """
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


@dataclass
class TokenizeRun:
    """What [`tokenize_to_jsonl`] did in this process: files of its shard, how many it wrote, how many a resumed run
    found done, and the records of the files that could not be read or encoded."""

    shard_size: int
    written: int
    already_done: int
    process_index: int = 0
    num_processes: int = 1
    failed: list[dict] = field(default_factory=list)


def tokenize_to_jsonl(
    inputs: Sequence[str | os.PathLike],
    repo: str | os.PathLike,
    output: str | os.PathLike,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
    batch_size: int = 8,
    device: str | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
) -> TokenizeRun:
    """
    Encodes the audio files of `inputs` (files, or folders searched for `extensions`) with the speech tokenizer of the
    converted repo `repo` and writes one JSON line per file ([`tokenize_files`]) to `output` (`"-"`: stdout), in file
    order. Under `accelerate launch` / `torchrun` each process encodes one shard on its own device and the parts are
    merged; `resume=True` skips files already written by an interrupted run, `force=True` overwrites an existing
    `output` (see `sharding.sharded_output`).
    """
    from transformers import AutoModel

    from ..configuration_spiritlm import SPEECH_TOKENIZER_SUBFOLDER
    from ..sharding import distributed_state, finished_records, process_shard, sharded_output

    state = distributed_state()
    device = state.device if state.num_processes > 1 else device
    all_files = find_audio_files(inputs, extensions)
    files = process_shard(all_files, state)
    order = [str(path) for path in all_files]
    with sharded_output(output, state, key="audio", order=order, resume=resume, force=force, inputs=all_files) as file:
        done = finished_records(output, "audio") if resume else {}
        todo = [path for path in files if str(path) not in done]
        speech_tokenizer = AutoModel.from_pretrained(repo, subfolder=SPEECH_TOKENIZER_SUBFOLDER).to(device).eval()
        written, failed = write_jsonl(tokenize_files(todo, speech_tokenizer, batch_size, progress=progress), file)
    return TokenizeRun(
        shard_size=len(files),
        written=written,
        already_done=len(files) - len(todo),
        process_index=state.process_index,
        num_processes=state.num_processes,
        failed=failed,
    )


__all__ = ["TokenizeRun", "tokenize_files", "tokenize_to_jsonl", "write_jsonl"]
