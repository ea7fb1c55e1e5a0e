"""The `spiritlm serve` web page: a Gradio app that streams SPIRIT LM's spoken and written answers.

Needs the `[web]` extra (gradio; with the `ffmpeg` executable the spoken answer streams, without it it plays once
complete). Nothing in the core imports this module. A Hugging Face Space's `app.py` is two lines:

```python
from transformers_spiritlm.web import build_app
build_app("path/or/hub-id/of/a/converted/spiritlm-repo").launch()
```
"""

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import gradio as gr
import numpy as np
from transformers import Pipeline, pipeline
from transformers.utils import logging

from .audio import check_sampling_rate, read_audio_file, read_audio_info, wav_bytes, write_wav
from .modalities import OUTPUT_MODALITIES, SPEECH


logger = logging.get_logger(__name__)

DEFAULT_MAX_UPLOAD_MB = 20.0
# A minute of speech makes at most 60 * (25 + 12.5 + 1) = 2,310 EXPRESSIVE tokens (hubert, pitch and style units,
# fewer once deduplicated), 10,000 characters of English ~2,500 text tokens: either leaves room for an answer in
# SPIRIT LM's 4,096 positions. The pipeline refuses whatever still does not fit.
DEFAULT_MAX_AUDIO_SECONDS = 60.0
DEFAULT_MAX_TEXT_CHARS = 10_000
PROMPT_ORDERS = ("speech, then text", "text, then speech")


def build_app(
    model: str | os.PathLike | Pipeline,
    *,
    device: str | None = None,
    concurrency_limit: int = 1,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS,
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
    title: str = "SPIRIT LM",
    description: str | None = None,
) -> gr.Blocks:
    """
    The web page as a Gradio `Blocks`, ready to `.launch()`.

    Args:
        model: a converted repo (folder or Hub id) or a loaded `"spirit-lm"` pipeline. It is loaded here, once per app.
        device: where to load a repo (`"cpu"`, `"cuda"`, ...); ignored for a pipeline.
        concurrency_limit: generations run at the same time; further requests wait in the queue. Keep 1 on CPU.
            Seeded answers are reproducible only with 1 (seeding sets the process-wide random state).
        max_upload_mb: larger uploads (or recordings) are refused with a message.
        max_audio_seconds, max_text_chars: longer spoken or written questions are refused with a message, before
            the audio is decoded or any model runs.
        title, description: the page's title, and a note under it (markdown) about the model.

    The full answer WAVs live in a temporary folder of the app, each deleted when its request ends, the folder when
    the process exits.
    """
    if concurrency_limit < 1:
        raise ValueError(f"concurrency_limit must be at least 1, got {concurrency_limit}")
    for name, value in [("max_upload_mb", max_upload_mb), ("max_audio_seconds", max_audio_seconds)]:
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    if max_text_chars < 1:
        raise ValueError(f"max_text_chars must be at least 1, got {max_text_chars}")
    stream_audio = shutil.which("ffmpeg") is not None
    if not stream_audio:
        logger.warning(
            "the ffmpeg executable is not installed: the page plays each spoken answer once it is complete instead of "
            "streaming it. Install ffmpeg to stream, e.g. apt-get install ffmpeg"
        )
    pipe = model if isinstance(model, Pipeline) else pipeline("spirit-lm", model=os.fspath(model), device=device)
    # Removed when the app is garbage collected or the process exits (the closure below keeps it alive until then).
    answers = tempfile.TemporaryDirectory(prefix="spiritlm-web-")
    limits = {
        "max_upload_bytes": int(max_upload_mb * 1024 * 1024),
        "max_audio_seconds": max_audio_seconds,
        "max_text_chars": max_text_chars,
    }

    def answer(audio_path, text, order, output_modality, speaker_id, temperature, top_p, max_new_tokens, seed, sample):
        segments = prompt_segments(pipe, audio_path, text, order, **limits)
        kwargs = {"max_new_tokens": int(max_new_tokens), "do_sample": bool(sample)}
        if sample:
            kwargs.update(temperature=float(temperature), top_p=float(top_p))
        if seed is not None:
            kwargs["seed"] = int(seed)
        if output_modality != "text":
            kwargs["speaker_id"] = int(speaker_id)
        yield from _stream_answer(pipe, segments, output_modality, kwargs, Path(answers.name), stream_audio)

    with gr.Blocks(title=title, delete_cache=(3600, 3600)) as app:
        gr.Markdown(
            f"# {title}\nAsk by voice, by text, or both; the answer is written and spoken as it is generated.\n\n"
            f"Model: `{_model_name(pipe)}` ({pipe.model.config.variant}) on `{pipe.device}`. {description or ''}"
        )
        with gr.Row():
            with gr.Column():
                audio_in = gr.Audio(
                    sources=["upload", "microphone"],
                    type="filepath",
                    label="Spoken question",
                    elem_id="question-audio",
                )
                text_in = gr.Textbox(label="Written question", lines=2, elem_id="question-text")
                order = gr.Radio(list(PROMPT_ORDERS), value=PROMPT_ORDERS[0], label="Prompt order", elem_id="order")
                # The default answer, speech, comes first.
                answer_modalities = sorted(OUTPUT_MODALITIES, key=lambda output_modality: output_modality != SPEECH)
                modality = gr.Radio(answer_modalities, value=SPEECH, label="Answer as", elem_id="output-modality")
                speaker = gr.Dropdown(_speaker_choices(pipe), value=_default_speaker(pipe), label="Voice")
                with gr.Accordion("Sampling", open=False):
                    sample = gr.Checkbox(value=True, label="Sample (off: greedy)")
                    temperature = gr.Slider(0.05, 2.0, value=0.8, step=0.05, label="Temperature")
                    top_p = gr.Slider(0.05, 1.0, value=0.95, step=0.05, label="Top p")
                    max_new_tokens = gr.Slider(1, 1000, value=200, step=1, label="Max new tokens")
                    seed = gr.Number(value=0, precision=0, label="Seed (empty: random)", elem_id="seed")
                button = gr.Button("Answer", variant="primary", elem_id="answer-button")
            with gr.Column():
                text_out = gr.Textbox(label="Answer", lines=6, interactive=False, elem_id="answer-text")
                audio_out = gr.Audio(
                    label="Spoken answer",
                    streaming=stream_audio,
                    autoplay=True,
                    interactive=False,
                    elem_id="answer-audio",
                )
                with gr.Accordion("Speech units", open=False, elem_id="units-panel"):
                    units_out = gr.Textbox(
                        label="Speech units",
                        show_label=False,
                        lines=4,
                        max_lines=6,
                        interactive=False,
                        elem_id="answer-units",
                    )
                wav_out = gr.File(label="Full answer (WAV)", interactive=False, elem_id="answer-wav")
        button.click(
            answer,
            [audio_in, text_in, order, modality, speaker, temperature, top_p, max_new_tokens, seed, sample],
            [text_out, audio_out, units_out, wav_out],
            api_name="answer",
            concurrency_limit=concurrency_limit,
            trigger_mode="once",
        )
    app.queue(default_concurrency_limit=concurrency_limit)
    return app


