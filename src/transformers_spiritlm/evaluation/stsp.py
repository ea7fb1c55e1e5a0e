"""The Speech-Text Sentiment Preservation benchmark (STSP): continue a spoken or written prompt in speech or text, read
the sentiment of the continuation with a classifier, and score it against the prompt's (the official
spiritlm/eval/stsp/predict_stsp.py and spiritlm/eval/eval_stsp.py), batched, with per-item seeds."""

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList
from transformers.utils import logging

from .. import audio
from ..generation import SpiritLMModalityLogitsProcessor, check_context_length
from .manifest import audio_path, check_same_ids, predictions_by_id, read_jsonl, split_direction, where
from .sentiment import EMOTION_TO_SENTIMENT


logger = logging.get_logger(__name__)

# The official generation settings: sampling at temperature 0.8, top-p 0.95, 50 new tokens for text and 300 for
# speech, and up to 3 attempts when no output of the requested modality comes out.
TEMPERATURE, TOP_P, NUM_ATTEMPTS = 0.8, 0.95, 3
MAX_NEW_TOKENS = {"text": 50, "speech": 300}
# What an item id may hold to be its wav file's name as it is ("+" is kept for the names that add a hash).
_WAV_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
_WAV_STEM_LENGTH = 100


def read_stsp_manifest(
    path: str | os.PathLike, input_output: str | None = None, data_root: str | os.PathLike | None = None
) -> list[dict]:
    """
    Rows of an STSP manifest in the official JSONL format: `id`, `wav_path` (relative to `data_root`), `emotion`
    and/or `sentiment`, and `asr` (the transcript that text-input directions take as their prompt). Every row needs a
    unique `id`; with `input_output`, speech-input rows need an existing wav file (kept as `row["_audio"]`) and
    text-input rows a string `asr`. Errors name the line.
    """
    rows = read_jsonl(path)
    source = split_direction(input_output)[0] if input_output is not None else None
    seen: dict[str, int] = {}
    for row in rows:
        location = where(row, path)
        if "id" not in row:
            raise ValueError(f"{location}: no 'id' field; every STSP row needs a unique id")
        key = str(row["id"])
        if key in seen:
            raise ValueError(f"{location}: id {key!r} is already on line {seen[key]}; ids must be unique")
        seen[key] = row["_line"]
        if source == "speech":
            if "wav_path" not in row:
                raise ValueError(f"{location}: no 'wav_path' field, which {input_output} reads")
            row["_audio"] = audio_path(data_root, row["wav_path"], location)
        elif source == "text" and not isinstance(row.get("asr"), str):
            raise ValueError(f"{location}: no 'asr' transcript (a string), which {input_output} takes as its prompt")
    return rows


def reference_label(row: Mapping, label: str = "sentiment", location: str = "reference") -> str:
    """The gold label of a reference row, as the official `eval`: `row[label]`, or for `label="sentiment"` the
    sentiment of `row["emotion"]` when the row has none."""
    if label in row:
        return row[label]
    if label == "sentiment" and "emotion" in row:
        if row["emotion"] not in EMOTION_TO_SENTIMENT:
            raise ValueError(
                f"{location}: emotion {row['emotion']!r} has no sentiment; known: {', '.join(EMOTION_TO_SENTIMENT)}"
            )
        return EMOTION_TO_SENTIMENT[row["emotion"]]
    wanted = "'sentiment' or 'emotion'" if label == "sentiment" else repr(label)
    raise ValueError(f"{location}: no {wanted} field to score against")


def score_stsp(
    reference: str | os.PathLike, predictions: str | os.PathLike, label: str = "sentiment"
) -> dict[str, object]:
    """
    Accuracy of an STSP prediction JSONL (`{"id", "pred", ...}`) against a reference manifest, identical to the
    official `eval_stsp.eval`: exact match of `pred` with the reference `label` (emotion mapped to sentiment when a
    row has no `sentiment`). Ids must match one to one: an id missing on either side, or repeated, is a `ValueError`
    naming the line.

    Returns:
        `{"accuracy": correct / total, "correct", "total", "per_class": {label: {"correct", "total"}}}`.
    """
    refs = read_jsonl(reference, "reference")
    predicted = predictions_by_id(read_jsonl(predictions, "predictions"), predictions, "pred")
    check_same_ids(refs, predicted, reference, predictions)
    per_class: dict[str, dict[str, int]] = {}
    for row in refs:
        gold = reference_label(row, label, where(row, reference, "reference"))
        counts = per_class.setdefault(str(gold), {"correct": 0, "total": 0})
        counts["total"] += 1
        counts["correct"] += int(predicted[str(row["id"])][0] == gold)
    correct = sum(counts["correct"] for counts in per_class.values())
    return {
        "accuracy": correct / len(refs),
        "correct": correct,
        "total": len(refs),
        "per_class": dict(sorted(per_class.items())),
    }


