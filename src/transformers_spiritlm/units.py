"""The SPIRIT LM unit string format, e.g. `"[St71][Pi39][Hu99][Hu49]"` (pure python).

`units_to_string` merges the hubert, pitch and style streams into one string ordered by time; `string_to_units`
turns a (generated) string back into per-stream units, pre-expanded to one entry per hubert unit. Both give the
same output as the official functions on the same input, edge cases included.
"""

import random
import re
from collections.abc import Mapping, Sequence


UNIT_PREFIXES = {"hubert": "Hu", "pitch": "Pi", "style": "St"}
DEFAULT_NUM_UNITS = {"hubert": 501, "pitch": 64, "style": 100}
DEFAULT_RATES = {"hubert": 24.99, "pitch": 12.5, "style": 1.0}
# Styles the official decoder picks from when a string has pitch units but no style unit.
MOST_COMMON_STYLES = (71, 68, 98)

_STRICT_UNIT = re.compile(r"\[(Hu|Pi|St)(\d+)\]")
_PREFIX_TO_TYPE = {prefix: unit_type for unit_type, prefix in UNIT_PREFIXES.items()}


def _as_unit_list(values: str | Sequence[int] | Sequence[str]) -> list[str]:
    if isinstance(values, str):
        return values.split()
    return [str(int(value)) if not isinstance(value, str) else value for value in values]


def _timed_tokens(values: list[str], prefix: str, rate: float, dedup: bool) -> list[tuple[str, float]]:
    timed = []
    previous = None
    for index, value in enumerate(values):
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

    Returns:
        The unit string, e.g. `"[St81][Pi13][Hu78][Hu42]"`. At equal timestamps style comes before pitch before
        hubert, as in the official implementation.
    """
    if "hubert" not in units:
        raise ValueError(f"units must contain a 'hubert' stream; got keys {sorted(units)}")
    has_pitch = "pitch" in units if has_pitch is None else has_pitch
    has_style = "style" in units if has_style is None else has_style
    timed: list[tuple[str, float]] = []
    if has_style:
        timed += _timed_tokens(_as_unit_list(units["style"]), "St", style_rate, style_dedup)
    if has_pitch:
        timed += _timed_tokens(_as_unit_list(units["pitch"]), "Pi", pitch_rate, pitch_dedup)
    timed += _timed_tokens(_as_unit_list(units["hubert"]), "Hu", hubert_rate, hubert_dedup)
    # sorted() is stable: ties keep the style, pitch, hubert insertion order.
    return "".join(token for token, _ in sorted(timed, key=lambda item: item[1]))


def _check_strict(string: str, num_units: Mapping[str, int]) -> None:
    position = 0
    for match in _STRICT_UNIT.finditer(string):
        if match.start() != position:
            break
        unit_type = _PREFIX_TO_TYPE[match.group(1)]
        value = int(match.group(2))
        if value >= num_units[unit_type]:
            raise ValueError(
                f"unit {match.group(0)!r} at character {match.start()} is out of range: {unit_type} units go from 0 "
                f"to {num_units[unit_type] - 1}"
            )
        position = match.end()
    if position != len(string):
        raise ValueError(
            f"malformed unit string at character {position}: {string[position : position + 20]!r}; expected only "
            "'[HuN]', '[PiN]' and '[StN]' tokens (pass strict=False for the official lenient parsing)"
        )


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
    hubert: list[str | None] = []
    pitch: list[str | None] = []
    style: list[str | None] = []
    previous_hubert = first_hubert = None
    previous_pitch = first_pitch = None
    previous_style = first_style = None
    previous_is_pitch = False
    for piece in string.split("["):
        if len(piece) <= 2 or not piece[2].isdigit():
            continue
        value = piece[2:-1]
        if piece.startswith("Hu"):
            hubert.append(value)
            pitch.append(previous_pitch)
            style.append(previous_style)
            previous_is_pitch = False
            previous_hubert = value
            if first_hubert is None:
                first_hubert = value
        elif piece.startswith("St"):
            if previous_style is None:
                first_style = value
            previous_style = value
        elif piece.startswith("Pi"):
            if duplicate_hubert_for_multiple_pitch and previous_is_pitch:
                hubert.append(previous_hubert)
                pitch.append(value)
                style.append(previous_style)
            if previous_pitch is None:
                first_pitch = value
            previous_pitch = value
            previous_is_pitch = True
    if first_pitch is not None and first_style is None:
        chooser = generator if isinstance(generator, random.Random) else random
        if isinstance(generator, int):
            chooser = random.Random(generator)
        first_style = str(chooser.choice(MOST_COMMON_STYLES))
    units = {"hubert": " ".join(first_hubert if value is None else value for value in hubert)}
    if first_pitch is not None:
        units["pitch"] = " ".join(first_pitch if value is None else value for value in pitch)
    if first_style is not None:
        units["style"] = " ".join(first_style if value is None else value for value in style)
    return units


__all__ = ["units_to_string", "string_to_units", "MOST_COMMON_STYLES"]
