"""Training data for SPIRIT LM, as in the paper: speech-only, text-only and word-level interleaved sequences (plus
ASR / TTS-style pairs) built from speech units and word alignments, ASR / TTS fine-tuning pairs with the loss on the
answer only, batched unit extraction over a `datasets.Dataset`, and [`SpiritLMDataCollator`] for
[`~transformers.Trainer`].

Units are the per-stream lists [`SpiritLMSpeechTokenizer.encode_units`] returns (not deduplicated, one value per
frame): hubert at 25 Hz, pitch at 12.5 Hz, style at 1 Hz. Word alignments are `(word, start, end)` in seconds, e.g.
from a forced aligner or ASR word timestamps.
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from .modalities import MARKERS, SEGMENT_TYPES, SPEECH, SPEECH_MARKER, TEXT, TEXT_MARKER, modality_token_ranges
from .units import UNIT_PREFIXES, units_to_string


SEQUENCE_KINDS = ("speech", "text", "interleaved", "asr", "tts")
# Prompt -> answer training pairs: speech -> its transcript, transcript -> its speech.
TASKS = ("asr", "tts")
# Frames per second of each unit stream at 16 kHz (hop sizes 640, 1280 and 16000 samples): where a unit sits in
# time. The unit *string* orders streams with the official rates of `units.DEFAULT_RATES` instead.
UNIT_FRAME_RATES = {"hubert": 25.0, "pitch": 12.5, "style": 1.0}
# Word ends may pass the last hubert frame by this much: the frame count rounds the audio length down.
_DURATION_TOLERANCE_S = 0.1
_TIME_EPSILON = 1e-6


@dataclass(frozen=True)
class WordAlignment:
    """One aligned word: its text and its time range `[start, end)` in seconds."""

    word: str
    start: float
    end: float


@dataclass(frozen=True)
class Span:
    """A run of consecutive words rendered in one modality (`"text"` or `"speech"`)."""

    modality: str
    words: tuple[WordAlignment, ...]

    @property
    def start(self) -> float:
        return self.words[0].start

    @property
    def end(self) -> float:
        return self.words[-1].end


def parse_word_alignments(words, duration: float | None = None) -> list[WordAlignment]:
    """
    Validates word alignments and returns them as [`WordAlignment`]s.

    Args:
        words: a list of `{"word", "start", "end"}` dicts, `(word, start, end)` tuples or `WordAlignment`s, or the
            columnar form `{"word": [...], "start": [...], "end": [...]}` that `datasets` uses for sequences of
            structs. Times are seconds.
        duration: length of the speech in seconds; words ending after it (beyond a 0.1 s rounding margin) are an
            error.

    Raises:
        ValueError: no words, an empty word, a negative / non-finite time, `end <= start`, words out of order or
            overlapping, or a word past `duration`. The message names the word and its index.
    """
    if isinstance(words, Mapping):
        missing = [key for key in ("word", "start", "end") if key not in words]
        if missing:
            raise ValueError(
                f"word alignments given as a dict need 'word', 'start' and 'end' lists; missing {missing}"
            )
        lengths = {key: len(words[key]) for key in ("word", "start", "end")}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"word alignment columns have different lengths: {lengths}")
        words = list(zip(words["word"], words["start"], words["end"]))
    if words is None or len(words) == 0:
        raise ValueError(
            "the word alignment is empty: text, interleaved, ASR and TTS sequences need at least one "
            "(word, start, end) entry; drop examples without words or build only 'speech' sequences for them"
        )
    alignments = [_as_word_alignment(item, index) for index, item in enumerate(words)]
    previous = None
    for index, item in enumerate(alignments):
        name = f"word #{index} {item.word!r}"
        if not (math.isfinite(item.start) and math.isfinite(item.end)):
            raise ValueError(f"{name} has a non-finite time: start={item.start}, end={item.end}")
        if item.start < 0:
            raise ValueError(f"{name} starts at {item.start} s; times must be seconds from the start of the audio")
        if item.end <= item.start:
            raise ValueError(f"{name} ends at {item.end} s, not after its start {item.start} s")
        if previous is not None and item.start < previous.end - _TIME_EPSILON:
            raise ValueError(
                f"{name} starts at {item.start} s, before word #{index - 1} {previous.word!r} ends at "
                f"{previous.end} s; word alignments must be sorted by time and must not overlap"
            )
        if duration is not None and item.end > duration + _DURATION_TOLERANCE_S:
            raise ValueError(
                f"{name} ends at {item.end} s but the speech is only {duration:.2f} s long; are the alignments from "
                "another clip, or in milliseconds instead of seconds?"
            )
        previous = item
    return alignments


def _as_word_alignment(item, index: int) -> WordAlignment:
    if isinstance(item, WordAlignment):
        return item
    try:
        word, start, end = (item["word"], item["start"], item["end"]) if isinstance(item, Mapping) else item
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            f"word alignment #{index} is {item!r}; expected a {{'word', 'start', 'end'}} dict or a "
            "(word, start, end) tuple"
        ) from None
    if not isinstance(word, str) or not word.strip():
        raise ValueError(f"word alignment #{index} has an empty or non-string word: {word!r}")
    return WordAlignment(word.strip(), float(start), float(end))


def _as_int_list(values, unit_type: str) -> list[int]:
    if isinstance(values, str):
        values = values.split()
    elif isinstance(values, (np.ndarray, torch.Tensor)):
        values = values.tolist()
    try:
        return [int(value) for value in values]
    except (TypeError, ValueError):
        raise ValueError(
            f"{unit_type} units must be a list of ints or a space-separated string, got {values!r}"
        ) from None


class SpiritLMSequenceBuilder:
    """
    Builds SPIRIT LM training strings from units and word alignments.

    - speech: `"[Speech]" + unit string` of the whole utterance (exactly `units_to_string`, deduplicated).
    - text: `"[Text]" + " ".join(words)`.
    - interleaved: words are cut into spans at word boundaries; the modality of the first span is drawn at random and
      each following word boundary switches modality with probability `switch_probability`. A text span is its
      words; a speech span is the units of its time range (first word start to last word end), deduplicated within
      the span. A marker is written exactly where the modality changes.
    - asr / tts: `"[Speech]" + units + "[Text]" + text` and the reverse.

    Where a unit belongs: a hubert unit `i` sits at `i / 25` s and goes to the span whose time range contains that
    instant, so the spans partition the hubert stream. Pitch and style units cover `[i / rate, (i + 1) / rate)` and
    a span takes every one overlapping its range, so an EXPRESSIVE speech span starts with its current style and
    pitch, as an encoding of that audio alone would. A speech span whose range holds no hubert unit (a word shorter
    than a frame) is written as text instead.

    Args:
        switch_probability: chance of switching modality at each word boundary of an interleaved sequence.
        unit_types: unit streams to write, e.g. `("hubert",)` for BASE or `("hubert", "pitch", "style")` for
            EXPRESSIVE. `None` writes every stream present in the units.
        frame_rates: frames per second of each stream (where units sit in time); defaults to `UNIT_FRAME_RATES`.
    """

    def __init__(
        self,
        switch_probability: float = 0.3,
        unit_types: Sequence[str] | None = None,
        frame_rates: Mapping[str, float] | None = None,
    ):
        if not 0.0 <= switch_probability <= 1.0:
            raise ValueError(f"switch_probability={switch_probability} must be between 0 and 1")
        if unit_types is not None:
            unknown = [unit_type for unit_type in unit_types if unit_type not in UNIT_PREFIXES]
            if unknown or "hubert" not in unit_types:
                raise ValueError(
                    f"unit_types={tuple(unit_types)} must include 'hubert' and only use {tuple(UNIT_PREFIXES)}"
                )
        self.switch_probability = switch_probability
        self.unit_types = tuple(unit_types) if unit_types is not None else None
        self.frame_rates = {**UNIT_FRAME_RATES, **(frame_rates or {})}

    def _streams(self, units: Mapping) -> dict[str, list[int]]:
        if not isinstance(units, Mapping) or "hubert" not in units:
            got = sorted(units) if isinstance(units, Mapping) else type(units).__name__
            raise ValueError(f"units must be a dict with at least a 'hubert' list (from encode_units); got {got}")
        unit_types = self.unit_types or tuple(unit_type for unit_type in UNIT_PREFIXES if unit_type in units)
        missing = [unit_type for unit_type in unit_types if units.get(unit_type) is None]
        if missing:
            raise ValueError(f"units have no {missing} stream(s); this builder writes {unit_types}")
        streams = {unit_type: _as_int_list(units[unit_type], unit_type) for unit_type in unit_types}
        if not streams["hubert"]:
            raise ValueError("units['hubert'] is empty: the audio is too short to give any unit")
        return streams

    def duration(self, units: Mapping) -> float:
        """Length in seconds of the speech the units come from (hubert frames / frame rate)."""
        return len(self._streams(units)["hubert"]) / self.frame_rates["hubert"]

    def speech_sequence(self, units: Mapping) -> str:
        """`"[Speech]"` + the unit string of the whole utterance."""
        return SPEECH_MARKER + units_to_string(self._streams(units))

    def text_sequence(self, words) -> str:
        """`"[Text]"` + the words joined by single spaces."""
        return TEXT_MARKER + _transcript(words)

    def asr_sequence(self, units: Mapping, words) -> str:
        """Speech then its transcript: `"[Speech]" + units + "[Text]" + text`."""
        return "".join(self.task_pair("asr", units, _transcript(words)))

    def tts_sequence(self, units: Mapping, words) -> str:
        """Transcript then its speech: `"[Text]" + text + "[Speech]" + units`."""
        return "".join(self.task_pair("tts", units, _transcript(words)))

    def task_pair(self, task: str, units: Mapping, text: str) -> tuple[str, str]:
        """
        The prompt and the answer of a training pair of `task` (one of `TASKS`) for a clip's units and transcript
        (white space collapsed): `"asr"` gives `("[Speech]" + units + "[Text]", text)`, `"tts"` gives
        `("[Text]" + text + "[Speech]", units)`. The prompt ends with the marker of the answer's modality, as the
        processor's prompts for `output_modality="text"` / `"speech"` do, so inference sees what training saw.
        """
        _check_task(task)
        if not isinstance(text, str) or not text.split():
            raise ValueError(f"the transcript is {text!r}; ASR and TTS pairs need a non-empty text")
        text = " ".join(text.split())
        units_string = units_to_string(self._streams(units))
        if task == "asr":
            return SPEECH_MARKER + units_string + TEXT_MARKER, text
        return TEXT_MARKER + text + SPEECH_MARKER, units_string

    def span_units(self, units: Mapping, start: float, end: float) -> dict[str, list[int]]:
        """The (not deduplicated) units of each stream that belong to the time range `[start, end)` seconds."""
        streams = self._streams(units)
        return {
            unit_type: values[slice(*self._span_indices(unit_type, len(values), start, end))]
            for unit_type, values in streams.items()
        }

    def _span_indices(self, unit_type: str, length: int, start: float, end: float) -> tuple[int, int]:
        rate = self.frame_rates[unit_type]
        if unit_type == "hubert":
            first = math.ceil(start * rate - _TIME_EPSILON)
        else:
            first = math.floor(start * rate + _TIME_EPSILON)
        last = math.ceil(end * rate - _TIME_EPSILON)
        return min(first, length), min(max(last, first), length)

    def span_string(self, units: Mapping, start: float, end: float) -> str:
        """
        The unit string of the time range `[start, end)`: units ordered by their time in the utterance (official
        rates, style before pitch before hubert at equal time), hubert and pitch deduplicated within the range.
        Over the whole utterance this is exactly `units_to_string(units)`.
        """
        streams = self._streams(units)
        spans = {
            unit_type: self._span_indices(unit_type, len(values), start, end) for unit_type, values in streams.items()
        }
        return units_to_string(
            {unit_type: streams[unit_type][first:last] for unit_type, (first, last) in spans.items()},
            offsets={unit_type: first for unit_type, (first, _) in spans.items()},
        )

    def interleaved_spans(
        self, words, units: Mapping, seed: int | Sequence[int] | np.random.Generator | None = None
    ) -> list[Span]:
        """
        Cuts the words into alternating text / speech spans (see the class docstring). `seed` (an int, a sequence
        of ints or a `numpy.random.Generator`) makes the cut reproducible.
        """
        alignment = parse_word_alignments(words, duration=self.duration(units))
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        modality = SEGMENT_TYPES[int(rng.integers(2))]
        switches = rng.random(len(alignment) - 1) < self.switch_probability
        groups = [[modality, [alignment[0]]]]
        for word, switch in zip(alignment[1:], switches):
            if switch:
                groups.append([_other(groups[-1][0]), []])
            groups[-1][1].append(word)
        num_hubert = len(self._streams(units)["hubert"])
        spans: list[Span] = []
        for modality, span_words in groups:
            if modality == SPEECH:
                first, last = self._span_indices("hubert", num_hubert, span_words[0].start, span_words[-1].end)
                if first == last:
                    modality = TEXT
            if spans and spans[-1].modality == modality:
                spans[-1] = Span(modality, spans[-1].words + tuple(span_words))
            else:
                spans.append(Span(modality, tuple(span_words)))
        return spans

    def render(self, spans: Sequence[Span], units: Mapping) -> str:
        """The training string of `spans`: a marker at each modality change, then text or the span's unit string."""
        pieces = []
        previous = None
        for span in spans:
            if span.modality != previous:
                pieces.append(MARKERS[span.modality])
            elif pieces:
                pieces.append(" " if span.modality == TEXT else "")
            if span.modality == TEXT:
                pieces.append(" ".join(word.word for word in span.words))
            else:
                pieces.append(self.span_string(units, span.start, span.end))
            previous = span.modality
        return "".join(pieces)

    def interleaved_sequence(
        self, words, units: Mapping, seed: int | Sequence[int] | np.random.Generator | None = None
    ) -> str:
        """A word-level interleaved training string, e.g. `"[Text]the cat[Speech][Hu12][Hu7]..[Text]the mat"`."""
        return self.render(self.interleaved_spans(words, units, seed), units)

    def build(self, kind: str, units: Mapping | None = None, words=None, seed=None) -> str:
        """One training string of `kind` (one of `SEQUENCE_KINDS`)."""
        if kind == "speech":
            return self.speech_sequence(units)
        if kind == "text":
            return self.text_sequence(words)
        if kind == "interleaved":
            return self.interleaved_sequence(words, units, seed)
        if kind == "asr":
            return self.asr_sequence(units, words)
        if kind == "tts":
            return self.tts_sequence(units, words)
        raise ValueError(f"unknown sequence kind {kind!r}; use one of {', '.join(map(repr, SEQUENCE_KINDS))}")


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; use one of {', '.join(map(repr, TASKS))}")


