"""sBLIMP (the syntactic task of ZeroSpeech 2021 sLM21): is a spoken grammatical sentence more likely than its
ungrammatical twin? Read from the published layout, a split folder (`syntactic/dev`) of `.wav` files and its
`gold.csv`."""

import os

from .pairs import Pair, read_gold_pairs


def read_sblimp(data_dir: str | os.PathLike) -> list[Pair]:
    """
    The (grammatical, ungrammatical) pairs of an sLM21 syntactic split: `gold.csv` rows (`filename`, `type`,
    `subtype`, `correct`, `id`, `voice`, ...) paired by `type`, `subtype`, `id` and `voice`, the grammatical sentence
    being the row with `correct` 1. Pair ids are `"<type>/<subtype>/<id>/<voice>"`; subsets are the `type`s.
    """
    return read_gold_pairs(data_dir, "sblimp", ("type", "subtype", "id", "voice"), subset=lambda row: row["type"])


__all__ = ["read_sblimp"]
