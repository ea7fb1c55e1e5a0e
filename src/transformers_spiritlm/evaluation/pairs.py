"""Minimal-pair benchmarks (sWUGGY, sBLIMP, StoryCloze, SALMon, `spiritlm eval pairs`): the shared core that scores
the correct and the wrong item of each pair, writes one JSON line per pair and reports the accuracy, in one process or
many (`torchrun` / `accelerate launch`), resumable. The task modules only read their published layouts into pairs."""

import csv
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

from tqdm.auto import tqdm

from .manifest import read_jsonl
from .scoring import REDUCTIONS, render_segments, score_continuations, text_and_speech_tokenizers


class Pair(TypedDict, total=False):
    """One minimal pair: `id` (unique, names the output record), `correct` and `wrong` (what is scored, in any form
    [`render_segments`] takes), `prompt` (the context both follow; absent or `None` for none) and `subset` (the
    group its accuracy is also reported in: a SALMon part, an sBLIMP type, ...)."""

    id: str
    correct: Any
    wrong: Any
    prompt: Any
    subset: str


def outcome(score_correct: float, score_wrong: float) -> float:
    """1 when the correct item is more likely, 0.5 on a tie, 0 otherwise (as the ZeroSpeech, SALMon and slamkit
    scorers)."""
    return 1 if score_correct > score_wrong else 0.5 if score_correct == score_wrong else 0