def _transcript(words) -> str:
    return " ".join(word.word for word in parse_word_alignments(words))


def _other(modality: str) -> str:
    return SPEECH if modality == TEXT else TEXT


def _column_names(dataset) -> list[str]:
    # An IterableDataset read without a schema (e.g. streamed JSON) only knows its columns from its first example.
    if dataset.column_names is not None:
        return dataset.column_names
    first = next(iter(dataset), None)
    if first is None:
        raise ValueError("the dataset is empty")
    return list(first)


def _check_columns(dataset, columns: Iterable[str], fix: str) -> None:
    names = _column_names(dataset)
    missing = [column for column in columns if column not in names]
    if missing:
        raise ValueError(f"dataset has no column(s) {missing} (columns: {names}); {fix}")


def _map(dataset, function, **kwargs):
    # An IterableDataset maps lazily, as it is read: it takes neither a progress bar, nor processes, nor a fingerprint.
    from datasets import IterableDataset

    if isinstance(dataset, IterableDataset):
        for key in ("desc", "num_proc", "new_fingerprint"):
            kwargs.pop(key, None)
    return dataset.map(function, **kwargs)


def build_sequences(
    dataset,
    kinds: Sequence[str] = ("speech", "text", "interleaved"),
    builder: SpiritLMSequenceBuilder | None = None,
    units_column: str = "units",
    words_column: str = "words",
    sequence_column: str = "sequence",
    seed: int = 0,
    batch_size: int = 100,
    num_proc: int | None = None,
):
    """
    Turns a dataset of units and word alignments into one row per example and kind, with the training string in
    `sequence_column` and its kind in `"kind"` (other columns are dropped).

    Interleaving draws from a generator seeded with `(seed, example index)`, so the result does not depend on
    batching, `num_proc` or sharding. A streaming `datasets.IterableDataset` gives an `IterableDataset` that builds the
    strings as it is read.
    """
    unknown = [kind for kind in kinds if kind not in SEQUENCE_KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown sequence kinds {unknown or list(kinds)}; use some of {list(SEQUENCE_KINDS)}")
    builder = builder or SpiritLMSequenceBuilder()
    needed = [units_column] if any(kind != "text" for kind in kinds) else []
    needed += [words_column] if any(kind != "speech" for kind in kinds) else []
    _check_columns(dataset, needed, "run extract_units() first for units, and give word alignments for text kinds")

    def build_batch(batch, indices):
        sequences, batch_kinds = [], []
        for row, index in enumerate(indices):
            units = batch[units_column][row] if units_column in batch else None
            words = batch[words_column][row] if words_column in batch else None
            for kind in kinds:
                try:
                    sequences.append(builder.build(kind, units, words, seed=[seed, index]))
                except ValueError as error:
                    raise ValueError(f"example {index}: {error}") from None
                batch_kinds.append(kind)
        return {sequence_column: sequences, "kind": batch_kinds}

    return _map(
        dataset,
        build_batch,
        batched=True,
        batch_size=batch_size,
        with_indices=True,
        remove_columns=_column_names(dataset),
        num_proc=num_proc,
        desc="Building SPIRIT LM sequences",
    )


def tokenize_sequences(
    dataset,
    tokenizer: PreTrainedTokenizerBase,
    sequence_column: str = "sequence",
    max_length: int | None = None,
    batch_size: int = 100,
):
    """
    Adds `input_ids` (BOS + tokens, truncated to `max_length` when given) for each training string; lazily, as it is
    read, for a streaming `datasets.IterableDataset`.
    """
    _check_columns(dataset, [sequence_column], "build the strings with build_sequences() first")

    def tokenize_batch(batch):
        encoded = tokenizer(batch[sequence_column], truncation=max_length is not None, max_length=max_length)
        return {"input_ids": encoded["input_ids"]}

    return _map(dataset, tokenize_batch, batched=True, batch_size=batch_size, desc="Tokenizing SPIRIT LM sequences")


def tokenize_task_pairs(
    dataset,
    tokenizer: PreTrainedTokenizerBase,
    task: str,
    builder: SpiritLMSequenceBuilder | None = None,
    units_column: str = "units",
    text_column: str = "text",
    batch_size: int = 100,
):
    """
    Turns a dataset of units and transcripts into `task` training pairs ([`SpiritLMSequenceBuilder.task_pair`]) with
    the loss on the answer only: `input_ids` = BOS + prompt + answer + EOS, `labels` = -100 over BOS and the prompt,
    the ids over the answer and EOS (so that generation learns to stop after it). Other columns are dropped;
    [`SpiritLMDataCollator`] (without `target_modality`) batches the result.

    The prompt ends with a marker, which the SPIRIT LM tokenizer matches as a whole token, so the ids of prompt +
    answer start with those of the prompt alone: the ones the processor gives at inference.
    """
    _check_columns(dataset, [units_column, text_column], "run extract_units() first, and give the transcripts")
    builder = builder or SpiritLMSequenceBuilder()
    _check_task(task)
    eos = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]

    def tokenize_batch(batch, indices):
        input_ids, labels = [], []
        for row, index in enumerate(indices):
            try:
                prompt, answer = builder.task_pair(task, batch[units_column][row], batch[text_column][row])
            except ValueError as error:
                raise ValueError(f"example {index}: {error}") from None
            prompt_length = len(tokenizer(prompt).input_ids)
            ids = tokenizer(prompt + answer).input_ids + eos
            input_ids.append(ids)
            labels.append([-100] * prompt_length + ids[prompt_length:])
        return {"input_ids": input_ids, "labels": labels}

    return _map(
        dataset,
        tokenize_batch,
        batched=True,
        batch_size=batch_size,
        with_indices=True,
        remove_columns=_column_names(dataset),
        desc=f"Building SPIRIT LM {task.upper()} pairs",
    )


