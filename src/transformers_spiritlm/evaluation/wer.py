"""Word and character error rates of transcripts (few-shot ASR, and TTS read back by an ASR model), after one stated
normalisation, per item and over the corpus. The alignment is jiwer's (the `[eval]` extra)."""

import os
import re
import unicodedata
from collections.abc import Sequence

from ..extras import import_extra
from .manifest import check_same_ids, predictions_by_id, read_jsonl, where


# An apostrophe between two letters or digits belongs to the word ("don't", "o'clock"); any other is punctuation.
_INNER_APOSTROPHE = re.compile(r"(?<=\w)['\u2019](?=\w)")
UNITS = ("word", "char")


def normalize_transcript(text: str) -> str:
    """
    The form in which transcripts are compared: Unicode NFKC, lowercased (`str.casefold`), every punctuation
    character (Unicode category P*) but an apostrophe inside a word replaced by a space (a curly inner apostrophe
    becomes `'`), then runs of whitespace made one space and the ends stripped.

    ```python
    >>> normalize_transcript("  Hello,   WORLD!  It’s well-known. ")
    "hello world it's well known"
    ```
    """
    text = _INNER_APOSTROPHE.sub("\0", unicodedata.normalize("NFKC", text).casefold())
    text = "".join(" " if unicodedata.category(char).startswith("P") else char for char in text)
    return " ".join(text.replace("\0", "'").split())


def error_rates(
    references: Sequence[str], hypotheses: Sequence[str], ids: Sequence[str] | None = None, unit: str = "word"
) -> dict:
    """
    Word (`unit="word"`) or character (`unit="char"`, spaces included) error rate of each hypothesis against its
    reference, both normalised by [`normalize_transcript`], and of the corpus: all edits over all reference words
    (characters), not a mean of the per-item rates. A reference that normalises to nothing is a `ValueError`.

    Returns:
        `{"unit", "rate", "errors", "length", "substitutions", "deletions", "insertions", "items"}`, `items` being
        `[{"id", "rate", "errors", "length"}, ...]` in input order.
    """
    jiwer = import_extra("jiwer", "eval")
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; use 'word' or 'char'")
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    ids = [str(index) for index in range(len(references))] if ids is None else [str(key) for key in ids]
    process = jiwer.process_words if unit == "word" else jiwer.process_characters
    totals = {"errors": 0, "length": 0, "substitutions": 0, "deletions": 0, "insertions": 0}
    items = []
    for key, reference, hypothesis in zip(ids, references, hypotheses):
        reference, hypothesis = normalize_transcript(reference), normalize_transcript(hypothesis)
        if not reference:
            raise ValueError(f"item {key!r}: the reference is empty after normalisation; an error rate needs words")
        output = process(reference, hypothesis)
        counts = {
            "substitutions": output.substitutions,
            "deletions": output.deletions,
            "insertions": output.insertions,
            "errors": output.substitutions + output.deletions + output.insertions,
            "length": output.hits + output.substitutions + output.deletions,
        }
        for name, count in counts.items():
            totals[name] += count
        items.append(
            {"id": key, "rate": counts["errors"] / counts["length"], **{k: counts[k] for k in ("errors", "length")}}
        )
    if not items:
        raise ValueError("no transcripts to score")
    return {"unit": unit, "rate": totals["errors"] / totals["length"], **totals, "items": items}


def score_transcripts(
    reference: str | os.PathLike,
    predictions: str | os.PathLike,
    unit: str = "word",
    reference_field: str = "text",
    hypothesis_field: str = "hyp",
) -> dict:
    """
    [`error_rates`] of a prediction JSONL (`{"id", "hyp"}`, as `eval asr` / `eval tts` write) against a reference
    manifest (`{"id", "text"}`), in the reference's order. Ids must match one to one, as for `eval score`.
    """
    refs = read_jsonl(reference, "reference")
    predicted = predictions_by_id(read_jsonl(predictions, "predictions"), predictions, hypothesis_field)
    check_same_ids(refs, predicted, reference, predictions)
    texts = []
    for row in refs:
        if not isinstance(row.get(reference_field), str):
            raise ValueError(f"{where(row, reference, 'reference')}: no {reference_field!r} transcript (a string)")
        texts.append(row[reference_field])
    hypotheses = []
    for row in refs:
        hypothesis, line = predicted[str(row["id"])]
        if not isinstance(hypothesis, str):
            raise ValueError(f"predictions {predictions}, line {line}: {hypothesis_field!r} is not a string")
        hypotheses.append(hypothesis)
    return error_rates(texts, hypotheses, [row["id"] for row in refs], unit)


__all__ = ["UNITS", "error_rates", "normalize_transcript", "score_transcripts"]
