"""The Speech-Text Sentiment Preservation benchmark (STSP): continue a spoken or written prompt in speech or text, read
the sentiment of the continuation with a classifier, and score it against the prompt's (the official
spiritlm/eval/stsp/predict_stsp.py and spiritlm/eval/eval_stsp.py), batched, with per-item seeds."""

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers.utils import logging

from .. import audio
from .continuations import generate_segments, query_prompts, wav_file_name
from .few_shot import few_shot_prompt_from_manifest
from .manifest import audio_path, check_same_ids, predictions_by_id, read_jsonl, split_direction, where
from .sentiment import EMOTION_TO_SENTIMENT, SentimentClassifier


logger = logging.get_logger(__name__)

# The official generation settings: sampling at temperature 0.8, top-p 0.95, 50 new tokens for text and 300 for
# speech, and up to 3 attempts when no output of the requested modality comes out.
TEMPERATURE, TOP_P, NUM_ATTEMPTS = 0.8, 0.95, 3
MAX_NEW_TOKENS = {"text": 50, "speech": 300}


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
        return query_prompts(processor, batch, queries, target, few_shot_prompt)

    # Greedy decoding would give the same output again.
    attempts = num_attempts if do_sample else 1
    with tqdm(total=len(rows), desc=f"STSP {input_output}", unit="item", disable=not progress) as bar:
        for start in range(0, len(rows), batch_size):
            batch = list(rows[start : start + batch_size])
            outputs = generate_segments(
                model, processor, build_prompts(batch), [row["id"] for row in batch], target, vocoder=vocoder,
                do_sample=do_sample, seed=seed, temperature=temperature, top_p=top_p,
                max_new_tokens=max_new_tokens or MAX_NEW_TOKENS[target], num_attempts=attempts, speaker_id=speaker_id,
            )  # fmt: skip
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
                        path = wav_dir / wav_file_name(row["id"])
                        audio.write_wav(path, output["audio"], output["sampling_rate"])
                        record["generation"] = str(path)
                yield record
            bar.update(len(batch))


@dataclass
class StspRun:
    """What [`run_stsp`] did in this process: items of its shard predicted now and found done by a resumed run, and,
    in the main process, the score of the merged predictions (`score`) or why there is none (`score_error`)."""

    written: int
    already_done: int
    process_index: int = 0
    num_processes: int = 1
    score: dict | None = None
    score_error: str | None = None


def run_stsp(
    repo: str | os.PathLike,
    manifest: str | os.PathLike,
    input_output: str,
    output: str | os.PathLike,
    text_classifier: str | None = None,
    speech_classifier: str | None = None,
    label_map: Mapping[str, str] | None = None,
    text_classifier_tokenizer: str | None = None,
    data_root: str | os.PathLike | None = None,
    few_shot: int = 0,
    few_shot_manifest: str | os.PathLike | None = None,
    few_shot_data_root: str | os.PathLike | None = None,
    device: str | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    gguf: str | os.PathLike | None = None,
    **generation_kwargs,
) -> StspRun:
    """
    The whole STSP run of `spiritlm eval stsp`: predicts every row of the official `manifest` for `input_output` with
    the converted repo `repo` ([`predict_stsp`], which takes `generation_kwargs`: `batch_size`, `seed`, `do_sample`,
    `temperature`, `top_p`, `max_new_tokens`, `speaker_id`, `write_wav`), writes the official prediction JSONL to
    `output` and scores it ([`score_stsp`]). The classifier of the output modality (`text_classifier` or
    `speech_classifier`, a Hugging Face model path) reads the sentiment; `few_shot` examples from
    `few_shot_manifest` make the official few-shot prefix. Under `accelerate launch` / `torchrun` each process
    predicts one shard; `resume=True` skips items an interrupted run wrote (see `sharding.sharded_output`). With
    `gguf`, the language model runs in llama.cpp from that export of `repo`, one item at a time (each item samples
    from its own seed, so the predictions are those of a batched run).
    """
    from transformers import AutoProcessor

    from ..modeling_spiritlm import load_language_model
    from ..sharding import distributed_state, run_sharded
    from ..vocoder import load_vocoder

    target = split_direction(input_output)[1]
    classifier_path = text_classifier if target == "text" else speech_classifier
    if classifier_path is None:
        raise ValueError(f"{input_output} outputs {target}: give --{target}-classifier (a Hugging Face model path)")
    if few_shot and not few_shot_manifest:
        raise ValueError("--few-shot needs --few-shot-manifest (the official t2t/t2s/s2t/s2s.jsonl of this direction)")
    state = distributed_state()
    device = state.device if state.num_processes > 1 else device
    rows = read_stsp_manifest(manifest, input_output, data_root)
    inputs = [path for path in (manifest, few_shot_manifest, *(row.get("_audio") for row in rows)) if path]

    def predict(todo: list[dict]) -> Iterator[dict]:
        classifier = SentimentClassifier.from_pretrained(
            classifier_path, target, label_map, tokenizer=text_classifier_tokenizer, device=device
        )
        processor = AutoProcessor.from_pretrained(repo)
        model = load_language_model(repo, device, gguf)
        if processor.speech_tokenizer is not None:
            processor.speech_tokenizer.to(device)
        vocoder = load_vocoder(repo).to(device) if target == "speech" else None
        prefix = ""
        if few_shot:
            prefix = few_shot_prompt_from_manifest(
                processor,
                few_shot_manifest,
                input_output,
                few_shot,
                few_shot_data_root or data_root,
                seed=generation_kwargs.get("seed", 0),
            )
        yield from predict_stsp(
            model,
            processor,
            todo,
            input_output,
            classifier,
            few_shot_prompt=prefix,
            vocoder=vocoder,
            progress=state.is_main_process and progress,
            **{**generation_kwargs, **({"batch_size": 1} if gguf is not None else {})},
        )

    counts = run_sharded(output, rows, predict, state, key="id", resume=resume, force=force, inputs=inputs)
    run = StspRun(counts["written"], counts["skipped"], state.process_index, state.num_processes)
    if state.is_main_process:
        try:
            run.score = score_stsp(manifest, output)
        except ValueError as error:
            run.score_error = str(error)
    return run


__all__ = [
    "MAX_NEW_TOKENS",
    "NUM_ATTEMPTS",
    "StspRun",
    "predict_stsp",
    "read_stsp_manifest",
    "reference_label",
    "run_stsp",
    "score_stsp",
]