def _model_name(pipe: Pipeline) -> str:
    """A Hub id, or a local folder's name (its full path is nobody's business on a shared page)."""
    name = pipe.model.name_or_path
    return os.path.basename(name.rstrip("/")) if os.path.isdir(name) else name


def _speaker_choices(pipe: Pipeline) -> list[tuple[str, int]]:
    config = getattr(pipe.vocoder, "config", None)
    if config is None or not config.num_speakers:
        return [("default", 0)]
    names = config.speakers or [str(index) for index in range(config.num_speakers)]
    return [(name, index) for index, name in enumerate(names)]


def _default_speaker(pipe: Pipeline) -> int:
    """The pipeline's default speaker (2, as official) where the vocoder has it."""
    return 2 if len(_speaker_choices(pipe)) > 2 else 0


def _refuse(message: str) -> gr.Error:
    """The error the page shows for a bad request; the server log gets one line, not gradio's traceback."""
    logger.warning(f"refused a request: {message}")
    return gr.Error(message, print_exception=False)


def prompt_segments(
    pipe: Pipeline,
    audio_path,
    text,
    order: str,
    *,
    max_upload_bytes: int,
    max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS,
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
) -> list[dict]:
    """The prompt as pipeline segments, or a `gr.Error` the page shows: nothing given, an oversize upload, a file
    that is not audio, audio at an impossible rate, too short for the speech tokenizer or over the server's length,
    text over the server's length."""
    text = (text or "").strip()
    if not audio_path and not text:
        raise _refuse("Nothing to answer: record or upload a spoken question, type a written one, or both.")
    if len(text) > max_text_chars:
        raise _refuse(
            f"The written question has {len(text)} characters; this server takes at most {max_text_chars}. Shorten it."
        )
    segments = []
    if audio_path:
        name = Path(audio_path).name
        size = os.path.getsize(audio_path)
        if size > max_upload_bytes:
            raise _refuse(
                f"The audio {name} is {size / 2**20:.1f} MB; this server takes at most "
                f"{max_upload_bytes / 2**20:g} MB. Upload a shorter clip."
            )
        speech_tokenizer = pipe.processor.speech_tokenizer
        if speech_tokenizer is None:
            raise _refuse("This model has no speech tokenizer, so it cannot listen: type a written question.")
        unreadable = f"Could not read {name} as audio: upload a WAV, FLAC, OGG or MP3 file."
        try:
            frames, rate = read_audio_info(audio_path)
        except ValueError:
            raise _refuse(unreadable) from None
        try:
            check_sampling_rate(rate, f"The audio {name}")
        except ValueError as error:
            raise _refuse(str(error)) from None
        # From the header, before decoding: a small compressed file can hold hours of silence.
        seconds = frames / rate
        if seconds > max_audio_seconds:
            raise _refuse(
                f"The audio {name} lasts {seconds:.1f} s; this server takes at most {max_audio_seconds:g} s. "
                "Upload a shorter clip."
            )
        minimum = speech_tokenizer.config.min_chunk_samples / speech_tokenizer.config.sampling_rate
        if seconds < minimum:
            raise _refuse(f"The audio {name} lasts {1000 * seconds:.0f} ms; speak for at least {1000 * minimum:g} ms.")
        try:
            waveform, rate = read_audio_file(audio_path)
        except ValueError:
            raise _refuse(unreadable) from None
        segments.append({"type": "speech", "audio": waveform, "sampling_rate": rate})
    if text:
        segments.append({"type": "text", "text": text})
    return segments if order == PROMPT_ORDERS[0] else segments[::-1]


