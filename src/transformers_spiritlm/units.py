"""The SPIRIT LM unit string format, e.g. `"[St71][Pi39][Hu99][Hu49]"`, and the grammar of SPIRIT LM strings (pure
python).

[`UnitStringTokenizer`] reads a string, whole or as it is generated, into text, marker and unit tokens: the package
reads SPIRIT LM strings with it and nothing else. `units_to_string` merges the hubert, pitch and style streams into
one string ordered by time; `string_to_units` ([`UnitStringReader`] as the string grows) turns a (generated) string
back into per-stream units, pre-expanded to one entry per hubert unit. Both give the same output as the official
functions on the same input, edge cases included.
"""

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from .modalities import MARKERS, SPEECH_MARKER, TEXT_MARKER


UNIT_PREFIXES = {"hubert": "Hu", "pitch": "Pi", "style": "St"}
DEFAULT_NUM_UNITS = {"hubert": 501, "pitch": 64, "style": 100}
DEFAULT_RATES = {"hubert": 24.99, "pitch": 12.5, "style": 1.0}
# Styles the official decoder picks from when a string has pitch units but no style unit.
MOST_COMMON_STYLES = (71, 68, 98)

_PREFIX_TO_STREAM = {prefix: stream for stream, prefix in UNIT_PREFIXES.items()}
# What may follow a "[" that is still to become a unit or a marker token.
_UNIT_OPENERS = tuple(UNIT_PREFIXES.values())
_MARKER_OPENERS = tuple(marker[1:] for marker in MARKERS.values())


def _as_unit_list(values: str | Sequence[int] | Sequence[str]) -> list[str]:
    if isinstance(values, str):
        return values.split()
    return [str(int(value)) if not isinstance(value, str) else value for value in values]


def _timed_tokens(values: list[str], prefix: str, rate: float, dedup: bool, offset: int) -> list[tuple[str, float]]:
    timed = []
    previous = None
    for index, value in enumerate(values, start=offset):
        if not dedup or value != previous:
            timed.append((f"[{prefix}{value}]", index / rate))
        previous = value
    return timed


def units_to_string(
    units: Mapping[str, str | Sequence[int]],
    has_pitch: bool | None = None,
    has_style: bool | None = None,
    hubert_rate: float = DEFAULT_RATES["hubert"],
    pitch_rate: float = DEFAULT_RATES["pitch"],
    style_rate: float = DEFAULT_RATES["style"],
    hubert_dedup: bool = True,
    pitch_dedup: bool = True,
    style_dedup: bool = False,
    offsets: Mapping[str, int] | None = None,
) -> str:
    """
    Merges unit streams into one SPIRIT LM unit string, ordered by timestamp (unit index / rate).

    Args:
        units: `{"hubert": ..., "pitch": ..., "style": ...}`; each value a list of ints or a space-separated string
            (the official format). Only `"hubert"` is required.
        has_pitch, has_style: whether to include the pitch / style stream. `None` (default) includes a stream when
            its key is in `units`; the official function defaults both to `False`.
        hubert_rate, pitch_rate, style_rate: units per second of each stream (official: 24.99, 12.5, 1).
        hubert_dedup, pitch_dedup, style_dedup: drop consecutive repeats in a stream (official: hubert and pitch yes,
            style no).
        offsets: index of each stream's first unit in a longer utterance, when `units` are a time span of it: the
            timestamps count from there (default 0).

    Returns:
        The unit string, e.g. `"[St81][Pi13][Hu78][Hu42]"`. At equal timestamps style comes before pitch before
        hubert, as in the official implementation.
    """
    if "hubert" not in units:
        raise ValueError(f"units must contain a 'hubert' stream; got keys {sorted(units)}")
    has_pitch = "pitch" in units if has_pitch is None else has_pitch
    has_style = "style" in units if has_style is None else has_style
    offsets = offsets or {}
    timed: list[tuple[str, float]] = []
    if has_style:
        timed += _timed_tokens(_as_unit_list(units["style"]), "St", style_rate, style_dedup, offsets.get("style", 0))
    if has_pitch:
        timed += _timed_tokens(_as_unit_list(units["pitch"]), "Pi", pitch_rate, pitch_dedup, offsets.get("pitch", 0))
    hubert_offset = offsets.get("hubert", 0)
    timed += _timed_tokens(_as_unit_list(units["hubert"]), "Hu", hubert_rate, hubert_dedup, hubert_offset)
    # sorted() is stable: ties keep the style, pitch, hubert insertion order.
    return "".join(token for token, _ in sorted(timed, key=lambda item: item[1]))


