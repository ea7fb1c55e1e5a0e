"""sWUGGY (the lexical task of ZeroSpeech 2021 sLM21): is a spoken real word more likely than a spoken non-word?
Read from the published layout, a split folder (`lexical/dev`) of `.wav` files and its `gold.csv`."""

import os

from .pairs import Pair, read_gold_pairs


# The frequency bands (occurrences in LibriSpeech) the official sLM21 scorer reports.
FREQUENCY_BANDS = ((0, 1, "oov"), (1, 6, "1-5"), (6, 21, "6-20"), (21, 101, "21-100"), (101, float("inf"), ">100"))


def frequency_band(frequency: str) -> str | None:
    """The official band of a word frequency (`"oov"`, `"1-5"`, `"6-20"`, `"21-100"`, `">100"`); `None` for none."""
    if not frequency:
        return None
    try:
        count = int(float(frequency))
    except ValueError:
        raise ValueError(f"sWUGGY gold frequency {frequency!r} is not a number") from None
    return next(name for low, high, name in FREQUENCY_BANDS if low <= count < high)


def read_swuggy(data_dir: str | os.PathLike) -> list[Pair]:
    """
    The (word, non-word) pairs of an sLM21 lexical split: `gold.csv` rows (`id`, `filename`, `correct`, `voice`,
    `frequency`, ...) paired by `id` and `voice`, the word being the row with `correct` 1. Pair ids are
    `"<id>/<voice>"`; subsets are the word's frequency band, when the gold file gives frequencies.
    """
    return read_gold_pairs(
        data_dir, "swuggy", ("id", "voice"), subset=lambda row: frequency_band(row.get("frequency") or "")
    )


__all__ = ["FREQUENCY_BANDS", "frequency_band", "read_swuggy"]
