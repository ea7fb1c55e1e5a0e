"""Streaming SPIRIT LM output: text deltas and vocoded speech chunks while `generate` is still running, and the
chunked vocoding of a growing unit string that makes the speech chunks."""

import random
from dataclasses import dataclass
from queue import Queue

import numpy as np
import torch
from transformers import PreTrainedModel, StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from .modalities import TEXT, StreamChunk, check_output_modality
from .processing_spiritlm import GenerationSplitter, SegmentUpdate, can_vocode
from .units import UnitStringReader
from .vocoder import SpiritLMVocoder, parse_unit_values, unit_ids_tensor


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
      [`SpiritLMChunkedDecoder`]: equal up to float rounding), their `"units"` into its units.

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
            [`SpiritLMChunkedDecoder`].
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
            SpiritLMChunkedDecoder(
                vocoder, **self._chunking
            )  # fails now on a bad speaker or chunk size, not mid-stream
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

    def fail(self, error: BaseException) -> None:
        """Makes the iterator raise `error`: how the thread that runs `generate` hands its exception to the consumer
        ([`~SpiritLMPipeline.stream`] does it)."""
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


@dataclass
class SpiritLMAudioChunk:
    """
    One chunk of [`SpiritLMChunkedDecoder`] output.

    Args:
        units (`str`): the unit tokens the chunk covers (up to its last hubert unit; the last chunk takes the rest).
        waveform (`torch.FloatTensor` of shape `(num_samples,)`): its samples at `config.sampling_rate`.
    """

    units: str
    waveform: torch.FloatTensor