class UnitStringToken(NamedTuple):
    """
    One token of a SPIRIT LM string (see [`UnitStringTokenizer`]).

    Args:
        kind: `"text"`, `"marker"` (`[Text]`, `[Speech]`) or `"unit"` (what the official parser reads as speech).
        text: its characters; the tokens of a string join into it.
        stream: for a unit token, `"hubert"`, `"pitch"` or `"style"`; `None` for the characters that an unclosed unit
            token makes the official parser read as speech, and for other kinds.
    """

    kind: str
    text: str
    stream: str | None = None

    @property
    def unit(self) -> int | None:
        """The unit id of a well-formed unit token (`[Hu12]` -> 12), else `None`."""
        if self.stream is None or not self.text.endswith("]") or not self.text[3:-1].isdecimal():
            return None
        return int(self.text[3:-1])


class UnitStringTokenizer:
    """
    Reads a SPIRIT LM string, whole or piece by piece as it is generated, into [`UnitStringToken`]s, with the grammar
    of the official parser of generations:

    - `[Text]` and `[Speech]` are `"marker"` tokens;
    - `[Hu`, `[Pi` and `[St` open a `"unit"` token, which runs to the next `]`. An unclosed one ends before the next
      `[` (or at the end); the official parser then reads on up to the next `]`: those characters come as `"unit"`
      tokens with `stream=None` (`[Hu1[x]y` is `[Hu1`, `[x]`, then the text `y`);
    - everything else is `"text"`: runs without `[`, and a `[` that opens neither a marker nor a unit.

    A token starts at every `[`. [`~UnitStringTokenizer.push`] returns the tokens that no later character can change:
    text as it comes (one run of text may come as several tokens), a marker or unit once complete. What it holds
    back, a `[` that may still open a marker or a unit and an unfinished unit, is `pending` until
    [`~UnitStringTokenizer.flush`] ends the string.

    ```python
    >>> tokenizer = UnitStringTokenizer()
    >>> tokenizer.push("Hi[Speech][Hu12][Hu")
    [UnitStringToken(kind='text', text='Hi', stream=None), UnitStringToken(kind='marker', text='[Speech]', stream=None),
     UnitStringToken(kind='unit', text='[Hu12]', stream='hubert')]
    >>> tokenizer.pending
    '[Hu'
    ```
    """

    def __init__(self):
        self.pending = ""
        self._in_unit = False  # after an unclosed unit token, until the next "]"

    def push(self, text: str) -> list[UnitStringToken]:
        """Appends `text`; returns the tokens completed."""
        self.pending += text
        return self._read(final=False)

    def flush(self) -> list[UnitStringToken]:
        """Ends the string: returns the held-back tokens, read as final."""
        tokens = self._read(final=True)
        self._in_unit = False
        return tokens

    def _read(self, final: bool) -> list[UnitStringToken]:
        tokens = []
        while self.pending:
            token = self._next_token(self.pending, final)
            if token is None:
                break
            tokens.append(token)
            self.pending = self.pending[len(token.text) :]
        return tokens

    def _next_token(self, text: str, final: bool) -> UnitStringToken | None:
        """The token at the start of `text`, or `None` while more characters can change it."""
        end = text.find("[", 1)
        end = len(text) if end < 0 else end
        stream = _PREFIX_TO_STREAM.get(text[1:3]) if text.startswith("[") else None
        if stream is not None:
            close = text.find("]", 3, end)
            if close >= 0:
                self._in_unit = False
                return UnitStringToken("unit", text[: close + 1], stream)
            if end == len(text) and not final:
                return None
            self._in_unit = True
            return UnitStringToken("unit", text[:end], stream)
        if text.startswith("[") and not final and end == len(text):
            opened = text[1:]
            openers = _UNIT_OPENERS if self._in_unit else _UNIT_OPENERS + _MARKER_OPENERS
            if any(opener.startswith(opened) and opener != opened for opener in openers):
                return None  # may still become a unit or a marker
        if self._in_unit:
            close = text.find("]", 0, end)
            if close >= 0:
                self._in_unit = False
                end = close + 1
            return UnitStringToken("unit", text[:end])
        for marker in (TEXT_MARKER, SPEECH_MARKER):
            if text.startswith(marker):
                return UnitStringToken("marker", marker)
        return UnitStringToken("text", text[:end])