def pair_batches(pairs: Sequence[Pair], batch_size: int) -> list[list[Pair]]:
    """`pairs` cut, in order, into the batches every run scores together, whatever its processes or what it resumes:
    a pair's score then never depends on which other pairs a run happens to batch it with."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    return [list(pairs[start : start + batch_size]) for start in range(0, len(pairs), batch_size)]


def score_pairs(
    model,
    processor,
    pairs: Sequence[Pair],
    batch_size: int = 8,
    reduction: str = "sum",
    progress: bool = False,
) -> Iterator[dict]:
    """
    Scores the pairs ([`score_continuations`]: log-likelihood of each item given the pair's prompt, its `reduction`
    over the item's tokens) one batch of `batch_size` pairs at a time ([`pair_batches`]: both items of every pair of
    a batch in one left-padded forward pass) and yields, in order, one record per pair:
    `{"id", "score_correct", "score_wrong", "correct"}` (+ `"subset"` when the pair has one), `correct` being 1, 0.5
    on a tie or 0. `processor` is a [`SpiritLMProcessor`] (its speech tokenizer encodes audio items), or the
    tokenizer alone for pairs given as SPIRIT LM strings.
    """
    tokenizer, speech_tokenizer = text_and_speech_tokenizers(processor)
    with tqdm(total=len(pairs), desc="Scoring pairs", unit="pair", disable=not progress) as bar:
        for batch in pair_batches(pairs, batch_size):
            # A prompt given as audio is encoded once for both items.
            prompts = [render_segments(pair.get("prompt") or "", speech_tokenizer) for pair in batch]
            scores = score_continuations(
                model,
                tokenizer,
                [prompt for prompt in prompts for _ in range(2)],
                [pair[key] for pair in batch for key in ("correct", "wrong")],
                speech_tokenizer=speech_tokenizer,
                batch_size=2 * len(batch),
                reduction=reduction,
            )
            for index, pair in enumerate(batch):
                correct, wrong = scores[2 * index], scores[2 * index + 1]
                record = {"id": pair["id"], "score_correct": correct, "score_wrong": wrong}
                record["correct"] = outcome(correct, wrong)
                if pair.get("subset") is not None:
                    record["subset"] = pair["subset"]
                yield record
            bar.update(len(batch))


def pair_accuracy(records: Sequence[Mapping]) -> dict:
    """`{"accuracy", "correct", "total", "subsets": {subset: {"accuracy", "correct", "total"}}}` of pair records
    (`correct` summing their 1 / 0.5 / 0 outcomes); `subsets` is empty when no record has one."""

    def summary(group: Sequence[Mapping]) -> dict:
        correct = sum(record["correct"] for record in group)
        return {"accuracy": correct / len(group), "correct": correct, "total": len(group)}

    subsets: dict[str, list[Mapping]] = {}
    for record in records:
        if record.get("subset") is not None:
            subsets.setdefault(record["subset"], []).append(record)
    return {**summary(records), "subsets": {name: summary(group) for name, group in subsets.items()}}


def check_pairs(pairs: Sequence[Pair], what: str) -> None:
    """Refuses an empty pair list and repeated ids (every output record is keyed by its id)."""
    if not pairs:
        raise ValueError(f"{what}: no pairs found")
    seen = set()
    for pair in pairs:
        if pair["id"] in seen:
            raise ValueError(f"{what}: pair id {pair['id']!r} appears twice; ids must be unique")
        seen.add(pair["id"])


def read_gold_pairs(
    data_dir: str | os.PathLike,
    task: str,
    key_columns: Sequence[str],
    subset: Callable[[dict], str | None] = lambda row: None,
    gold_name: str = "gold.csv",
) -> list[Pair]:
    """
    The pairs of a folder of `.wav` files described by a gold CSV file (the ZeroSpeech 2021 sLM21 layout): a
    `filename` column (a wav's name without `.wav`), `correct` (1 for the real word / grammatical sentence, 0 for the
    other) and `key_columns`, whose values name the pair a row belongs to. Every pair needs exactly one row with
    `correct` 1 and one with 0, each naming an existing wav. Pairs keep the order of their first row; their id is
    their key values joined with `/`, their subset `subset(row)` of their correct row.
    """
    data_dir = Path(data_dir)
    gold = data_dir / gold_name
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{task}: data folder {data_dir} does not exist")
    if not gold.is_file():
        raise FileNotFoundError(
            f"{task}: {data_dir} has no {gold_name}; give the folder of a published split that holds its .wav files "
            f"and their {gold_name} (e.g. the sLM21 dataset's {'lexical' if task == 'swuggy' else 'syntactic'}/dev)"
        )
    with open(gold, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        missing = [
            column for column in ("filename", "correct", *key_columns) if column not in (reader.fieldnames or [])
        ]
        if missing:
            raise ValueError(f"{gold}: no {', '.join(map(repr, missing))} column(s); columns: {reader.fieldnames}")
        rows = list(reader)
    groups: dict[tuple, dict] = {}
    for line, row in enumerate(rows, start=2):
        if row["correct"] not in ("0", "1"):
            raise ValueError(f"{gold}, line {line}: 'correct' is {row['correct']!r}; it must be 1 or 0")
        side = "correct" if row["correct"] == "1" else "wrong"
        wav = data_dir / f"{row['filename']}.wav"
        if not wav.is_file():
            raise FileNotFoundError(f"{gold}, line {line}: {wav} does not exist")
        key = tuple(row[column] for column in key_columns)
        group = groups.setdefault(key, {"line": line, "subset": None})
        if side in group:
            raise ValueError(
                f"{gold}, line {line}: pair {'/'.join(key)} already has its {side} item on line {group[side][0]}"
            )
        group[side] = (line, wav)
        if side == "correct":
            group["subset"] = subset(row)
    pairs = []
    for key, group in groups.items():
        for side in ("correct", "wrong"):
            if side not in group:
                raise ValueError(
                    f"{gold}, line {group['line']}: pair {'/'.join(key)} has no {side} item (a row with correct="
                    f"{1 if side == 'correct' else 0}): the file is unpaired"
                )
        pair = Pair(
            id="/".join(key),
            correct={"type": "speech", "audio": group["correct"][1]},
            wrong={"type": "speech", "audio": group["wrong"][1]},
        )
        if group["subset"] is not None:
            pair["subset"] = group["subset"]
        pairs.append(pair)
    check_pairs(pairs, f"{task} {data_dir}")
    return pairs


def _resolve_audio(item, data_root: str | os.PathLike | None, location: str):
    """Speech segments of a pairs line with `audio` paths relative to `data_root`."""
    if isinstance(item, str):
        return item
    segments = [item] if isinstance(item, dict) else item
    if not isinstance(segments, list):
        raise ValueError(f"{location}: an item is a SPIRIT LM string, a segment dict or a list of them")
    resolved = []
    for segment in segments:
        if isinstance(segment, dict) and isinstance(segment.get("audio"), str):
            path = Path(data_root or ".") / segment["audio"]
            if not path.is_file():
                raise FileNotFoundError(f"{location}: audio file {path} does not exist (relative to --data-root)")
            segment = {**segment, "audio": path}
        resolved.append(segment)
    return resolved


def read_pairs_jsonl(path: str | os.PathLike, data_root: str | os.PathLike | None = None) -> list[Pair]:
    """
    The pairs of a JSONL file, one a line: `{"correct": ITEM, "wrong": ITEM, "prompt": ITEM (optional), "id"
    (optional; default: the line number), "subset" (optional)}`, an ITEM being a SPIRIT LM string or segments whose
    `audio` paths are relative to `data_root`.
    """
    pairs = []
    for line in read_jsonl(path, "pairs file"):
        location = f"pairs file {path}, line {line['_line']}"
        if "correct" not in line or "wrong" not in line:
            raise ValueError(f"{location}: a pair needs 'correct' and 'wrong' (and optionally 'prompt')")
        pair = Pair(id=str(line.get("id", line["_line"])))
        for key in ("correct", "wrong", "prompt"):
            if line.get(key) is not None:
                pair[key] = _resolve_audio(line[key], data_root, location)
        if line.get("subset") is not None:
            pair["subset"] = str(line["subset"])
        pairs.append(pair)
    check_pairs(pairs, f"pairs file {path}")
    return pairs


def pair_inputs(pairs: Sequence[Pair]) -> list[Path]:
    """The audio files the pairs read (none of which an output may be)."""

    def paths(item) -> Iterator[Path]:
        segments = [item] if isinstance(item, Mapping) else item if isinstance(item, list) else []
        for segment in segments:
            if isinstance(segment, Mapping) and isinstance(segment.get("audio"), (str, os.PathLike)):
                yield Path(segment["audio"])

    return [path for pair in pairs for key in ("prompt", "correct", "wrong") for path in paths(pair.get(key))]


def _load(repo: str | os.PathLike, device: str | None):
    from transformers import AutoModelForCausalLM, AutoProcessor

    processor = AutoProcessor.from_pretrained(repo)
    model = AutoModelForCausalLM.from_pretrained(repo).to(device).eval()
    if processor.speech_tokenizer is not None:
        processor.speech_tokenizer.to(device)
    return model, processor


def evaluate_pairs(
    repo: str | os.PathLike,
    pairs: Sequence[Pair],
    output: str | os.PathLike | None = None,
    batch_size: int = 8,
    reduction: str = "sum",
    device: str | None = None,
    resume: bool = False,
    force: bool = False,
    inputs: Sequence[str | os.PathLike] = (),
    progress: bool = True,
) -> dict | None:
    """
    Scores `pairs` with the SPIRIT LM of `repo` ([`score_pairs`]) into the JSONL `output`, one record per pair in
    pair order, and returns their [`pair_accuracy`] (on the main process; `None` on the others). Without `output`,
    one process scores them all and only the accuracy comes back.

    Under `torchrun` / `accelerate launch` every process scores a contiguous share of the batches ([`pair_batches`]:
    the same batches whatever the number of processes) into its part file, and the main process merges them; with
    `resume`, the batches whose pairs all have a record already are skipped, the others scored again (their missing
    records written), so that the merged file is the one an uninterrupted run writes, byte for byte. `output` is
    refused when it exists (unless `resume` or `force`) or when another job writes it; nothing is created then.
    """
    from ..sharding import distributed_state, finished_records, process_shard, sharded_output

    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; use one of {', '.join(map(repr, REDUCTIONS))}")
    if output is not None and os.fspath(output) == "-":
        raise ValueError("pair scores are written to a file (the accuracy comes from it): give -o FILE, not '-'")
    batches = pair_batches(pairs, batch_size)
    if output is None:
        model, processor = _load(repo, device)
        return pair_accuracy(list(score_pairs(model, processor, pairs, batch_size, reduction, progress)))
    state = distributed_state()
    device = state.device if state.num_processes > 1 else device
    order = [pair["id"] for pair in pairs]
    with sharded_output(output, state, key="id", order=order, resume=resume, force=force, inputs=inputs) as file:
        done = finished_records(output, "id") if resume else {}
        todo = [pair for batch in process_shard(batches, state) if any(p["id"] not in done for p in batch)
                for pair in batch]  # fmt: skip
        if todo:
            model, processor = _load(repo, device)
            records = score_pairs(model, processor, todo, batch_size, reduction, progress and state.is_main_process)
            for record in records:
                if record["id"] not in done:
                    file.write(json.dumps(record) + "\n")
    if not state.is_main_process:
        return None
    return pair_accuracy(read_jsonl(output, "pair scores"))


__all__ = [
    "Pair",
    "check_pairs",
    "evaluate_pairs",
    "outcome",
    "pair_accuracy",
    "pair_batches",
    "pair_inputs",
    "read_gold_pairs",
    "read_pairs_jsonl",
    "score_pairs",
]