def item_seed(seed: int, item_id: object, attempt: int = 0) -> int:
    """The sampling seed of one item: a hash of the run's seed, the item's id and the attempt, so that an item's
    output depends neither on the batch it is in nor on the process that generates it."""
    digest = hashlib.sha256(f"{seed}/{item_id}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class PerItemSamplingLogitsProcessor(LogitsProcessor):
    """
    Temperature + top-p sampling with one `torch.Generator` per batch row: every score but the drawn token's becomes
    `-inf`, so that greedy decoding (`do_sample=False`) takes it. Each row draws from its own seeded stream, whatever
    the other rows of the batch.
    """

    def __init__(self, seeds: Sequence[int], temperature: float = 1.0, top_p: float = 1.0):
        if temperature <= 0 or not 0 < top_p <= 1:
            raise ValueError(f"need temperature > 0 and 0 < top_p <= 1, got {temperature} and {top_p}")
        self.generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = (scores.float() / self.temperature).softmax(dim=-1)
        if self.top_p < 1:
            # As transformers' TopPLogitsWarper: drop the least likely tokens whose total is at most 1 - top_p.
            sorted_probs, order = probs.sort(dim=-1)
            drop = sorted_probs.cumsum(dim=-1) <= 1 - self.top_p
            drop[:, -1] = False
            probs = probs.scatter(-1, order, sorted_probs.masked_fill(drop, 0.0))
        probs = probs.cpu()
        tokens = [torch.multinomial(probs[row], 1, generator=gen)[0] for row, gen in enumerate(self.generators)]
        chosen = torch.full_like(scores, -float("inf"))
        chosen[torch.arange(len(tokens)), torch.stack(tokens).to(scores.device)] = 0.0
        return chosen


def _wav_name(item_id: object) -> str:
    """`<id>.wav` for an id of at most 100 lowercase ASCII letters, digits, `-`, `_` and `.`; for any other id, its
    first 100 characters lowercased (others made `_`), `+` and 16 hex digits of its SHA-256. Different ids get
    different names, on case-insensitive file systems too, and no name is too long for a file system."""
    item_id = str(item_id)
    if item_id and len(item_id) <= _WAV_STEM_LENGTH and all(c in _WAV_NAME_CHARACTERS for c in item_id):
        return f"{item_id}.wav"
    readable = "".join(c if c in _WAV_NAME_CHARACTERS else "_" for c in item_id.lower()[:_WAV_STEM_LENGTH])
    return f"{readable}+{hashlib.sha256(item_id.encode()).hexdigest()[:16]}.wav"


@torch.no_grad()
def predict_stsp(
    model,
    processor,
    rows: Sequence[Mapping],
    input_output: str,
    classifier,
    few_shot_prompt: str = "",
    vocoder=None,
    batch_size: int = 8,
    seed: int = 0,
    do_sample: bool = True,
    temperature: float = TEMPERATURE,
    top_p: float = TOP_P,
    max_new_tokens: int | None = None,
    num_attempts: int = NUM_ATTEMPTS,
    speaker_id: int | str = 2,
    write_wav: str | os.PathLike | None = None,
    progress: bool = False,
) -> Iterator[dict]:
    """
    Generates the continuation of each row of an STSP manifest and yields the official prediction records, in row
    order, one batch at a time: `{"id": str, "pred": sentiment, "generation": text}` for text outputs,
    `{"id", "pred"}` (+ `"generation": wav path` with `write_wav`) for speech outputs.

    Args:
        model, processor: a [`SpiritLMForCausalLM`] and its [`SpiritLMProcessor`] (with its speech tokenizer for
            speech inputs).
        rows: rows of [`read_stsp_manifest`] (speech inputs read `row["_audio"]`, text inputs `row["asr"]`).
        input_output: `"text_text"`, `"text_speech"`, `"speech_text"` or `"speech_speech"`.
        classifier: a [`SentimentClassifier`] of the output modality.
        few_shot_prompt: a prefix such as [`few_shot_prompt_from_manifest`] builds; the row's prompt follows it.
        vocoder: a [`SpiritLMVocoder`], needed for speech outputs.
        seed: with `do_sample`, each item samples from its own stream ([`item_seed`]), so outputs do not depend on
            batching or on the number of processes; `do_sample=False` is greedy.
        num_attempts: when sampling, an item whose output has nothing of the requested modality (e.g. speech too
            short to keep) is generated again with the next seed, at most this many times in all; then its `pred`
            is `None`.
        write_wav: folder for the speech outputs, one file per id: `<id>.wav`, or for an id that is not a
            short lowercase file name, its first 100 characters made safe, `+` and 16 hex digits of its hash.
    """
    source, target = split_direction(input_output)
    if target == "speech" and vocoder is None:
        raise ValueError(f"{input_output} classifies generated speech: pass the vocoder (the repo's vocoder/ folder)")
    if getattr(classifier, "modality", target) != target:
        raise ValueError(f"{input_output} needs a {target} classifier, got a {classifier.modality} one")
    if batch_size < 1 or num_attempts < 1:
        raise ValueError(f"batch_size ({batch_size}) and num_attempts ({num_attempts}) must be at least 1")
    tokenizer = processor.tokenizer
    eos_token_id = model.generation_config.eos_token_id or tokenizer.eos_token_id
    generation_config = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new_tokens or MAX_NEW_TOKENS[target],
        eos_token_id=eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    modality = SpiritLMModalityLogitsProcessor(model.config, target, eos_token_id)
    device = model.device
    wav_dir = Path(write_wav) if write_wav is not None else None
    if wav_dir is not None:
        wav_dir.mkdir(parents=True, exist_ok=True)

    def build_prompts(batch: list[Mapping]) -> list[str]:
        queries = [
            [
                {"type": "speech", "audio": row["_audio"]}
                if source == "speech"
                else {"type": "text", "text": row["asr"]}
            ]
            for row in batch
        ]
        try:
            return [few_shot_prompt + prompt for prompt in processor.build_prompts(queries, target)]
        except (OSError, ValueError, TypeError) as error:
            lines = ", ".join(str(row.get("_line", "?")) for row in batch)
            raise type(error)(f"manifest line(s) {lines} (prompts numbered from 0 in this batch): {error}") from None

    def generate(prompts: list[str], ids: list, attempt: int) -> list[dict | None]:
        """The first output segment of the target modality of each prompt (`None` when there is none)."""
        encoded = tokenizer(prompts, padding=True, padding_side="left", return_tensors="pt")
        for item_id, length in zip(ids, encoded["attention_mask"].sum(-1).tolist()):
            check_context_length(
                model.config, length, generation_config.max_new_tokens, f"the prompt of item {item_id}"
            )
        processors = LogitsProcessorList([modality])
        if do_sample:
            seeds = [item_seed(seed, item_id, attempt) for item_id in ids]
            processors.append(PerItemSamplingLogitsProcessor(seeds, temperature, top_p))
        sequences = model.generate(
            input_ids=encoded["input_ids"].to(device),
            attention_mask=encoded["attention_mask"].to(device),
            logits_processor=processors,
            generation_config=generation_config,
        )
        outputs = processor.post_process_generation(
            sequences, encoded["attention_mask"], target, vocoder if target == "speech" else None, speaker_id,
            eos_token_id,
        )  # fmt: skip
        results = []
        for segments in outputs:
            found = next((segment for segment in segments if segment["type"] == target), None)
            if target == "speech" and found is not None and len(found.get("audio", ())) == 0:
                found = None
            results.append(found)
        return results

    # Greedy decoding would give the same output again.
    attempts = num_attempts if do_sample else 1
    with tqdm(total=len(rows), desc=f"STSP {input_output}", unit="item", disable=not progress) as bar:
        for start in range(0, len(rows), batch_size):
            batch = list(rows[start : start + batch_size])
            prompts = build_prompts(batch)
            outputs: list = [None] * len(batch)
            pending = list(range(len(batch)))
            for attempt in range(attempts):
                if not pending:
                    break
                results = generate([prompts[i] for i in pending], [batch[i]["id"] for i in pending], attempt)
                for index, output in zip(pending, results):
                    outputs[index] = output
                pending = [index for index in pending if outputs[index] is None]
            for row, output in zip(batch, outputs):
                record = {"id": str(row["id"])}
                if output is None:
                    logger.warning(f"item {row['id']}: no {target} output after {attempts} attempt(s); pred is null")
                    record["pred"] = None
                elif target == "text":
                    record["pred"] = classifier(output["text"])
                    record["generation"] = output["text"]
                else:
                    record["pred"] = classifier(output["audio"], output["sampling_rate"])
                    if wav_dir is not None:
                        path = wav_dir / _wav_name(row["id"])
                        audio.write_wav(path, output["audio"], output["sampling_rate"])
                        record["generation"] = str(path)
                yield record
            bar.update(len(batch))


def write_records(records: Iterator[dict], file) -> int:
    """Writes records as JSON lines to an open text file, one at a time; returns how many."""
    count = 0
    for record in records:
        file.write(json.dumps(record) + "\n")
        count += 1
    return count


__all__ = [
    "MAX_NEW_TOKENS",
    "NUM_ATTEMPTS",
    "PerItemSamplingLogitsProcessor",
    "item_seed",
    "predict_stsp",
    "read_stsp_manifest",
    "reference_label",
    "score_stsp",
    "write_records",
]
