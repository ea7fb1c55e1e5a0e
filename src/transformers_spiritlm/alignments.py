"""Word alignments from forced aligners: Praat TextGrid files (the word tier the Montreal Forced Aligner writes) and
CTM files (Kaldi, NeMo, ...), read into the [`WordAlignment`]s that [`SpiritLMSequenceBuilder`] takes.

Both readers are strict: intervals out of order or overlapping, words past the end of the TextGrid or of the audio
(`duration=`), and malformed lines are `ValueError`s naming the file and the word, never silently reordered or
clipped. TextGrids are read in Praat's long or short text format, UTF-8 or UTF-16.
"""

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

from .data import WordAlignment, parse_word_alignments


# Praat's text format is a sequence of values (quoted strings with "" for a quote, numbers, <exists> flags); the long
# format labels them (`xmin = 0`, `intervals [1]:`) and the short one does not. Reading only the values reads both.
_BRACKETED_INDEX = re.compile(r"\[\s*\d*\s*\]")
_VALUE = re.compile(r'"((?:[^"]|"")*)"|(<exists>|<absent>)|([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)')
_TIME_EPSILON = 1e-6


class _TextGridValues:
    def __init__(self, text: str, path: Path):
        self.path = path
        self.values = [
            (match.group(1).replace('""', '"') if match.group(1) is not None else None, match.group(2), match.group(3))
            for match in _VALUE.finditer(_BRACKETED_INDEX.sub(" ", text))
        ]
        self.position = 0

    def _next(self, kind: str):
        if self.position >= len(self.values):
            raise ValueError(f"{self.path}: not a complete TextGrid (it ends where a {kind} was expected)")
        value = self.values[self.position]
        self.position += 1
        return value

    def string(self) -> str:
        string, flag, number = self._next("string")
        if string is None:
            raise ValueError(f"{self.path}: not a TextGrid: expected a quoted string, found {flag or number}")
        return string

    def number(self) -> float:
        string, flag, number = self._next("number")
        if number is None:
            found = flag if flag is not None else f'"{string}"'
            raise ValueError(f"{self.path}: not a TextGrid: expected a number, found {found}")
        return float(number)

    def flag(self) -> bool:
        _, flag, _ = self._next("<exists> flag")
        if flag is None:
            raise ValueError(f"{self.path}: not a TextGrid: expected <exists> after the time range")
        return flag == "<exists>"


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(
            f"{path}: not a text TextGrid (neither UTF-8 nor UTF-16); save it from Praat as text"
        ) from None


def _check_file(path: str | os.PathLike, kind: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} file {path} not found")
    return path


def read_textgrid_tiers(path: str | os.PathLike) -> dict[str, list[tuple[float, float, str]]]:
    """
    Every interval tier of a TextGrid file as `{tier name: [(start, end, label), ...]}` (empty labels included, in
    file order). Point tiers are skipped. Raises `ValueError` for a file that is not a text TextGrid, intervals out of
    order or overlapping, or intervals outside the TextGrid's time range.
    """
    path = _check_file(path, "TextGrid")
    values = _TextGridValues(_read_text(path), path)
    if values.string() != "ooTextFile" or values.string() != "TextGrid":
        raise ValueError(
            f'{path}: not a TextGrid: it must start with File type = "ooTextFile", Object class = "TextGrid"'
        )
    grid_start, grid_end = values.number(), values.number()
    tiers = {}
    for _ in range(int(values.number()) if values.flag() else 0):
        tier_class, name = values.string(), values.string()
        values.number(), values.number()  # the tier's own time range, within the grid's
        count = int(values.number())
        if tier_class == "TextTier":
            for _ in range(count):
                values.number(), values.string()
            continue
        if tier_class != "IntervalTier":
            raise ValueError(f"{path}: tier {name!r} has unknown class {tier_class!r}")
        intervals = [(values.number(), values.number(), values.string().strip()) for _ in range(count)]
        for index, (start, end, label) in enumerate(intervals):
            where = f"{path}: tier {name!r}, interval #{index + 1} ({label!r}, {start} to {end} s)"
            if not end > start:
                raise ValueError(f"{where} does not end after it starts")
            if start < grid_start - _TIME_EPSILON or end > grid_end + _TIME_EPSILON:
                raise ValueError(f"{where} lies outside the TextGrid's time range {grid_start} to {grid_end} s")
            if index and start < intervals[index - 1][1] - _TIME_EPSILON:
                previous = intervals[index - 1]
                problem = "starts before" if start < previous[0] else "overlaps"
                raise ValueError(
                    f"{where} {problem} interval #{index} ({previous[2]!r}, {previous[0]} to {previous[1]} s); "
                    "intervals must be sorted by time and must not overlap"
                )
        tiers[name] = intervals
    return tiers


def read_textgrid(path: str | os.PathLike, tier: str = "words", duration: float | None = None) -> list[WordAlignment]:
    """
    The words of one interval tier of a TextGrid file (by default `"words"`, the Montreal Forced Aligner's word tier),
    without the empty intervals (silences).

    Args:
        path: the `.TextGrid` file (Praat long or short text format).
        tier: name of the word tier; a multi-speaker MFA TextGrid names it `"<speaker> - words"`.
        duration: length of the audio in seconds; a word ending after it (beyond a 0.1 s rounding margin) is an error.
    """
    tiers = read_textgrid_tiers(path)
    if tier not in tiers:
        raise ValueError(f"{path} has no interval tier {tier!r}; its interval tiers are {list(tiers)} (pass tier=)")
    words = [(label, start, end) for start, end, label in tiers[tier] if label]
    try:
        return parse_word_alignments(words, duration=duration)
    except ValueError as error:
        raise ValueError(f"{path}, tier {tier!r}: {error}") from None


def read_ctm(
    path: str | os.PathLike, duration: float | Mapping[str, float] | None = None
) -> dict[str, list[WordAlignment]]:
    """
    The words of a CTM file, by utterance: `{utterance id: [WordAlignment, ...]}` in file order.

    Each line is `<utterance> <channel> <start> <duration> <word> [<confidence> ...]` (times in seconds); blank lines
    and `;;` comments are skipped. `duration` is the audio length in seconds (one number, or one per utterance id): a
    word ending after it is an error, as are words out of order or overlapping within an utterance.
    """
    path = _check_file(path, "CTM")
    utterances: dict[str, list[tuple[str, float, float]]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith(";;"):
            continue
        if len(fields) < 5:
            raise ValueError(
                f"{path}, line {number}: {line.strip()!r} has {len(fields)} fields; a CTM line is "
                "'<utterance> <channel> <start> <duration> <word> [<confidence>]'"
            )
        try:
            start, length = float(fields[2]), float(fields[3])
        except ValueError:
            raise ValueError(
                f"{path}, line {number}: start {fields[2]!r} and duration {fields[3]!r} must be seconds"
            ) from None
        if not (math.isfinite(start) and math.isfinite(length)) or length <= 0:
            raise ValueError(f"{path}, line {number}: word {fields[4]!r} has duration {length} s; it must be positive")
        utterances.setdefault(fields[0], []).append((fields[4], start, start + length))
    if not utterances:
        raise ValueError(f"{path} holds no words")
    alignments = {}
    for utterance, words in utterances.items():
        limit = duration.get(utterance) if isinstance(duration, Mapping) else duration
        try:
            alignments[utterance] = parse_word_alignments(words, duration=limit)
        except ValueError as error:
            raise ValueError(f"{path}, utterance {utterance!r}: {error}") from None
    return alignments


__all__ = ["read_ctm", "read_textgrid", "read_textgrid_tiers"]
