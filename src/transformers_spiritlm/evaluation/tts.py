"""Few-shot speech synthesis (the paper's TTS task): each text of a manifest after `(transcript, speech)` examples in
the official few-shot layout, the model's speech answer vocoded to a WAV and read back by an ASR model, whose
transcript is the hypothesis; batched, sharded, resumable."""

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from tqdm.auto import tqdm
from transformers.utils import logging

from .. import audio
from ..sharding import distributed_state, run_sharded
from .asr import NUM_ATTEMPTS, TEMPERATURE, TOP_P, few_shot_prefix, read_few_shot_rows
from .continuations import generate_segments, load_models, query_prompts, wav_file_name
from .manifest import read_manifest


logger = logging.get_logger(__name__)

TTS_MAX_NEW_TOKENS = 500


def load_asr_pipeline(model: str | os.PathLike, device: str | None = None):
    """`pipeline("automatic-speech-recognition")` of a transformers CTC (wav2vec2, HuBERT, ...) or speech
    sequence-to-sequence (Whisper, ...) model; any other model is a `ValueError` naming it, before it loads."""
    from transformers import AutoConfig, pipeline
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CTC_MAPPING_NAMES,
        MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES,
    )

    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as error:
        raise ValueError(f"--asr-model {model} is not a transformers model folder or Hub id ({error})") from None
    if config.model_type not in {**MODEL_FOR_CTC_MAPPING_NAMES, **MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES}:
        raise ValueError(
            f"--asr-model {model} is a {config.model_type!r} model, not a speech recognition one: give an "
            "automatic-speech-recognition model (CTC such as wav2vec2 / HuBERT, or sequence-to-sequence such as "
            "Whisper)"
        )
    return pipeline("automatic-speech-recognition", model=str(model), device=device)


def synthesise(
    model,
    processor,
    vocoder,
    asr,
    rows: Sequence[Mapping],
    wav_dir: str | os.PathLike,
    few_shot_prompt: str = "",
    batch_size: int = 8,
    seed: int = 0,
    do_sample: bool = True,
    temperature: float = TEMPERATURE,
    top_p: float = TOP_P,
    max_new_tokens: int = TTS_MAX_NEW_TOKENS,
    num_attempts: int = NUM_ATTEMPTS,
    speaker_id: int | str = 2,
    progress: bool = False,
) -> Iterator[dict]:
    """
    Yields `{"id", "hyp", "ref", "wav", "units"}` for each row of a TTS manifest (`id`, `text`), in row order: the
    prompt is `few_shot_prompt`, the text and `[Speech]`; the speech answer is vocoded into `wav_dir` (one file per
    id, [`wav_file_name`]) and `asr` (a speech recognition pipeline) transcribes it, one clip at a time, into `hyp`.
    An item with no speech output gets `hyp` `""`, `wav` and `units` `null`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    wav_dir = Path(wav_dir)
    wav_dir.mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(rows), desc="TTS", unit="item", disable=not progress) as bar:
        for start in range(0, len(rows), batch_size):
            batch = list(rows[start : start + batch_size])
            queries = [[{"type": "text", "text": str(row["text"])}] for row in batch]
            outputs = generate_segments(
                model, processor, query_prompts(processor, batch, queries, "speech", few_shot_prompt),
                [row["id"] for row in batch], "speech", max_new_tokens, vocoder=vocoder, do_sample=do_sample,
                seed=seed, temperature=temperature, top_p=top_p, num_attempts=num_attempts, speaker_id=speaker_id,
            )  # fmt: skip
            for row, output in zip(batch, outputs):
                record = {"id": str(row["id"]), "hyp": "", "ref": str(row["text"]), "wav": None, "units": None}
                if output is None:
                    logger.warning(f"item {row['id']}: no speech output; hyp is empty")
                else:
                    path = wav_dir / wav_file_name(row["id"])
                    audio.write_wav(path, output["audio"], output["sampling_rate"])
                    # One clip at a time: padding changes what wav2vec2 models without an attention mask hear, so a
                    # batched transcript would depend on its batch.
                    transcript = asr({"raw": output["audio"], "sampling_rate": output["sampling_rate"]})["text"]
                    record.update(hyp=transcript.strip(), wav=str(path), units=output["units"])
                yield record
            bar.update(len(batch))


def evaluate_tts(
    repo: str | os.PathLike,
    manifest: str | os.PathLike,
    output: str | os.PathLike,
    asr_model: str | os.PathLike,
    wav_dir: str | os.PathLike,
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
    `spiritlm eval tts`: [`synthesise`] every row of `manifest` (`id`, `text`) into the JSONL `output` and WAVs in
    `wav_dir`, transcribed by `asr_model` ([`load_asr_pipeline`], checked before anything is written); sharded and
    resumable as [`evaluate_asr`]. `options` go to [`synthesise`].
    """
    rows = read_manifest(manifest, ("text",))
    examples = read_few_shot_rows(few_shot_manifest, shots, few_shot_data_root, few_shot_seed)
    state = distributed_state()
    device = state.device if state.num_processes > 1 else device
    asr = load_asr_pipeline(asr_model, device)

    def predict(todo: list[dict]) -> Iterator[dict]:
        model, processor, vocoder = load_models(repo, device, vocoder=True)
        prefix = few_shot_prefix(processor, examples, "text_speech")
        yield from synthesise(
            model, processor, vocoder, asr, todo, wav_dir, prefix, progress=progress and state.is_main_process,
            **options,
        )  # fmt: skip

    inputs = [path for path in (manifest, few_shot_manifest) if path] + [row["_audio"] for row in examples]
    return run_sharded(output, rows, predict, state, resume=resume, force=force, inputs=inputs)


__all__ = ["TTS_MAX_NEW_TOKENS", "evaluate_tts", "load_asr_pipeline", "synthesise"]