def _stream_answer(
    pipe: Pipeline, segments: list[dict], output_modality: str, kwargs: dict, answers_dir: Path, stream_audio: bool
) -> Iterator[tuple]:
    """Yields `(transcript, audio, units, full WAV path or None)` as `pipe.stream` produces the answer. The transcript
    shows text as written and each spoken stretch as `[speech 1.23 s]`. The audio is each chunk as WAV bytes with
    `stream_audio`; without it, nothing until the full WAV's path at the end."""
    answer = _Answer()
    yield "", None, "", None
    try:
        # Closing the stream stops the generation: a cancelled or disconnected request frees the model at once.
        with closing(pipe.stream(segments, output_modality=output_modality, **kwargs)) as chunks:
            for chunk in chunks:
                answer.add(chunk)
                voiced = stream_audio and len(chunk.get("audio", ())) > 0
                audio = wav_bytes(chunk["audio"], chunk["sampling_rate"]) if voiced else None
                yield answer.transcript, audio, answer.units, None
    except (ValueError, TypeError) as error:  # bad settings or prompt content, found by the library
        raise _refuse(f"Could not answer: {error}") from None
    if not any(len(audio) for audio in answer.audio):
        yield answer.transcript or "(no answer generated)", None, answer.units, None
        return
    wav_path = answers_dir / f"answer-{uuid.uuid4().hex[:12]}.wav"
    write_wav(wav_path, np.concatenate(answer.audio), answer.sampling_rate)
    try:
        # Gradio copies the file into its own cache (cleaned hourly and at shutdown) before it resumes or closes the
        # generator, which it does also when the client has gone.
        yield answer.transcript, None if stream_audio else str(wav_path), answer.units, str(wav_path)
    finally:
        wav_path.unlink()


class _Answer:
    """The streamed answer so far: text deltas and speech chunks, in order."""

    def __init__(self):
        self.parts: list[list] = []  # ["text", str] or ["speech", samples, units]
        self.audio: list[np.ndarray] = []
        self.sampling_rate = 16000

    def add(self, chunk: dict) -> None:
        kind = chunk["type"]
        if kind == "text":
            if self.parts and self.parts[-1][0] == "text":
                self.parts[-1][1] += chunk["text"]
            else:
                self.parts.append(["text", chunk["text"]])
            return
        samples = len(chunk["audio"]) if "audio" in chunk else 0
        if "audio" in chunk:
            self.audio.append(chunk["audio"])
            self.sampling_rate = chunk["sampling_rate"]
        if self.parts and self.parts[-1][0] == "speech":
            self.parts[-1][1] += samples
            self.parts[-1][2] += chunk["units"]
        else:
            self.parts.append(["speech", samples, chunk["units"]])

    @property
    def transcript(self) -> str:
        return "".join(map(self._describe, self.parts)).strip()

    def _describe(self, part: list) -> str:
        if part[0] == "text":
            return part[1]
        if part[1] == 0:  # too short to vocode (official rule), or not vocoded yet
            return " [speech, no audio] "
        return f" [speech {part[1] / self.sampling_rate:.2f} s] "

    @property
    def units(self) -> str:
        return "\n".join(part[2] for part in self.parts if part[0] == "speech")


__all__ = ["build_app"]