def _as_audio_input(value):
    # `datasets` hands back arrays as python lists; the speech tokenizer reads paths, bytes and arrays itself.
    if isinstance(value, list):
        return np.asarray(value, dtype=np.float32)
    if isinstance(value, Mapping) and isinstance(value.get("array"), list):
        return {**value, "array": np.asarray(value["array"], dtype=np.float32)}
    return value


def _speech_tokenizer_fingerprint(speech_tokenizer) -> str:
    from datasets.fingerprint import Hasher

    hasher = Hasher()
    hasher.update(type(speech_tokenizer).__qualname__)
    config = getattr(speech_tokenizer, "config", None)
    hasher.update(config.to_json_string() if config is not None else "")
    if isinstance(speech_tokenizer, torch.nn.Module):
        for name, tensor in speech_tokenizer.state_dict().items():
            hasher.update(name)
            hasher.update(tensor.detach().to("cpu", torch.float32).numpy().tobytes())
    return hasher.hexdigest()


def extract_units(
    dataset,
    speech_tokenizer,
    audio_column: str = "audio",
    units_column: str = "units",
    batch_size: int = 8,
    sampling_rate: int | None = None,
):
    """
    Adds `units_column` = `speech_tokenizer.encode_units(audio)` (the per-stream unit lists) to every example, in
    batches, with a datasets progress bar.

    The map's fingerprint hashes the speech tokenizer's config and weights, so a dataset stored on disk reuses its
    cache file when the same tokenizer runs again. An `Audio` column is read undecoded (no torchcodec needed): the speech
    tokenizer reads the files / bytes with soundfile, resamples and down-mixes. `sampling_rate` is the rate of a
    column of bare arrays. A streaming `datasets.IterableDataset` gives an `IterableDataset` that extracts the units
    as it is read (nothing is cached).
    """
    from datasets import Audio, IterableDataset
    from datasets.fingerprint import Hasher

    _check_columns(dataset, [audio_column], "name the audio column with audio_column=")
    feature = (dataset.features or {}).get(audio_column)
    if isinstance(feature, Audio) and feature.decode:
        dataset = dataset.cast_column(audio_column, Audio(sampling_rate=feature.sampling_rate, decode=False))
    fingerprint = None
    if not isinstance(dataset, IterableDataset):
        fingerprint = Hasher.hash(
            (
                dataset._fingerprint,
                _speech_tokenizer_fingerprint(speech_tokenizer),
                audio_column,
                units_column,
                sampling_rate,
            )
        )

    def encode_batch(batch):
        audios = [_as_audio_input(value) for value in batch[audio_column]]
        units = speech_tokenizer.encode_units(audios, sampling_rate=sampling_rate)
        return {
            units_column: [{key: [int(value) for value in values] for key, values in item.items()} for item in units]
        }

    result = _map(
        dataset,
        encode_batch,
        batched=True,
        batch_size=batch_size,
        new_fingerprint=fingerprint,
        desc="Extracting speech units",
    )
    if isinstance(feature, Audio) and feature.decode:
        result = result.cast_column(audio_column, feature)
    return result


