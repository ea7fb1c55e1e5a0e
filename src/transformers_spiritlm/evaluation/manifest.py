"""JSON-lines manifests of the official evaluation data: reading with errors that name the line, audio paths under a
data root, and the four STSP directions."""

import json
import os
from pathlib import Path


DIRECTIONS = ("text_text", "text_speech", "speech_text", "speech_speech")


def split_direction(input_output: str) -> tuple[str, str]:
    """`"speech_text"` -> `("speech", "text")`; any other value than the four [`DIRECTIONS`] is a `ValueError`."""
    if input_output not in DIRECTIONS:
        raise ValueError(f"unknown direction {input_output!r}; use one of {', '.join(DIRECTIONS)}")
    source, target = input_output.split("_")
    return source, target


def read_jsonl(path: str | os.PathLike, what: str = "manifest") -> list[dict]:
    """The JSON objects of a JSONL file, one a line (blank lines skipped); a line that is not a JSON object is a
    `ValueError` naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    records = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{what} {path}, line {number}: not JSON ({error})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{what} {path}, line {number}: expected a JSON object, got {line.strip()[:60]!r}")
            record["_line"] = number
            records.append(record)
    if not records:
        raise ValueError(f"{what} {path} is empty")
    return records


def where(record: dict, path: str | os.PathLike, what: str = "manifest") -> str:
    """`"manifest M, line N"` for a record of [`read_jsonl`]."""
    return f"{what} {path}, line {record.get('_line', '?')}"


def audio_path(data_root: str | os.PathLike | None, relative: str, location: str) -> Path:
    """`data_root / relative` (the official `wav_path` convention), which must be a file."""
    if not isinstance(relative, str) or not relative:
        raise ValueError(f"{location}: the audio path must be a non-empty string, got {relative!r}")
    path = Path(data_root or ".") / relative
    if not path.is_file():
        raise FileNotFoundError(
            f"{location}: audio file {path} does not exist (paths are relative to --data-root {data_root or '.'})"
        )
    return path


__all__ = ["DIRECTIONS", "audio_path", "read_jsonl", "split_direction", "where"]