def tokenize(string: str) -> list[UnitStringToken]:
    """The [`UnitStringToken`]s of a whole string."""
    tokenizer = UnitStringTokenizer()
    return tokenizer.push(string) + tokenizer.flush()


class UnitStringReader:
    """
    [`string_to_units`] on a string that grows: push pieces of a unit string (from a generation, say) and read its
    units, one row per hubert unit, as they arrive.

    Lenient, as the official parser, which splits the string at every `[`: a piece counts when it starts with `Hu`,
    `Pi` or `St` and a digit, and its value is the rest of it without the last character: `12` for `[Hu12]`, but
    `12]a` for `[Hu12]ab[` (text after a unit) and `1` for `[Hu12[` (an unclosed one). Other pieces are skipped.
    Each hubert unit takes the last pitch and style unit before it; the rows before the first pitch (style) unit
    take that one.

    Args:
        duplicate_hubert_for_multiple_pitch: repeat the previous hubert unit for each pitch unit that directly
            follows a pitch unit (official option).
        convert: called as `convert(stream, value)` on each value read, e.g. to check it and make it an `int`; the
            rows hold what it returns. Default: the official strings.

    Attributes:
        hubert, pitch, style (`list`): one value per hubert unit (`None` while no unit of that stream came).
        ends (`list[int]`): for each row, the end of the token that made it, in characters pushed.
        last (`dict`): the last value of each stream, `None` before its first one.
    """

    def __init__(
        self, duplicate_hubert_for_multiple_pitch: bool = False, convert: Callable[[str, str], Any] | None = None
    ):
        self.duplicate_hubert_for_multiple_pitch = duplicate_hubert_for_multiple_pitch
        self.convert = convert or (lambda stream, value: value)
        self.hubert: list = []
        self.pitch: list = []
        self.style: list = []
        self.ends: list[int] = []
        self.last: dict = dict.fromkeys(UNIT_PREFIXES)
        self._tokenizer = UnitStringTokenizer()
        self._position = 0
        self._previous_is_pitch = False
        self._piece: str | None = ""  # the piece being read, while it may be a unit
        self._rows: list[int] | None = None  # the rows that hold its value, once read

    def push(self, text: str) -> None:
        """Reads the units that `text` completes."""
        for token in self._tokenizer.push(text):
            self._read(token)

    def flush(self) -> None:
        """Ends the string: reads a unit token still open at its end."""
        for token in self._tokenizer.flush():
            self._read(token)

    def choose_missing_style(self, generator: random.Random | int | None = None) -> None:
        """When the string has pitch units but no style unit, gives every row one of the `MOST_COMMON_STYLES` at
        random, as the official decoder does; `generator` (a `random.Random` or a seed) makes the choice
        reproducible, `None` uses the global `random` module like the official code."""
        if self.last["pitch"] is None or self.last["style"] is not None:
            return
        chooser = generator if isinstance(generator, random.Random) else random
        if isinstance(generator, int):
            chooser = random.Random(generator)
        self._set("style", str(chooser.choice(MOST_COMMON_STYLES)), [])

    def _read(self, token: UnitStringToken) -> None:
        self._position += len(token.text)
        # The official parser splits the string at every "[" and reads each piece, the first one included.
        if token.text.startswith("["):
            self._piece, self._rows = token.text[1:], None
        elif self._piece is not None:
            self._piece += token.text
        if self._piece is None:
            return
        stream = _PREFIX_TO_STREAM.get(self._piece[:2])
        if stream is None or len(self._piece) < 3 or not self._piece[2].isdigit():
            if len(self._piece) >= 3:
                self._piece = None  # not a unit, whatever follows
            return
        if self._rows is None:
            self._rows = self._add(stream, self._piece[2:-1])
        else:  # text after the unit, before the next "[": its value runs on
            self._set(stream, self._piece[2:-1], self._rows)

    def _add(self, stream: str, value: str) -> list[int]:
        """Reads one unit; returns the rows that hold its value."""
        rows = []
        duplicate = self.duplicate_hubert_for_multiple_pitch and self._previous_is_pitch
        if stream == "hubert" or (stream == "pitch" and duplicate):
            self.hubert.append(self.last["hubert"])
            self.pitch.append(self.last["pitch"])
            self.style.append(self.last["style"])
            self.ends.append(self._position)
            rows.append(len(self.hubert) - 1)
        if stream != "style":
            self._previous_is_pitch = stream == "pitch"
        return self._set(stream, value, rows)

    def _set(self, stream: str, value: str, rows: list[int]) -> list[int]:
        """Gives `rows` and the stream's last value `value`; the first unit of a stream also goes to the rows before
        it."""
        value = self.convert(stream, value)
        column = getattr(self, stream)
        if self.last[stream] is None:
            rows = [row for row, old in enumerate(column) if old is None]
        for row in rows:
            column[row] = value
        self.last[stream] = value
        return rows