class SpiritLMChunkedDecoder:
    """
    Incremental [`SpiritLMVocoder.decode_string`]: synthesises a growing unit string chunk by chunk, e.g. while a
    language model is still generating it.

    Push pieces of a unit string (whole tokens such as `"[Pi3][Hu12]"`) with
    [`~SpiritLMChunkedDecoder.push`]; it returns the audio that has become final, as [`SpiritLMAudioChunk`]s.
    [`~SpiritLMChunkedDecoder.flush`] ends the string and returns the rest. The concatenated chunks equal
    [`~SpiritLMVocoder.decode_string`] of the whole string (up to float rounding, ~1e-6), BASE and EXPRESSIVE:

    - a unit's duration depends on the units after it (the duration predictor's kernels), so its frames are
      placed once the next few units exist;
    - each chunk is synthesised with `left_context` frames before it and `lookahead` frames after it, the
      generator's receptive field (default), so that its samples equal those of the whole waveform.
    - EXPRESSIVE: pitch and style are per hubert unit (as [`string_to_units`] expands them), so nothing depends
      on the total length; only the hubert units before the first pitch / style unit take that first unit, so
      audio starts once the string has both. A string that never gets a style unit takes one of the official
      most common styles (`generator`, as in `decode_string`) at `flush`.

    Args:
        vocoder ([`SpiritLMVocoder`]): with a duration predictor (it synthesises generated, deduplicated units).
        speaker_id, style_id: as in [`~SpiritLMVocoder.decode_units`].
        chunk_size: hubert units per chunk (at least 1; default 40: each chunk is synthesised with its context,
            so small chunks cost more, 3x the offline vocoding time at 40 and 6x at 20 in
            `benchmarks/bench_streaming.py`). The chunks depend only on the unit string, not on how it is
            pushed: a push that makes several chunks final returns them all.
        first_chunk_size: hubert units of the first chunk, smaller for an earlier first audio (default 5;
            `None`: `chunk_size`).
        left_context, lookahead: frames of context synthesised before / after each chunk. `None` (default): the
            generator's receptive field ([`~SpiritLMVocoder.receptive_field`]), which makes chunks exact; fewer
            frames give earlier, cheaper chunks that differ slightly at their edges.
        generator: source of the official random style choice above (a `random.Random` or a seed).
        context: unit tokens that come before the string (e.g. the speech of a prompt that the string
            continues): they condition the audio of the string but their own audio is not returned.

    ```python
    >>> decoder = SpiritLMChunkedDecoder(vocoder, speaker_id=2)   # or vocoder.chunked_decoder(speaker_id=2)
    >>> chunks = [chunk for token in ["[Hu12]", "[Hu7]", ...] for chunk in decoder.push(token)]
    >>> chunks += decoder.flush()
    >>> waveform = torch.cat([chunk.waveform for chunk in chunks])   # == vocoder.decode_string("".join(tokens))
    ```
    """

    def __init__(
        self,
        vocoder: SpiritLMVocoder,
        speaker_id: int | str = 2,
        style_id: int | str | None = None,
        chunk_size: int = 40,
        first_chunk_size: int | None = 5,
        left_context: int | None = None,
        lookahead: int | None = None,
        generator: random.Random | int | None = None,
        context: str | None = None,
    ):
        for name, value in (("chunk_size", chunk_size), ("first_chunk_size", first_chunk_size)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be a whole number of hubert units >= 1, got {value!r}")
        for name, value in (("left_context", left_context), ("lookahead", lookahead)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(
                    f"{name} must be a number of frames >= 0 (or None for the exact default), got {value!r}"
                )
        if vocoder.duration_predictor is None:
            raise ValueError(
                "chunked decoding needs a vocoder with a duration predictor (generated, deduplicated units)"
            )
        vocoder.resolve_voice(speaker_id, style_id)
        self.vocoder = vocoder
        self.speaker_id, self.style_id = speaker_id, style_id
        self.chunk_size = chunk_size
        self.first_chunk_size = chunk_size if first_chunk_size is None else first_chunk_size
        field_left, field_right = vocoder.receptive_field()
        self.left_context = field_left if left_context is None else left_context
        self.lookahead = field_right if lookahead is None else lookahead
        self._duration_reach = vocoder.duration_predictor.right_context
        self.generator = generator
        self._text = ""  # every unit token pushed
        self._parsed = 0  # characters of `_text` read
        # `_text` read as string_to_units reads it: a row of unit ids per hubert unit, and where each ends in `_text`.
        self._reader = UnitStringReader(convert=self._unit_id)
        self._durations: list[int] = []  # final durations of the first units
        self._done_units = 0  # units whose samples were returned
        self._done_frames = 0
        self._done_chars = 0
        self._finished = False
        if context:
            self._text = context
            self._parse(final=True)
        self._context_units, self._context_chars = len(self._reader.hubert), len(self._text)

    def push(self, units: str) -> list[SpiritLMAudioChunk]:
        """Appends unit tokens (whole tokens, e.g. `"[St3][Pi7][Hu12]"`); returns the chunks that became final
        (often none)."""
        if self._finished:
            raise ValueError("this decoder was flushed; start a new one with vocoder.chunked_decoder()")
        if not isinstance(units, str):
            raise TypeError(f"push expects a unit string such as '[Hu12]', got {type(units).__name__}")
        self._text += units
        self._parse(final=False)
        return self._synthesise(final=False)

    def flush(self) -> list[SpiritLMAudioChunk]:
        """Ends the unit string: returns the remaining audio (and the unit tokens after the last chunk)."""
        if self._finished:
            return []
        self._parse(final=True)
        self._finished = True
        if not self._reader.hubert:
            raise ValueError("the unit string has no hubert units ('[HuN]'): nothing to synthesise")
        if "pitch" in self.vocoder.config.unit_types and self._reader.last["pitch"] is None:
            raise ValueError(
                "the unit string has no pitch units ('[PiN]'), which this EXPRESSIVE vocoder needs; decode hubert-only "
                "strings with a BASE vocoder"
            )
        if "style" in self.vocoder.config.unit_types:
            self._reader.choose_missing_style(self.generator)
        return self._synthesise(final=True)

    def _parse(self, final: bool) -> None:
        """Reads the new unit tokens of `_text` as [`string_to_units`] does (`final`: `_text` is complete)."""
        self._reader.push(self._text[self._parsed :])
        self._parsed = len(self._text)
        if final:
            self._reader.flush()

    def _unit_id(self, stream: str, value: str) -> int | str:
        """A unit read from the string, checked, as an id; the pitch and style units that a BASE vocoder does not
        take stay as read, as in `decode_string`."""
        if stream not in self.vocoder.config.unit_types:
            return value
        ids = parse_unit_values(value, stream)
        if len(ids) != 1:
            raise ValueError(f"malformed {stream} unit in the unit string ({value!r}); units look like '[Hu12]'")
        unit_ids_tensor(ids, "", stream, getattr(self.vocoder.config, f"num_{stream}_units"))
        return ids[0]

    def _ready(self) -> bool:
        """Whether every unit pushed has its pitch and style (EXPRESSIVE: both first units seen)."""
        unit_types, last = self.vocoder.config.unit_types, self._reader.last
        return ("pitch" not in unit_types or last["pitch"] is not None) and (
            "style" not in unit_types or last["style"] is not None
        )

    @torch.no_grad()
    def _synthesise(self, final: bool) -> list[SpiritLMAudioChunk]:
        """The chunks that became final. Their boundaries depend only on the unit string, not on how it was pushed:
        `first_chunk_size` hubert units, then `chunk_size` each, the last chunk taking the rest."""
        hubert = self._reader.hubert
        if not hubert or not (final or self._ready()):
            return []
        num_units = len(hubert)
        stable = num_units if final else num_units - self._duration_reach
        if stable > len(self._durations):
            durations = self.vocoder.predict_durations(hubert).tolist()
            self._durations += durations[len(self._durations) : stable]
        ends = np.cumsum(self._durations) if self._durations else np.zeros(0, dtype=np.int64)
        if self._done_units < self._context_units:
            if len(self._durations) < self._context_units:
                return []
            self._done_units, self._done_chars = self._context_units, self._context_chars
            self._done_frames = int(ends[self._context_units - 1])
        if final:
            available = num_units
        else:
            # Units whose frames, and `lookahead` frames after them, are all placed.
            placed = int(ends[-1]) if len(ends) else 0
            available = int(np.searchsorted(ends, placed - self.lookahead, side="right"))
        chunks = []
        while True:
            size = self.first_chunk_size if self._done_units == self._context_units else self.chunk_size
            if available - self._done_units < size:
                break
            end_unit = self._done_units + size
            chunks.append(self._chunk(ends, end_unit, self._reader.ends[end_unit - 1]))
        if final and (num_units > self._done_units or len(self._text) > self._done_chars):
            chunks.append(self._chunk(ends, num_units, len(self._text)))
        return chunks

    def _chunk(self, ends: np.ndarray, end_unit: int, chars: int) -> SpiritLMAudioChunk:
        """Synthesises the units from the last chunk's end to `end_unit` (their text ends at character `chars`), with
        `left_context` frames before and up to `lookahead` frames after them."""
        vocoder = self.vocoder
        start_frame, end_frame = self._done_frames, int(ends[end_unit - 1])
        waveform = torch.zeros(0, device=vocoder.device)
        if end_frame > start_frame:
            window_start = max(0, start_frame - self.left_context)
            window_end = min(int(ends[-1]), end_frame + self.lookahead)
            first_unit = int(np.searchsorted(ends, window_start, side="right"))
            last_unit = int(np.searchsorted(ends, window_end - 1, side="right")) + 1
            units = slice(first_unit, last_unit)
            # The window's frames: those of its units, the first and last cut at the window's edges.
            durations = self._durations[units]
            durations[0] -= window_start - (int(ends[first_unit - 1]) if first_unit else 0)
            durations[-1] -= int(ends[last_unit - 1]) - window_end
            unit_types, reader = vocoder.config.unit_types, self._reader
            audio = vocoder(
                torch.tensor([reader.hubert[units]]),
                torch.tensor([reader.pitch[units]]) if "pitch" in unit_types else None,
                torch.tensor([reader.style[units]]) if "style" in unit_types else None,
                speaker_id=self.speaker_id,
                style_id=self.style_id,
                durations=torch.tensor([durations]),
            ).waveform
            hop = vocoder.config.hop_length
            waveform = audio[0, (start_frame - window_start) * hop : (end_frame - window_start) * hop]
        chunk = SpiritLMAudioChunk(units=self._text[self._done_chars : chars], waveform=waveform)
        self._done_units, self._done_frames, self._done_chars = end_unit, end_frame, chars
        return chunk


__all__ = ["SpiritLMAudioChunk", "SpiritLMChunkedDecoder", "SpiritLMStopOnCancel", "SpiritLMStreamer"]
