"""Few-shot cross-modal prompts, as the official STSP code builds them (`spiritlm/eval/stsp/few_shot_prompt.py`):
`(input, output)` examples concatenated as `{prompt}{generation}` lines, speech as unit strings, optionally cut from
one clip (first half as the input, second half as the output)."""

import math
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..audio import load_audio
from .manifest import audio_path, read_jsonl, split_direction


HALVES = ("first", "second")
# The official few-shot manifests, in `<stsp data>/manifest/few_shot/`, one per direction.
FEW_SHOT_MANIFESTS = {"text_text": "t2t.jsonl", "speech_text": "s2t.jsonl", "text_speech": "t2s.jsonl",
                      "speech_speech": "s2s.jsonl"}  # fmt: skip


def half_audio(audio, half: str, sampling_rate: int | None = None) -> dict:
    """
    The first or second half of a clip (channels averaged), as an Audio dict `{"array", "sampling_rate"}` at the
    clip's own rate: the official few-shot examples take the first half of a wav as the prompt and the second half
    as the generation (cut at `num_samples // 2`).
    """
    if half not in HALVES:
        raise ValueError(f"half must be 'first' or 'second', got {half!r}")
    waveform, rate = load_audio(audio, sampling_rate)
    waveform = waveform.mean(dim=0)
    middle = len(waveform) // 2
    part = waveform[:middle] if half == "first" else waveform[middle:]
    return {"array": part.numpy().astype(np.float32, copy=False), "sampling_rate": rate}


def few_shot_examples(
    rows: Sequence[Mapping], input_output: str, data_root: str | os.PathLike | None = None
) -> list[tuple[dict, dict]]:
    """
    `(input, output)` segment pairs from rows of an official few-shot manifest (`{"prompt", "generation",
    "sentiment"}`): text sides are the strings themselves; speech sides are wav paths under `data_root`, of which
    the input takes the first half and the output the second half, as the official code does.
    """
    source, target = split_direction(input_output)
    examples = []
    for index, row in enumerate(rows):
        location = f"few-shot row {row.get('_line', index)}"
        pair = []
        for field, modality, half in (("prompt", source, "first"), ("generation", target, "second")):
            if field not in row:
                raise ValueError(f"{location}: no {field!r} field (a few-shot row has 'prompt' and 'generation')")
            if modality == "text":
                pair.append({"type": "text", "text": str(row[field])})
            else:
                path = audio_path(data_root, row[field], location)
                pair.append({"type": "speech", "audio": half_audio(path, half)})
        examples.append(tuple(pair))
    return examples


def sample_few_shot_rows(rows: Sequence[Mapping], n_shots: int, seed: int = 0) -> list[Mapping]:
    """
    A sentiment-balanced sample, as the official `df.groupby("sentiment").sample(n=ceil(n_shots / 3))` but
    reproducible: `ceil(n_shots / 3)` rows of each sentiment, sentiments in sorted order, drawn with
    `random.Random(seed)`.
    """
    if n_shots < 1 or n_shots > len(rows):
        raise ValueError(f"cannot take {n_shots} few-shot examples from a manifest of {len(rows)} rows")
    groups: dict[str, list[Mapping]] = {}
    for index, row in enumerate(rows):
        if "sentiment" not in row:
            raise ValueError(f"few-shot row {row.get('_line', index)}: no 'sentiment' field to balance the examples")
        groups.setdefault(str(row["sentiment"]), []).append(row)
    per_sentiment = math.ceil(n_shots / 3)
    rng = random.Random(seed)
    sample = []
    for sentiment in sorted(groups):
        if len(groups[sentiment]) < per_sentiment:
            raise ValueError(
                f"{n_shots} shots take {per_sentiment} examples per sentiment, but the manifest has only "
                f"{len(groups[sentiment])} {sentiment!r} rows"
            )
        sample += rng.sample(groups[sentiment], per_sentiment)
    return sample


def select_few_shot_rows(rows: Sequence[Mapping], shots: int, seed: int | None = None) -> list[Mapping]:
    """The few-shot examples of a task: the first `shots` rows in file order, or with a `seed`, `shots` rows drawn
    without replacement by `random.Random(seed).sample`, in the order drawn."""
    if shots < 1 or shots > len(rows):
        raise ValueError(f"cannot take {shots} few-shot examples from a manifest of {len(rows)} rows")
    return list(rows[:shots]) if seed is None else random.Random(seed).sample(list(rows), shots)


def transcript_examples(rows: Sequence[Mapping], input_output: str) -> list[tuple[dict, dict]]:
    """`(input, output)` pairs of whole clips and their transcripts, from rows with `_audio` (as [`read_manifest`]
    resolves `wav_path`) and `text`: `(speech, text)` for `"speech_text"` (ASR), `(text, speech)` for `"text_speech"`
    (TTS)."""
    if input_output not in ("speech_text", "text_speech"):
        raise ValueError(f"transcript examples are 'speech_text' or 'text_speech', got {input_output!r}")
    pairs = [({"type": "speech", "audio": row["_audio"]}, {"type": "text", "text": str(row["text"])}) for row in rows]
    return pairs if input_output == "speech_text" else [(text, speech) for speech, text in pairs]


def build_few_shot_prompt(processor, examples: Sequence[tuple], query=None, output_modality: str = "arbitrary") -> str:
    """
    The official few-shot prompt from explicit `(input, output)` examples, then the query's prompt; see
    [`SpiritLMProcessor.build_few_shot_prompt`].

    ```python
    >>> build_few_shot_prompt(processor, [({"type": "text", "text": "so sad"}, {"type": "text", "text": " I cried"})],
    ...                       query={"type": "text", "text": "what a day"}, output_modality="text")
    '[Text]so sad[Text] I cried\\n[Text]what a day'
    ```
    """
    return processor.build_few_shot_prompt(examples, query=query, output_modality=output_modality)


def few_shot_prompt_from_manifest(
    processor,
    manifest: str | os.PathLike,
    input_output: str,
    n_shots: int,
    data_root: str | os.PathLike | None = None,
    seed: int = 0,
) -> str:
    """The few-shot prefix of an STSP run: `n_shots` balanced examples of an official few-shot manifest
    (`t2t.jsonl`, `s2t.jsonl`, ...), without a query."""
    rows = sample_few_shot_rows(read_jsonl(Path(manifest), "few-shot manifest"), n_shots, seed)
    return processor.build_few_shot_prompt(few_shot_examples(rows, input_output, data_root))


__all__ = [
    "FEW_SHOT_MANIFESTS",
    "build_few_shot_prompt",
    "few_shot_examples",
    "few_shot_prompt_from_manifest",
    "half_audio",
    "sample_few_shot_rows",
    "select_few_shot_rows",
    "transcript_examples",
]
