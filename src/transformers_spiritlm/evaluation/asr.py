"""Few-shot speech recognition (the paper's ASR task): each clip of a manifest after `(speech, transcript)` examples in
the official few-shot layout, the model's text answer taken as the hypothesis; batched, sharded, resumable."""

import os
from collections.abc import Iterator, Mapping, Sequence

from tqdm.auto import tqdm

from ..sharding import distributed_state, run_sharded
from .continuations import generate_segments, load_models, query_prompts
from .few_shot import select_few_shot_rows, transcript_examples
from .manifest import read_manifest


ASR_FIELDS = ("wav_path", "text")
ASR_MAX_NEW_TOKENS = 100
TEMPERATURE, TOP_P, NUM_ATTEMPTS = 0.8, 0.95, 3


def first_line(text: str) -> str:
    """The answer of a few-shot prompt: the generated text up to its first newline (the layout's separator between
    examples), stripped."""
    return text.split("\n", 1)[0].strip()


def read_few_shot_rows(
    manifest: str | os.PathLike | None,
    shots: int,
    data_root: str | os.PathLike | None = None,
    seed: int | None = None,
) -> list[dict]:
    """The examples of an ASR or TTS run: [`select_few_shot_rows`] of a manifest of `id`, `wav_path` (under
    `data_root`) and `text`; none for `shots=0`."""
    if shots < 0:
        raise ValueError(f"--shots must be at least 0, got {shots}")
    if (shots > 0) != (manifest is not None):
        raise ValueError("give --shots N (N > 0) together with --few-shot-manifest (rows of id, wav_path, text)")
    if shots == 0:
        return []
    return select_few_shot_rows(read_manifest(manifest, ASR_FIELDS, data_root, "few-shot manifest"), shots, seed)


def few_shot_prefix(processor, rows: Sequence[Mapping], input_output: str) -> str:
    """The official few-shot layout of `rows` for ASR (`"speech_text"`) or TTS (`"text_speech"`); `""` without
    rows."""
    return processor.build_few_shot_prompt(transcript_examples(rows, input_output)) if rows else ""


def transcribe(
    model,
    processor,
    rows: Sequence[Mapping],
    few_shot_prompt: str = "",
    batch_size: int = 8,
    seed: int = 0,
    do_sample: bool = True,
    temperature: float = TEMPERATURE,
    top_p: float = TOP_P,
    max_new_tokens: int = ASR_MAX_NEW_TOKENS,
    num_attempts: int = NUM_ATTEMPTS,
    progress: bool = False,
) -> Iterator[dict]:
    """
    Yields `{"id": str, "hyp": str, "ref": str}` for each row of an ASR manifest ([`read_manifest`] with `wav_path`
    and `text`), in row order: the prompt is `few_shot_prompt`, the clip as speech and `[Text]`; `hyp` is the first
    line of the text answer ([`first_line`]), `""` when none comes out. Sampling is per item as in `eval stsp`
    ([`generate_segments`]); `do_sample=False` is greedy.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    with tqdm(total=len(rows), desc="ASR", unit="item", disable=not progress) as bar:
        for start in range(0, len(rows), batch_size):
            batch = list(rows[start : start + batch_size])
            queries = [[{"type": "speech", "audio": row["_audio"]}] for row in batch]
            outputs = generate_segments(
                model, processor, query_prompts(processor, batch, queries, "text", few_shot_prompt),
                [row["id"] for row in batch], "text", max_new_tokens, do_sample=do_sample, seed=seed,
                temperature=temperature, top_p=top_p, num_attempts=num_attempts,
            )  # fmt: skip
            for row, output in zip(batch, outputs):
                hypothesis = first_line(output["text"]) if output is not None else ""
                yield {"id": str(row["id"]), "hyp": hypothesis, "ref": str(row["text"])}
            bar.update(len(batch))


def evaluate_asr(
    repo: str | os.PathLike,
    manifest: str | os.PathLike,
    output: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    few_shot_manifest: str | os.PathLike | None = None,
    shots: int = 0,
    few_shot_seed: int | None = None,
    few_shot_data_root: str | os.PathLike | None = None,
    device: str | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = False,
    **options,
) -> dict[str, int]:
    """
    `spiritlm eval asr`: [`transcribe`] every row of `manifest` (`id`, `wav_path` under `data_root`, `text`) into the
    JSONL `output`, this process's shard of it under `torchrun` / `accelerate launch` ([`run_sharded`]: resumable,
    one job per output). `options` go to [`transcribe`]. Returns `{"written", "skipped"}` of this process.
    """
    rows = read_manifest(manifest, ASR_FIELDS, data_root)
    examples = read_few_shot_rows(few_shot_manifest, shots, few_shot_data_root or data_root, few_shot_seed)
    state = distributed_state()
    device = state.device if state.num_processes > 1 else device

    def predict(todo: list[dict]) -> Iterator[dict]:
        model, processor, _ = load_models(repo, device)
        prefix = few_shot_prefix(processor, examples, "speech_text")
        yield from transcribe(model, processor, todo, prefix, progress=progress and state.is_main_process, **options)

    inputs = [path for path in (manifest, few_shot_manifest) if path] + [row["_audio"] for row in rows + examples]
    return run_sharded(output, rows, predict, state, resume=resume, force=force, inputs=inputs)


__all__ = [
    "ASR_FIELDS",
    "ASR_MAX_NEW_TOKENS",
    "evaluate_asr",
    "few_shot_prefix",
    "first_line",
    "read_few_shot_rows",
    "transcribe",
]
