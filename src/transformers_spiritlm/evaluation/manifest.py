"""JSON-lines manifests of the official evaluation data: reading with errors that name the line, audio paths under a
data root, predictions matched to references by id, and the four STSP directions."""

import json
import os
from collections.abc import Sequence
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


def read_manifest(
    path: str | os.PathLike, fields: Sequence[str], data_root: str | os.PathLike | None = None, what: str = "manifest"
) -> list[dict]:
    """
    Rows of a JSONL manifest that must each hold `fields` and a unique `id`; a `wav_path` field (relative to
    `data_root`) must name an existing file, kept as `row["_audio"]`. Errors name the file, the line and the field.
    """
    rows = read_jsonl(path, what)
    seen: dict[str, int] = {}
    for row in rows:
        location = where(row, path, what)
        missing = [field for field in ("id", *fields) if field not in row]
        if missing:
            raise ValueError(
                f"{location}: no {', '.join(repr(field) for field in missing)} field; every row needs "
                f"{', '.join(repr(field) for field in dict.fromkeys(('id', *fields)))}"
            )
        key = str(row["id"])
        if key in seen:
            raise ValueError(f"{location}: id {key!r} is already on line {seen[key]}; ids must be unique")
        seen[key] = row["_line"]
        if "wav_path" in fields:
            row["_audio"] = audio_path(data_root, row["wav_path"], location)
    return rows


def predictions_by_id(rows: Sequence[dict], path: str | os.PathLike, field: str) -> dict[str, tuple[object, int]]:
    """`{id: (row[field], line)}` of prediction rows; a row without `id` or `field`, or an id given twice, is a
    `ValueError` naming the line."""
    predicted: dict[str, tuple[object, int]] = {}
    for row in rows:
        location = where(row, path, "predictions")
        if "id" not in row or field not in row:
            raise ValueError(
                f"{location}: a prediction needs 'id' and {field!r}, got keys {sorted(k for k in row if k[0] != '_')}"
            )
        key = str(row["id"])
        if key in predicted:
            raise ValueError(f"{location}: id {key!r} is already predicted on line {predicted[key][1]}")
        predicted[key] = (row[field], row["_line"])
    return predicted


def check_same_ids(
    references: Sequence[dict],
    predicted: dict[str, tuple[object, int]],
    reference_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
) -> None:
    """Refuses, in one `ValueError`, reference rows without `id` or with a repeated one, and any id on one side only
    (the first five of each kind, with their lines)."""
    reference_ids = set()
    missing = []
    for row in references:
        location = where(row, reference_path, "reference")
        if "id" not in row:
            raise ValueError(f"{location}: no 'id' field")
        key = str(row["id"])
        if key in reference_ids:
            raise ValueError(f"{location}: id {key!r} appears twice in the reference")
        reference_ids.add(key)
        if key not in predicted:
            missing.append(f"{key!r} (line {row['_line']})")
    unknown = [f"{key!r} (line {line})" for key, (_, line) in predicted.items() if key not in reference_ids]
    if missing or unknown:
        problems = []
        if unknown:
            problems.append(
                f"{len(unknown)} ids of {predictions_path} are not in {reference_path}: {', '.join(unknown[:5])}"
            )
        if missing:
            problems.append(f"{len(missing)} ids of {reference_path} have no prediction: {', '.join(missing[:5])}")
        raise ValueError("; ".join(problems) + ("; ..." if max(len(unknown), len(missing)) > 5 else ""))


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


__all__ = [
    "DIRECTIONS",
    "audio_path",
    "check_same_ids",
    "predictions_by_id",
    "read_jsonl",
    "read_manifest",
    "split_direction",
    "where",
]
