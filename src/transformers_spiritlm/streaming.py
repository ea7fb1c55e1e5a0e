"""Streaming SPIRIT LM output: text deltas and vocoded speech chunks while `generate` is still running."""

import random
from queue import Queue

import numpy as np
import torch
from transformers import PreTrainedModel, StoppingCriteria
from transformers.generation.streamers import BaseStreamer
from transformers.utils import logging

from .modalities import ARBITRARY, SPEECH, TEXT, check_output_modality
from .processing_spiritlm import (
    MIN_SPEECH_HUBERT_COUNT,
    ends_with_unit_token,
    last_speech_start,
    parse_generation,
    starts_with_unit_token,
)
from .units import string_to_units


logger = logging.get_logger(__name__)

_UNIT_PREFIXES = ("Hu", "Pi", "St")
_MARKERS = ("Text]", "Speech]")


class _End:
    """Queue item: `generate` called `end()`."""


class _Failure:
    """Queue item: generation raised `error`."""

    def __init__(self, error: BaseException):
        self.error = error


class SpiritLMStreamer(BaseStreamer):
    r"""
    Streams a SPIRIT LM generation as it is produced: text deltas and vocoded speech chunks. Pass it to
    `model.generate(..., streamer=streamer)` (batch size 1) running in another thread and iterate over it, as with
    transformers' `TextIteratorStreamer`; [`~SpiritLMPipeline.stream`] does both for you.

    Each item is `{"type": "text", "text": delta}` or `{"type": "speech", "audio": float32 np.ndarray,
    "sampling_rate": 16000, "units": str}` (the unit tokens the audio covers). The text and speech split is the
    one of [`~SpiritLMProcessor.decode_generation`] on the whole output, so that:

    - the text deltas of a segment join into its text (decoded from the whole output: no broken multi-byte
      characters, no lost spaces; the whitespace the offline result strips at the end is never sent);
    - the speech chunks of a segment concatenate into its offline audio (see
      [`~SpiritLMVocoder.chunked_decoder`]: equal up to float rounding), their `"units"` into its units.

    With `output_modality="arbitrary"`, speech that the official rule drops (a segment after the first with fewer than
    24 hubert units) is sent as `{"type": "speech", "units": str}` without audio, once it ends; such a segment is only
    vocoded once it has 24 units. When the prompt ends with speech and the generation continues it, the official
    decoding vocodes the prompt's last speech run with the new units and cuts a share of the audio in proportion of
    hubert units, which needs the whole answer: streaming instead synthesises the prompt units as context and cuts at
    the exact frame where the new units start (same units, audio differing only around that cut).

    The work (decoding text, vocoding) happens in the iterating thread, so the generating thread only queues token
    ids and decodes at full speed. The iterator takes the ids one generation step at a time, so a generation gives
    the same items (text deltas, speech chunks) however fast or slowly it is consumed.

    Args:
        processor ([`SpiritLMProcessor`]): its tokenizer decodes the ids.
        vocoder ([`SpiritLMVocoder`]): synthesises speech; may be `None` only for `output_modality="text"`.
        output_modality (`str`, defaults to `"speech"`): the one given to the processor / pipeline (`"text"`,
            `"speech"` or `"arbitrary"`); it decides how the output is split, as offline.
        speaker_id (`int` or `str`, defaults to 2): vocoder speaker.
        chunk_size, first_chunk_size, left_context, lookahead, generator: chunking of the speech, see
            [`~SpiritLMVocoder.chunked_decoder`].
        eos_token_id (`int` or `list[int]`, *optional*): where generation ends (default: the tokenizer's).
        timeout (`float`, *optional*): seconds the iterator waits for the next token before raising `queue.Empty`;
            `None` waits forever.

    ```python
    >>> from threading import Thread
    >>> streamer = SpiritLMStreamer(processor, vocoder, output_modality="speech")
    >>> inputs = processor([{"type": "text", "text": "Hello"}], output_modality="speech")
    >>> Thread(target=model.generate, kwargs=dict(**inputs, streamer=streamer, max_new_tokens=200)).start()
    >>> for chunk in streamer:
    ...     if chunk["type"] == "speech":
    ...         play(chunk["audio"])
    ```
    """

    def __init__(
        self,
        processor,
        vocoder: PreTrainedModel | None,
        output_modality: str = "speech",
        speaker_id: int | str = 2,
        chunk_size: int = 40,
        first_chunk_size: int | None = 5,
        left_context: int | None = None,
        lookahead: int | None = None,
        generator: random.Random | int | None = None,
        eos_token_id: int | list[int] | None = None,
        timeout: float | None = None,
    ):
        self.output_modality = check_output_modality(output_modality)
        if vocoder is None and self.output_modality != TEXT:
            raise ValueError(
                f"output_modality={self.output_modality!r} can produce speech, which needs a vocoder: pass "
                "vocoder=SpiritLMVocoder.from_pretrained(repo, subfolder='vocoder'), or stream with "
                "output_modality='text'"
            )
        self.processor = processor
        self.vocoder = vocoder
        self.speaker_id = speaker_id
        self._chunking = {
            "speaker_id": speaker_id,
            "chunk_size": chunk_size,
            "first_chunk_size": first_chunk_size,
            "left_context": left_context,
            "lookahead": lookahead,
            "generator": generator,
        }
        if vocoder is not None:
            vocoder.chunked_decoder(**self._chunking)  # fails now on a bad speaker or chunk size, not mid-stream
        if eos_token_id is None:
            eos_token_id = processor.tokenizer.eos_token_id
        self.eos_token_ids = set() if eos_token_id is None else {int(i) for i in np.array(eos_token_id).reshape(-1)}
        # A run of byte-fallback tokens decodes as a whole: an invalid run turns all its bytes, even ASCII ones, into
        # U+FFFD. Text is only final once a run is followed by another token.
        vocab = processor.tokenizer.get_vocab()
        self._byte_ids = {vocab[f"<0x{byte:02X}>"] for byte in range(256) if f"<0x{byte:02X}>" in vocab}
        self.timeout = timeout
        self.cancelled = False
        self._queue: Queue = Queue()
        self._put_calls = 0
        self._ended = False
        # Iterating side.
        self._prompt_ids: list[int] | None = None
        self._prompt = ""
        self._new_ids: list[int] = []
        self._eos_seen = False
        self._finished = False
        self._pending: list[dict] = []
        self._segments: list[dict] = []  # state of each output segment: type, characters sent, decoder
        self._prompt_tail: str | None = None  # decided once the continuation's start is known (arbitrary only)

    # Generating side (called by `generate`).

    def put(self, value: torch.Tensor) -> None:
        """Receives the prompt ids (first call), then the new ids of each step; batch size 1 only."""
        if self._ended:
            raise ValueError("this SpiritLMStreamer already streamed a generation; create a new one for each generate")
        value = torch.as_tensor(value)
        first = self._put_calls == 0
        self._put_calls += 1
        if (value.ndim == 2 and value.shape[0] > 1) or (value.ndim == 1 and value.shape[0] > 1 and not first):
            raise ValueError(
                f"SpiritLMStreamer streams one sequence (batch size 1), got a batch of {value.shape[0]}: generate one "
                "prompt at a time with a streamer each, or batch without a streamer"
            )
        ids = value.reshape(-1).tolist()
        self._queue.put(("prompt", ids) if first else ("ids", ids))

    def end(self) -> None:
        """Called by `generate` when it is done: the iterator flushes what is left."""
        self._ended = True
        self._queue.put(_End())

    def cancel(self) -> None:
        """Asks generation to stop after the current step (through [`SpiritLMStopOnCancel`] in its stopping
        criteria, which [`~SpiritLMPipeline.stream`] adds)."""
        self.cancelled = True

    def _fail(self, error: BaseException) -> None:
        """Makes the iterator raise `error` (an exception of the generating thread)."""
        self._queue.put(_Failure(error))

    # Iterating side.

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        while not self._pending:
            if self._finished:
                raise StopIteration
            # One queued item at a time, however many are waiting: the items sent then depend only on the ids.
            item = self._queue.get(timeout=self.timeout)
            if isinstance(item, _Failure):
                self._finished = True
                raise item.error
            if isinstance(item, _End):
                self._update(final=True)
                self._finished = True
            elif item[0] == "prompt":
                self._prompt_ids = item[1]
                self._prompt = self._decode(item[1])
            elif not self._eos_seen:
                for token in item[1]:
                    if token in self.eos_token_ids:
                        self._eos_seen = True
                        break
                    self._new_ids.append(token)
                self._update(final=False)
        return self._pending.pop(0)

    def _decode(self, ids: list[int]) -> str:
        return self.processor.decode_text(ids)

    def _continuation(self, final: bool) -> str:
        """The generated string, as [`~SpiritLMProcessor.post_process_generation`] takes it from the whole output;
        unless `final`, without the end that the next tokens may still change."""
        new_ids = self._new_ids
        if not final:
            end = len(new_ids)
            while end and new_ids[end - 1] in self._byte_ids:
                end -= 1
            new_ids = new_ids[:end]
        whole = self._decode((self._prompt_ids or []) + new_ids)
        continuation = whole[len(self._prompt) :] if whole.startswith(self._prompt) else self._decode(new_ids)
        return continuation if final else _stable_prefix(continuation)

    def _content(self, final: bool) -> str | None:
        """What is split into segments: the stripped continuation (or the prompt's speech + the continuation), cut
        before what may still change (`None` while the split cannot start yet)."""
        continuation = self._continuation(final)
        if self.output_modality != ARBITRARY or not ends_with_unit_token(self._prompt):
            return continuation.strip() if final else continuation.lstrip()
        if self._prompt_tail is None:
            start = continuation.strip()
            if not (final or _start_is_known(start)):
                return None
            self._prompt_tail = (
                self._prompt[last_speech_start(self._prompt) :] if starts_with_unit_token(start) else ""
            )
        if self._prompt_tail:
            return self._prompt_tail + continuation
        return continuation.strip() if final else continuation.lstrip()

    def _update(self, final: bool) -> None:
        content = self._content(final)
        if content is None:
            return
        if self.output_modality == TEXT:
            segments = [{"type": "text", "text": content}]
        elif self.output_modality == SPEECH:
            segments = [{"type": "speech", "units": content}]
        else:
            segments = parse_generation(content)
        for index, segment in enumerate(segments):
            if index == len(self._segments):
                if self._segments:
                    self._close(self._segments[-1])
                self._segments.append(self._new_state(index, segment["type"]))
            state = self._segments[index]
            if segment["type"] == TEXT:
                delta = segment["text"][state["sent"] :]
                state["sent"] = len(segment["text"])
                if delta:
                    self._pending.append({"type": "text", "text": delta})
            else:
                self._push_units(state, segment["units"])
        if final and self._segments:
            self._close(self._segments[-1])

    def _new_state(self, index: int, kind: str) -> dict:
        state = {"type": kind, "sent": 0, "decoder": None, "minimum": 0, "context": ""}
        if kind == SPEECH and self.output_modality == ARBITRARY:
            if index == 0 and self._prompt_tail:
                state["context"] = self._prompt_tail
                state["sent"] = len(self._prompt_tail)
                state["minimum"] = MIN_SPEECH_HUBERT_COUNT - 1
            elif index > 0:
                state["minimum"] = MIN_SPEECH_HUBERT_COUNT - 1
        return state

    def _push_units(self, state: dict, units: str) -> None:
        """Feeds the segment's new unit tokens to its decoder, created once the segment is long enough to keep."""
        state["units"] = units
        if state["decoder"] is None:
            if units[len(state["context"]) :].count("[Hu") < state["minimum"]:
                return
            state["decoder"] = self.vocoder.chunked_decoder(**self._chunking, context=state["context"] or None)
        new = units[state["sent"] :]
        state["sent"] = len(units)
        if new:
            self._pending += [self._speech_chunk(chunk) for chunk in state["decoder"].push(new)]

    def _close(self, state: dict) -> None:
        """The segment is complete: flush its audio, or send its units alone."""
        if state["type"] != SPEECH:
            return
        new_units = state.get("units", "")[len(state["context"]) :]
        if state["decoder"] is None:
            self._pending.append({"type": "speech", "units": new_units})
            return
        parsed = string_to_units(state["units"])
        needs_pitch = self.vocoder.pitch_embedding is not None
        if not parsed["hubert"] or (needs_pitch and "pitch" not in parsed):
            missing = "hubert" if not parsed["hubert"] else "pitch"
            logger.warning(
                f"generated speech {new_units[:60]!r} has no {missing} units, which the vocoder needs; returning it "
                "with empty audio"
            )
            empty = {"audio": np.zeros(0, dtype=np.float32), "sampling_rate": self.vocoder.config.sampling_rate}
            self._pending.append({"type": "speech", **empty, "units": new_units})
            return
        self._pending += [self._speech_chunk(chunk) for chunk in state["decoder"].flush()]

    def _speech_chunk(self, chunk) -> dict:
        audio = chunk.waveform.cpu().numpy().astype(np.float32, copy=False)
        return {
            "type": "speech",
            "audio": audio,
            "sampling_rate": self.vocoder.config.sampling_rate,
            "units": chunk.units,
        }


class SpiritLMStopOnCancel(StoppingCriteria):
    """Stops generation once [`SpiritLMStreamer.cancel`] was called (the consumer stopped iterating)."""

    def __init__(self, streamer: SpiritLMStreamer):
        self.streamer = streamer

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.streamer.cancelled, dtype=torch.bool, device=input_ids.device)


def _stable_prefix(text: str) -> str:
    """`text` without the end that the next tokens may still change: an opening `[` that may become a unit or marker
    token, trailing whitespace (stripped at the end)."""
    end = len(text)
    bracket = text.rfind("[", 0, end)
    if bracket >= 0:
        after = text[bracket + 1 : end]
        if "]" not in after and (
            any(after.startswith(prefix) or prefix.startswith(after) for prefix in _UNIT_PREFIXES)
            or any(marker.startswith(after) for marker in _MARKERS)
        ):
            end = bracket
    return text[:end].rstrip()


def _start_is_known(text: str) -> bool:
    """Whether more text can still change `starts_with_unit_token(text)`."""
    if text and not text.startswith("["):
        return True
    return len(text) > 10 or (len(text) > 4 and "]" in text[4:11])


__all__ = ["SpiritLMStopOnCancel", "SpiritLMStreamer"]