def _check_strict(string: str, num_units: Mapping[str, int]) -> None:
    position = 0
    for token in tokenize(string):
        if token.unit is None:
            raise ValueError(
                f"malformed unit string at character {position}: {string[position : position + 20]!r}; expected "
                "only '[HuN]', '[PiN]' and '[StN]' tokens (pass strict=False for the official lenient parsing)"
            )
        if token.unit >= num_units[token.stream]:
            raise ValueError(
                f"unit {token.text!r} at character {position} is out of range: {token.stream} units go from 0 to "
                f"{num_units[token.stream] - 1}"
            )
        position += len(token.text)


def string_to_units(
    string: str,
    duplicate_hubert_for_multiple_pitch: bool = False,
    strict: bool = False,
    num_units: Mapping[str, int] | None = None,
    generator: random.Random | int | None = None,
) -> dict[str, str]:
    """
    Parses a unit string into per-stream units, pre-expanded to one pitch and one style value per hubert unit.

    `"[St81][Hu78][Pi13][Hu42][Hu81]"` gives `{"hubert": "78 42 81", "pitch": "13 13 13", "style": "81 81 81"}`:
    the same dictionary of space-separated strings the official `string_to_units` returns.

    Default (lenient) mode follows the official parser exactly: the string is split on `"["`; a piece counts as a
    unit when it is longer than 2 characters, starts with `Hu`/`Pi`/`St` and a digit, and its value is the piece
    without its last character (so trailing garbage is kept, and anything else — text, markers, broken tokens — is
    skipped). Pitch and style apply to the hubert units after them; hubert units before the first pitch/style take
    the first one. When pitch units are present but no style unit, the official code picks one of the most common
    styles (71, 68, 98) at random: `generator` (a `random.Random` or a seed) makes that choice reproducible;
    `None` uses the global `random` module like the official code.

    Args:
        string: the unit string.
        duplicate_hubert_for_multiple_pitch: repeat the previous hubert unit for each extra pitch unit that directly
            follows a pitch unit (official option).
        strict: validate first: the string must consist only of `[HuN]`, `[PiN]`, `[StN]` tokens with N in range
            (`num_units`), else `ValueError` naming the position.
        num_units: unit counts per stream for `strict` (default 501 hubert, 64 pitch, 100 style).
        generator: source of the random style choice described above.

    Returns:
        `{"hubert": str}` plus `"pitch"` and `"style"` when the string has them.
    """
    if not isinstance(string, str):
        raise TypeError(f"string_to_units expects a str, got {type(string).__name__}")
    if strict:
        _check_strict(string, {**DEFAULT_NUM_UNITS, **(num_units or {})})
    reader = UnitStringReader(duplicate_hubert_for_multiple_pitch)
    reader.push(string)
    reader.flush()
    reader.choose_missing_style(generator)
    units = {"hubert": " ".join(reader.hubert)}
    for stream in ("pitch", "style"):
        if reader.last[stream] is not None:
            units[stream] = " ".join(getattr(reader, stream))
    return units


__all__ = [
    "MOST_COMMON_STYLES",
    "UNIT_PREFIXES",
    "UnitStringReader",
    "UnitStringToken",
    "UnitStringTokenizer",
    "string_to_units",
    "tokenize",
    "units_to_string",
]
