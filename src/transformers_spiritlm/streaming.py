"""Streaming SPIRIT LM output: text deltas and vocoded speech chunks while `generate` is still running."""

import random
from queue import Queue

import numpy as np
import torch
from transformers import PreTrainedModel, StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from .modalities import TEXT, StreamChunk, check_output_modality
from .processing_spiritlm import GenerationSplitter, SegmentUpdate, can_vocode


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
        self._pending: list[StreamChunk] = []
        self._splitter = GenerationSplitter("", self.output_modality)  # remade with the prompt
        self._split = ""  # the continuation given to the splitter
        self._speech: dict | None = None  # the speech segment being vocoded: decoder, context, units

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

    def __next__(self) -> StreamChunk:
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
                self._splitter = GenerationSplitter(self._prompt, self.output_modality)
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
        unless `final`, without the byte-fallback tokens at the end, which the next tokens may still change."""
        new_ids = self._new_ids
        if not final:
            end = len(new_ids)
            while end and new_ids[end - 1] in self._byte_ids:
                end -= 1
            new_ids = new_ids[:end]
        whole = self._decode((self._prompt_ids or []) + new_ids)
        return whole[len(self._prompt) :] if whole.startswith(self._prompt) else self._decode(new_ids)

    def _update(self, final: bool) -> None:
        """Splits the new part of the continuation into segments as offline, and sends what became final."""
        continuation = self._continuation(final)
        updates = self._splitter.push(continuation[len(self._split) :], final=final)
        self._split = continuation
        for update in updates:
            self._send(update)

    def _send(self, update: SegmentUpdate) -> None:
        if update.type == TEXT:
            if update.delta:
                self._pending.append({"type": "text", "text": update.delta})
            return
        if update.dropped:
            self._pending.append({"type": "speech", "units": update.delta})
            return
        if self._speech is None:
            decoder = self.vocoder.chunked_decoder(**self._chunking, context=update.context or None)
            self._speech = {"decoder": decoder, "context": update.context, "units": ""}
        speech = self._speech
        if update.delta:
            speech["units"] += update.delta
            self._pending += [self._speech_chunk(chunk) for chunk in speech["decoder"].push(update.delta)]
        if update.end:
            self._speech = None
            if can_vocode(speech["context"] + speech["units"], self.vocoder):
                self._pending += [self._speech_chunk(chunk) for chunk in speech["decoder"].flush()]
            else:
                empty = {"audio": np.zeros(0, dtype=np.float32), "sampling_rate": self.vocoder.config.sampling_rate}
                self._pending.append({"type": "speech", **empty, "units": speech["units"]})

    def _speech_chunk(self, chunk) -> StreamChunk:
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


__all__ = ["SpiritLMStopOnCancel", "SpiritLMStreamer"]