@dataclass
class SpiritLMDataCollator:
    """
    Pads tokenized SPIRIT LM sequences into a training batch for a causal LM.

    Each feature has `input_ids` (and optionally `labels`, e.g. with a prompt already set to -100). The batch has
    `input_ids` padded with `pad_token_id`, `attention_mask` (1 = real token) and `labels` = `input_ids` with -100 at
    padding. With `target_modality="text"` (or `"speech"`), only tokens of that modality carry a loss: text
    vocabulary tokens and `[Text]` (or unit tokens and `[Speech]`); special tokens and the other modality get -100.

    With `padding_free=True` the sequences are instead concatenated into one row (as transformers'
    [`~transformers.DataCollatorWithFlattening`] does): `input_ids` and `labels` of shape `(1, total_tokens)`, the
    first label of each sequence set to -100 so that no token is predicted across a boundary, and `position_ids`
    restarting at 0 for each sequence. No `attention_mask`: the model derives a block-diagonal causal mask from the
    `position_ids`, so the loss equals the padded batch's while no compute goes to padding. That mask is only derived
    when the forward pass builds no KV cache: the [`~transformers.Trainer`] sets `use_cache=False`; calling the model
    yourself, pass `use_cache=False`.

    Args:
        tokenizer: the SPIRIT LM tokenizer (the marker and unit ids are read from it).
        target_modality: `None` (loss on every real token), `"text"` or `"speech"`.
        pad_token_id: id written at padding; defaults to the tokenizer's pad, else its EOS token (the value is
            masked everywhere, so any id works).
        max_length: truncate longer sequences (keeping their start).
        pad_to_multiple_of: round the padded length up to a multiple of this.
        padding_side: `"right"` (training) or `"left"`.
        padding_free: pack the batch into one row with `position_ids` instead of padding it (see above).
    """

    tokenizer: PreTrainedTokenizerBase
    target_modality: str | None = None
    pad_token_id: int | None = None
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    padding_side: str = "right"
    padding_free: bool = False

    def __post_init__(self):
        if self.target_modality not in (None, *SEGMENT_TYPES):
            raise ValueError(f"unknown target_modality {self.target_modality!r}; use None, 'text' or 'speech'")
        if self.padding_side not in ("left", "right"):
            raise ValueError(f"unknown padding_side {self.padding_side!r}; use 'left' or 'right'")
        if self.padding_free and self.pad_to_multiple_of:
            raise ValueError("padding_free=True writes no padding: drop pad_to_multiple_of, or use padding_free=False")
        vocab = self.tokenizer.get_vocab()
        missing = [token for token in (TEXT_MARKER, SPEECH_MARKER, "[Hu0]") if token not in vocab]
        if missing:
            raise ValueError(f"tokenizer lacks the SPIRIT LM tokens {missing}; load the tokenizer of a SPIRIT LM repo")
        text_vocab_size = vocab[TEXT_MARKER]
        if (vocab[SPEECH_MARKER], vocab["[Hu0]"]) != (text_vocab_size + 1, text_vocab_size + 2):
            raise ValueError(
                f"tokenizer does not follow the SPIRIT LM token layout: [Text], [Speech] and [Hu0] have ids "
                f"{text_vocab_size}, {vocab[SPEECH_MARKER]} and {vocab['[Hu0]']}, not three in a row; load the "
                "tokenizer of a SPIRIT LM repo"
            )
        # Every id after the text vocabulary and [Text] is speech: [Speech] and the unit tokens.
        self._ranges = modality_token_ranges(text_vocab_size, max(vocab.values()) - text_vocab_size - 1)
        if self.pad_token_id is None:
            self.pad_token_id = self.tokenizer.pad_token_id
        if self.pad_token_id is None:
            self.pad_token_id = self.tokenizer.eos_token_id
        if self.pad_token_id is None:
            raise ValueError("the tokenizer has neither a pad nor an EOS token: pass pad_token_id=")
        # A marker is a token of its modality, even where the tokenizer calls it special.
        special_ids = set(self.tokenizer.all_special_ids) - {text_vocab_size}
        self._special_ids = torch.tensor(sorted(special_ids), dtype=torch.long)

    def modality_mask(self, input_ids: torch.Tensor, modality: str) -> torch.Tensor:
        """Boolean mask of the tokens of `modality` (its content tokens and its marker) in `input_ids`."""
        ids = self._ranges[modality]
        mask = (input_ids >= ids.start) & (input_ids < ids.stop)
        return mask & ~torch.isin(input_ids, self._special_ids) if modality == TEXT else mask

    def __call__(self, features: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty list of features")
        rows, label_rows = [], []
        for index, feature in enumerate(features):
            if "input_ids" not in feature:
                raise ValueError(
                    f"feature #{index} has no 'input_ids' (keys: {sorted(feature)}); tokenize the sequences first, "
                    "e.g. with tokenize_sequences()"
                )
            ids = list(feature["input_ids"])
            labels = list(feature["labels"]) if feature.get("labels") is not None else list(ids)
            if len(labels) != len(ids):
                raise ValueError(f"feature #{index} has {len(ids)} input_ids but {len(labels)} labels")
            if not ids:
                raise ValueError(f"feature #{index} has no tokens")
            rows.append(ids[: self.max_length])
            label_rows.append(labels[: self.max_length])
        if self.padding_free:
            return self._pack(rows, label_rows)
        length = max(map(len, rows))
        if self.pad_to_multiple_of:
            length = math.ceil(length / self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), length), -100, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for row, (ids, row_labels) in enumerate(zip(rows, label_rows)):
            positions = slice(0, len(ids)) if self.padding_side == "right" else slice(length - len(ids), length)
            input_ids[row, positions] = torch.tensor(ids, dtype=torch.long)
            labels[row, positions] = torch.tensor(row_labels, dtype=torch.long)
            attention_mask[row, positions] = 1
        if self.target_modality is not None:
            labels[~self.modality_mask(input_ids, self.target_modality)] = -100
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def _pack(self, rows: list[list[int]], label_rows: list[list[int]]) -> dict[str, torch.Tensor]:
        input_ids = torch.tensor([token for ids in rows for token in ids], dtype=torch.long)[None]
        labels = torch.tensor([label for row in label_rows for label in [-100, *row[1:]]], dtype=torch.long)[None]
        position_ids = torch.cat([torch.arange(len(ids), dtype=torch.long) for ids in rows])[None]
        if self.target_modality is not None:
            labels[~self.modality_mask(input_ids, self.target_modality)] = -100
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}


__all__ = [
    "SEQUENCE_KINDS",
    "TASKS",
    "UNIT_FRAME_RATES",
    "Span",
    "SpiritLMDataCollator",
    "SpiritLMSequenceBuilder",
    "WordAlignment",
    "build_sequences",
    "extract_units",
    "parse_word_alignments",
    "tokenize_sequences",
    "tokenize_task_pairs",
]
