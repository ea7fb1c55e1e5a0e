"""SPIRIT LM processor: interleaved text / speech segments -> prompt string -> token ids, and generated ids -> text /
speech segments (speech vocoded when a vocoder is given)."""

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import AutoModel, BatchEncoding, PreTrainedModel
from transformers.processing_utils import AudioKwargs, ProcessingKwargs, ProcessorMixin, Unpack
from transformers.utils import cached_file, logging

from .configuration_spiritlm import SPEECH_TOKENIZER_SUBFOLDER
from .modalities import ARBITRARY, MARKERS, SEGMENT_TYPES, SPEECH, TEXT, Segment, SpeechSegment, check_output_modality
from .tokenization_spiritlm import sentencepiece_byte_runs
from .units import UNIT_PREFIXES, UnitStringToken, UnitStringTokenizer, string_to_units, tokenize


logger = logging.get_logger(__name__)

# Official decoding drops generated speech shorter than this, counted as `len(chunk.split("[Hu"))`, i.e. one more than
# the number of hubert units: speech with fewer than 24 new hubert units is dropped.
MIN_SPEECH_HUBERT_COUNT = 25

_UNIT_PREFIXES = tuple(UNIT_PREFIXES.values())


def _segment_type(token: UnitStringToken) -> str | None:
    """The segment a token of a generation goes to, as the official parser splits it; `None` for a marker."""
    return {"unit": SPEECH, "text": TEXT}.get(token.kind)


def parse_generation(string: str) -> list[Segment]:
    """
    Splits a generated string into text and speech segments exactly like the official parser.

    `[Text]` / `[Speech]` markers are dropped (they do not end a segment: `"abc[Text]def"` is one text segment);
    anything starting with `[Hu`, `[Pi` or `[St` up to the next `]` is speech; everything else, stray brackets
    included (`"[abc"`, `"abc[]"`), is text (see [`UnitStringTokenizer`]).

    Returns:
        `[{"type": "text", "text": str} | {"type": "speech", "units": str}, ...]`, consecutive pieces of one type
        merged.
    """
    if not isinstance(string, str):
        raise TypeError(f"parse expects a str, got {type(string).__name__}")
    segments = []
    for token in tokenize(string):
        kind = _segment_type(token)
        if kind is None:
            continue
        key = "text" if kind == TEXT else "units"
        if segments and segments[-1]["type"] == kind:
            segments[-1][key] += token.text
        else:
            segments.append({"type": kind, key: token.text})
    return segments


def ends_with_unit_token(string: str) -> bool:
    """Whether `string` ends with a speech unit token, as the official `does_end_with_speech_token` decides: the last
    `[` among the final 11 characters that is at least 3 characters before the end must open `Hu`, `Pi` or `St`."""
    if len(string) <= 4 or not string.endswith("]"):
        return False
    for position in range(len(string) - 2, max(len(string) - 12, -1), -1):
        if string[position] == "[" and position + 3 < len(string):
            return string[position + 1 : position + 3] in _UNIT_PREFIXES
    return False


def starts_with_unit_token(string: str) -> bool:
    """Whether `string` starts with a speech unit token, as the official `does_start_with_speech_token` decides:
    it opens with `[Hu`, `[Pi` or `[St` and has a `]` at character 4 to 10."""
    if len(string) <= 4 or not string.startswith("["):
        return False
    for position in range(4, min(len(string), 11)):
        if string[position] == "]":
            return string[1:3] in _UNIT_PREFIXES
    return False


def _start_is_known(string: str) -> bool:
    """Whether more characters after `string` can no longer change `starts_with_unit_token(string)`."""
    if string and not string.startswith("["):
        return True
    return len(string) > 10 or (len(string) > 4 and "]" in string[4:11])


def last_speech_start(prompt: str) -> int | None:
    """Character index where the last run of adjacent unit tokens (`[Hu12][Pi3]...`) of `prompt` starts, `None`
    without unit tokens (the official `find_prompt_last_speech_start_position`)."""
    run_start = found = None
    position = 0
    for token in tokenize(prompt):
        if token.unit is None:
            run_start = None
        else:
            run_start = position if run_start is None else run_start
            found = run_start
        position += len(token.text)
    return found


@dataclass
class SegmentUpdate:
    """
    A change to the output of a [`GenerationSplitter`].

    Args:
        index (`int`): the output segment it changes (0, 1, ...; a dropped speech segment counts too).
        type (`str`): `"text"` or `"speech"`.
        delta (`str`): characters added to the segment: text, or unit tokens.
        context (`str`): speech that continues the prompt: the prompt's last speech run, which the units continue
            and are vocoded with (on the segment's first update).
        end (`bool`): the segment is complete.
        dropped (`bool`): speech that the official rules drop (too short): its only update, with all its units.
    """

    index: int
    type: str
    delta: str = ""
    context: str = ""
    end: bool = False
    dropped: bool = False


class GenerationSplitter:
    """
    The official decoding rules, applied to a generated continuation as it grows:
    [`~SpiritLMProcessor.decode_generation`] runs it on a whole continuation, [`SpiritLMStreamer`] as tokens come.

    - `"text"` / `"speech"`: the stripped continuation is one text / speech segment.
    - `"arbitrary"`: the stripped continuation is split like [`parse_generation`]. Speech after the first segment with
      fewer than 24 hubert units is dropped (the official threshold, `< 25`, counts one unit too many). When the
      prompt ends with speech and the continuation starts with speech, the continuation goes on from the prompt's
      last speech run (not stripped, as official): that run is the first segment's `context`, and the segment is
      dropped when it adds fewer than 24 hubert units.

    [`~GenerationSplitter.push`] returns the [`SegmentUpdate`]s that no later text can change: a `[` that may open a
    unit or a marker, and whitespace that may be the end (stripped), wait for what follows or the end.

    Args:
        prompt (`str`): the decoded prompt.
        output_modality (`str`): `"text"`, `"speech"` or `"arbitrary"`.
    """

    def __init__(self, prompt: str, output_modality: str):
        self.output_modality = check_output_modality(output_modality)
        self._prompt_tail = None
        if self.output_modality == ARBITRARY and ends_with_unit_token(prompt):
            self._prompt_tail = prompt[last_speech_start(prompt) :]
        self._start: str | None = ""  # the continuation until its start is decided, then None
        self._continues_prompt = False
        self._tokenizer = UnitStringTokenizer()
        self._whitespace = ""  # held back: stripped if it ends the continuation
        self._index, self._type = -1, None
        self._context_left = 0  # characters of the prompt's speech still to come
        self._context = self._units = ""  # of the speech segment, until it is kept
        self._kept = False
        self._new_hubert = 0
        if self.output_modality != ARBITRARY:
            self._open(self.output_modality)

    def push(self, text: str, final: bool = False) -> list[SegmentUpdate]:
        """Reads more of the continuation (`final`: its end); returns the updates that became final, one per segment
        changed."""
        updates = []
        if self._start is not None:
            self._start += text
            start = self._start.strip()
            if final or (start and (self._prompt_tail is None or _start_is_known(start))):
                updates = self._begin(start)
        else:
            updates = self._feed(text)
        if final:
            if self._continues_prompt:
                updates += self._read(self._tokenizer.push(self._whitespace))
            updates += self._read(self._tokenizer.flush()) + self._close()
        return _merged(updates)

    def _begin(self, start: str) -> list[SegmentUpdate]:
        """The continuation's start is known: goes on from the prompt's speech, or from the stripped start."""
        self._continues_prompt = self._prompt_tail is not None and starts_with_unit_token(start)
        if self._continues_prompt:
            self._context_left = len(self._prompt_tail)
            text = self._prompt_tail + self._start
        else:
            text = self._start.lstrip()
        self._start = None
        return self._feed(text)

    def _feed(self, text: str) -> list[SegmentUpdate]:
        text = self._whitespace + text
        body = text.rstrip()
        self._whitespace = text[len(body) :]
        return self._read(self._tokenizer.push(body))

    def _read(self, tokens: list[UnitStringToken]) -> list[SegmentUpdate]:
        updates = []
        for token in tokens:
            kind = self.output_modality if self.output_modality != ARBITRARY else _segment_type(token)
            if kind is None:
                continue  # markers do not end a segment
            if kind != self._type:
                updates += self._close()
                self._open(kind)
            if kind == TEXT:
                updates.append(SegmentUpdate(self._index, TEXT, token.text))
            else:
                updates += self._add_speech(token)
        return updates

    def _open(self, kind: str) -> None:
        self._index, self._type = self._index + 1, kind
        self._context = self._units = ""
        self._new_hubert = 0
        # The official rules keep any first segment, unless it continues the prompt's speech.
        self._kept = kind == SPEECH and self._index == 0 and not self._continues_prompt

    def _add_speech(self, token: UnitStringToken) -> list[SegmentUpdate]:
        units = token.text
        if self._context_left:
            taken = units[: self._context_left]
            self._context += taken
            self._context_left -= len(taken)
            units = units[len(taken) :]
            if not units:
                return []
        self._units += units
        self._new_hubert += token.stream == "hubert"
        if not self._kept and self._new_hubert < MIN_SPEECH_HUBERT_COUNT - 1:
            return []
        update = SegmentUpdate(self._index, SPEECH, self._units, context=self._context if not self._kept else "")
        self._kept, self._units = True, ""
        return [update]

    def _close(self) -> list[SegmentUpdate]:
        """Ends the current segment."""
        if self._index < 0:
            return []
        self._context_left = 0
        if self._type == SPEECH and not self._kept:
            return [SegmentUpdate(self._index, SPEECH, self._units, end=True, dropped=True)]
        return [SegmentUpdate(self._index, self._type, end=True)]


def _merged(updates: list[SegmentUpdate]) -> list[SegmentUpdate]:
    """Joins consecutive additions to one segment into one update."""
    merged = []
    for update in updates:
        last = merged[-1] if merged else None
        if last is not None and last.index == update.index and not (last.end or update.context or update.dropped):
            last.delta += update.delta
            last.end = update.end
        else:
            merged.append(update)
    return merged


def can_vocode(units: str, vocoder: PreTrainedModel) -> bool:
    """Whether `vocoder` can synthesise the unit string `units`: it needs hubert units, and pitch units when it is
    EXPRESSIVE. Warns when it cannot (the official code would fail): the speech is then returned with empty audio."""
    parsed = string_to_units(units)
    needs_pitch = "pitch" in vocoder.config.unit_types
    if parsed["hubert"] and not (needs_pitch and "pitch" not in parsed):
        return True
    missing = "hubert" if not parsed["hubert"] else "pitch"
    logger.warning(
        f"generated speech {units[:60]!r} has no {missing} units, which the vocoder needs; returning it with empty "
        "audio"
    )
    return False


class SpiritLMAudioKwargs(AudioKwargs, total=False):
    """
    sampling_rate (`int`, *optional*):
        Sampling rate of speech segments given as arrays / tensors without their own `"sampling_rate"`. Files and
        Audio dicts carry theirs.
    """


class SpiritLMProcessorKwargs(ProcessingKwargs, total=False):
    """
    output_modality (`str`, *optional*, defaults to `"arbitrary"`):
        What the prompt asks for: `"text"` ends it with `[Text]`, `"speech"` with `[Speech]` (unless the last segment
        already is of that modality), `"arbitrary"` adds nothing.
    """

    output_modality: str
    audio_kwargs: SpiritLMAudioKwargs


class SpiritLMProcessor(ProcessorMixin):
    r"""
    Builds SPIRIT LM prompts from interleaved text and speech, tokenizes them, and splits generated ids back into text
    and speech segments.

    A segment is `{"type": "text", "text": str}` or `{"type": "speech", "audio": path | array | tensor | Audio dict,
    "sampling_rate": int (optional)}`; a speech segment may instead carry `"units"`, a unit string such as
    `"[St71][Pi39][Hu99]"` (e.g. the `"units"` of a previous output), which skips the speech tokenizer.

    The speech tokenizer is a model, not a processor component in the transformers sense (the `audio_tokenizer` slot
    takes only built-in codecs): it is held as `processor.speech_tokenizer`, written to and read from the
    `speech_tokenizer/` subfolder by `save_pretrained` / `from_pretrained`.

    Args:
        feature_extractor ([`SpiritLMFeatureExtractor`]): audio loading, resampling to 16 kHz and mono mixing.
        tokenizer ([`~transformers.LlamaTokenizer`]): the text + unit tokenizer.
        speech_tokenizer ([`SpiritLMSpeechTokenizer`], *optional*): audio -> unit strings; needed only for speech
            segments given as audio.
        chat_template (`str`, *optional*): unused, accepted for the `ProcessorMixin` interface.
    """

    valid_processor_kwargs = SpiritLMProcessorKwargs
    text_kwargs = {"padding": True, "padding_side": "left", "return_tensors": "pt"}

    def __init__(
        self, feature_extractor, tokenizer, speech_tokenizer: PreTrainedModel | None = None, chat_template=None
    ):
        super().__init__(feature_extractor, tokenizer, chat_template=chat_template)
        self.speech_tokenizer = speech_tokenizer
        if tokenizer.pad_token is None and tokenizer.unk_token is not None:
            # Llama-2 has no pad token; batches are left-padded with <unk> and masked out.
            tokenizer.pad_token = tokenizer.unk_token

    @classmethod
    def get_attributes(cls) -> list[str]:
        # `speech_tokenizer` contains "tokenizer" and would otherwise be type-checked as a text tokenizer.
        return ["feature_extractor", "tokenizer"]

    def to_dict(self) -> dict:
        # The base class deep-copies every attribute before filtering: keep the model out of it, it is saved apart.
        speech_tokenizer = self.__dict__.pop("speech_tokenizer", None)
        try:
            return super().to_dict()
        finally:
            self.speech_tokenizer = speech_tokenizer

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs) -> list[str]:
        """Writes the tokenizer, `preprocessor_config.json`, `processor_config.json` and, when present, the speech
        tokenizer under `speech_tokenizer/`; `push_to_hub=True` then uploads all of it (`repo_id` and the other
        kwargs go to [`~transformers.utils.PushToHubMixin.push_to_hub`])."""
        files = super().save_pretrained(save_directory)
        self.feature_extractor.save_pretrained(save_directory)
        if self.speech_tokenizer is not None:
            self.speech_tokenizer.save_pretrained(os.path.join(save_directory, SPEECH_TOKENIZER_SUBFOLDER))
        if push_to_hub:
            # The base class would upload before the speech tokenizer is written: push the complete folder instead.
            self.push_to_hub(kwargs.pop("repo_id", os.path.basename(os.path.normpath(save_directory))), **kwargs)
        return files

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        speech_tokenizer: PreTrainedModel | None = None,
        load_speech_tokenizer: bool = True,
        speech_tokenizer_dtype: str | torch.dtype = torch.float32,
        **kwargs,
    ) -> "SpiritLMProcessor":
        """
        Loads the processor from a converted SPIRIT LM repo, with the speech tokenizer of its `speech_tokenizer/`
        subfolder when there is one (set `load_speech_tokenizer=False` for text / unit-string use only, or pass a
        loaded `speech_tokenizer`). Other kwargs go to [`~transformers.ProcessorMixin.from_pretrained`]; `revision`,
        `token`, `cache_dir`, `local_files_only` and `force_download` also reach the speech tokenizer.

        `dtype` and `device_map` (which `pipeline(..., dtype=..., device_map=...)` passes here too) are the language
        model's and do not reach the speech tokenizer: it loads in `speech_tokenizer_dtype`, float32 by default as in
        the official code (in bfloat16 it gives other units than the official float32 tokenizer), on the CPU; move
        it with `processor.speech_tokenizer.to(...)`.
        """
        processor = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        if speech_tokenizer is None and load_speech_tokenizer:
            hub_kwargs = {
                key: kwargs[key]
                for key in ("revision", "token", "cache_dir", "local_files_only", "force_download")
                if key in kwargs
            }
            config_file = cached_file(
                pretrained_model_name_or_path,
                "config.json",
                subfolder=SPEECH_TOKENIZER_SUBFOLDER,
                _raise_exceptions_for_missing_entries=False,
                **hub_kwargs,
            )
            if config_file is not None:
                speech_tokenizer = AutoModel.from_pretrained(
                    pretrained_model_name_or_path,
                    subfolder=SPEECH_TOKENIZER_SUBFOLDER,
                    dtype=speech_tokenizer_dtype,
                    **hub_kwargs,
                ).eval()
        processor.speech_tokenizer = speech_tokenizer
        return processor

    def __call__(
        self,
        segments: Sequence[Segment] | Sequence[Sequence[Segment]],
        **kwargs: Unpack[SpiritLMProcessorKwargs],
    ) -> BatchEncoding:
        """
        Tokenizes one prompt (a list of segments) or a batch of them (a list of lists), left-padded for generation.

        Args:
            segments: one segment list, or a list of segment lists.
            output_modality: `"text"`, `"speech"` or `"arbitrary"` (default), see [`~SpiritLMProcessor.build_prompt`].
            sampling_rate: rate of array / tensor speech segments that do not give their own.
            text kwargs (`padding`, `return_tensors`, `max_length`, ...) go to the tokenizer.

        Returns:
            [`~transformers.BatchEncoding`] with `input_ids` and `attention_mask`, `(batch_size, length)`, a batch of
            one for a single prompt.
        """
        output_kwargs = self._merge_kwargs(
            SpiritLMProcessorKwargs, tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs
        )
        output_modality = output_kwargs.get("output_modality", ARBITRARY)
        sampling_rate = output_kwargs["audio_kwargs"].get("sampling_rate")
        batch = [segments] if not _is_batch_of_prompts(segments) else list(segments)
        prompts = self.build_prompts(batch, output_modality=output_modality, sampling_rate=sampling_rate)
        return self.tokenizer(prompts, **output_kwargs["text_kwargs"])

    def build_prompt(
        self, segments: Sequence[Segment], output_modality: str = "arbitrary", sampling_rate: int | None = None
    ) -> str:
        """
        The prompt string of one segment list, identical to the official prompt builder's.

        Each change of modality opens with a marker (`[Text]` before text, `[Speech]` before speech units); speech
        audio is replaced by its unit string. `output_modality="text"` / `"speech"` then appends the marker of that
        modality unless the last segment already is of it; `"arbitrary"` appends nothing.

        ```python
        >>> processor.build_prompt([{"type": "speech", "audio": "question.wav"}], output_modality="text")
        '[Speech][St71][Pi39][Hu99][Hu49]...[Text]'
        ```
        """
        return self.build_prompts([segments], output_modality=output_modality, sampling_rate=sampling_rate)[0]

    def build_prompts(
        self,
        batch: Sequence[Sequence[Segment]],
        output_modality: str = "arbitrary",
        sampling_rate: int | None = None,
    ) -> list[str]:
        """[`~SpiritLMProcessor.build_prompt`] for a list of segment lists, speech of all prompts tokenized together."""
        output_modality = check_output_modality(output_modality)
        batch = [_check_segments(segments, f"prompt {index}") for index, segments in enumerate(batch)]
        audio_segments = [
            (f"prompt {prompt_index}, segment {index}", segment)
            for prompt_index, segments in enumerate(batch)
            for index, segment in enumerate(segments)
            if _needs_speech_tokenizer(segment)
        ]
        unit_strings = iter(self._encode_speech(audio_segments, sampling_rate))

        prompts = []
        for segments in batch:
            pieces, previous = [], None
            for segment in segments:
                if segment["type"] != previous:
                    pieces.append(MARKERS[segment["type"]])
                if segment["type"] == TEXT:
                    pieces.append(segment["text"])
                else:
                    pieces.append(next(unit_strings) if _needs_speech_tokenizer(segment) else segment["units"])
                previous = segment["type"]
            if output_modality != ARBITRARY and previous != output_modality:
                pieces.append(MARKERS[output_modality])
            prompts.append("".join(pieces))
        return prompts

    def build_few_shot_prompt(
        self,
        examples: Sequence[tuple],
        query: Mapping | Sequence[Mapping] | None = None,
        output_modality: str = "arbitrary",
        sampling_rate: int | None = None,
    ) -> str:
        """
        The official few-shot prompt (`build_few_shot_prompt` of the official STSP code): each `(input, output)`
        example as `{input}{output}`, each side opening with its own modality marker, the examples joined by `"\n"`
        with a trailing `"\n"`; then, when a `query` is given, its prompt ([`~SpiritLMProcessor.build_prompt`] with
        `output_modality`). All speech is tokenized in one batched call.

        Args:
            examples: `[(input, output), ...]`, each side a segment dict (or a list of segments), e.g.
                `({"type": "text", "text": "I love it"}, {"type": "speech", "audio": "happy.wav"})`.
            query: the segment(s) to answer, or `None` for the examples alone.

        ```python
        >>> processor.build_few_shot_prompt([({"type": "text", "text": "a"}, {"type": "text", "text": "b"})])
        '[Text]a[Text]b\n'
        ```
        """
        if isinstance(examples, (str, Mapping)) or not isinstance(examples, Sequence) or not examples:
            raise ValueError("examples must be a non-empty list of (input, output) pairs of segments")
        output_modality = check_output_modality(output_modality)
        sides = []
        for index, example in enumerate(examples):
            if isinstance(example, (str, Mapping)) or not isinstance(example, Sequence) or len(example) != 2:
                raise ValueError(f"example {index} must be an (input, output) pair of segments, got {example!r:.80}")
            sides += [[side] if isinstance(side, Mapping) else side for side in example]
        queries = [] if query is None else [[query] if isinstance(query, Mapping) else query]
        prompts = self.build_prompts(sides + queries, sampling_rate=sampling_rate)
        few_shot = "\n".join("".join(prompts[i : i + 2]) for i in range(0, len(sides), 2)) + "\n"
        if query is None:
            return few_shot
        query_prompt = prompts[-1]
        if output_modality != ARBITRARY and queries[0][-1]["type"] != output_modality:
            query_prompt += MARKERS[output_modality]
        return few_shot + query_prompt

    def _encode_speech(self, segments: list[tuple[str, Mapping]], sampling_rate: int | None) -> list[str]:
        """Unit strings of speech segments given as audio: the feature extractor loads each clip as 16 kHz mono, the
        speech tokenizer encodes them all in one batched call."""
        if not segments:
            return []
        if self.speech_tokenizer is None:
            raise ValueError(
                "a speech segment gives 'audio' but this processor has no speech tokenizer; load the processor from "
                "a converted repo with a speech_tokenizer/ folder, pass speech_tokenizer=..., or give the segment as "
                "{'type': 'speech', 'units': '[Hu..]...'}"
            )
        waveforms = []
        rate = self.feature_extractor.sampling_rate
        minimum = getattr(self.speech_tokenizer.config, "min_chunk_samples", 0)
        for where, segment in segments:
            try:
                features = self.feature_extractor(
                    segment["audio"], sampling_rate=segment.get("sampling_rate", sampling_rate), padding=False
                )
            except (FileNotFoundError, IsADirectoryError, ValueError, TypeError) as error:
                raise type(error)(f"{where}: {error}") from None
            waveform = torch.from_numpy(features["input_values"][0])
            if len(waveform) < minimum:
                raise ValueError(
                    f"{where}: audio has {len(waveform)} samples at {rate} Hz; the speech tokenizer needs at least "
                    f"{minimum} ({1000 * minimum / rate:g} ms)"
                )
            waveforms.append(waveform)
        return self.speech_tokenizer.encode_string(waveforms, sampling_rate=rate)

    def parse(self, generated: str) -> list[Segment]:
        """Splits a generated string into `{"type": "text", "text"}` and `{"type": "speech", "units"}` segments like
        the official parser: markers dropped, stray brackets kept as text. See [`parse_generation`]."""
        return parse_generation(generated)

    def decode_generation(
        self,
        prompt: str,
        continuation: str,
        output_modality: str = "arbitrary",
        vocoder: PreTrainedModel | None = None,
        speaker_id: int | str = 2,
    ) -> list[Segment]:
        """
        Turns a generated continuation of `prompt` into output segments, with the official rules (see
        [`GenerationSplitter`]): the stripped continuation is one text segment (`"text"`), one speech segment
        (`"speech"`), or split with [`~SpiritLMProcessor.parse`] (`"arbitrary"`), where speech after the first segment
        with fewer than 24 hubert units is dropped. When the prompt ends with speech and the continuation starts with
        speech, the prompt's last speech run is vocoded together with the continuation (the continuation may lack
        the pitch / style context) and the prompt's share of the audio, in proportion of hubert units, is cut off;
        the segment's `"units"` are the generated units only, and it is dropped when it adds fewer than 24 hubert
        units.

        Speech segments are `{"type": "speech", "units": str}`, plus `"audio"` (float32 numpy array) and
        `"sampling_rate"` when a `vocoder` ([`SpiritLMVocoder`]) is given; `speaker_id` picks its speaker.
        """
        splitter = GenerationSplitter(prompt, output_modality)
        segments: dict[int, dict] = {}
        for update in splitter.push(continuation, final=True):
            if not update.dropped:
                key = "text" if update.type == TEXT else "units"
                segment = segments.setdefault(update.index, {"type": update.type, key: "", "context": ""})
                segment[key] += update.delta
                segment["context"] += update.context
        outputs = []
        for segment in segments.values():
            context = segment.pop("context")
            if segment["type"] == SPEECH:
                segment = self._speech_segment(segment["units"], vocoder, speaker_id, context)
            outputs.append(segment)
        return outputs

    def post_process_generation(
        self,
        sequences: torch.LongTensor,
        attention_mask: torch.Tensor,
        output_modality: str = "arbitrary",
        vocoder: PreTrainedModel | None = None,
        speaker_id: int | str = 2,
        eos_token_id: int | list[int] | None = None,
    ) -> list[list[Segment]]:
        """
        Output segments of each row of `model.generate(**inputs)` (see [`~SpiritLMProcessor.decode_generation`]).

        Args:
            sequences: `(batch_size, prompt_length + new_tokens)` ids returned by `generate`.
            attention_mask: the prompt's `(batch_size, prompt_length)` mask from the processor call; it tells where
                the prompt ends and which of its ids are padding.
            eos_token_id: where each row's generation ends (default: the tokenizer's end-of-sequence token).

        Returns:
            One list of segments per row.
        """
        if eos_token_id is None:
            eos_token_id = self.tokenizer.eos_token_id
        eos_ids = torch.tensor([] if eos_token_id is None else eos_token_id, dtype=sequences.dtype).reshape(-1)
        prompt_length = attention_mask.shape[1]
        outputs = []
        for index, (row, mask) in enumerate(zip(sequences.cpu(), attention_mask.cpu())):
            prompt_ids = row[:prompt_length][mask.bool()]
            new_ids = row[prompt_length:]
            finished = torch.isin(new_ids, eos_ids).nonzero()
            if len(finished):
                new_ids = new_ids[: finished[0, 0]]
            ids = torch.cat([prompt_ids, new_ids])
            if (ids < 0).any():
                raise ValueError(
                    f"row {index} of sequences holds {int(ids[ids < 0][0])}, not a token id (padding with the official "
                    "pad_token_id=-1?); generate with pad_token_id=processor.tokenizer.pad_token_id"
                )
            prompt = self.decode_text(prompt_ids)
            generated = self.decode_text(ids)
            # Official: the continuation is the decoded whole minus the prompt's length. Decoding the new ids alone
            # would lose the space that a SentencePiece word piece carries at the start.
            continuation = generated[len(prompt) :] if generated.startswith(prompt) else self.decode_text(new_ids)
            outputs.append(self.decode_generation(prompt, continuation, output_modality, vocoder, speaker_id))
        return outputs

    def decode_text(self, ids: torch.Tensor | Sequence[int]) -> str:
        """
        Token ids -> the string the official SentencePiece tokenizer decodes (special tokens skipped, no clean-up),
        unit tokens included as `[Hu12]...`: how generations are decoded before they are parsed into segments.
        """
        # A random or badly trained model can end text on bytes that are no valid UTF-8: decode them as the official
        # SentencePiece tokenizer does (one U+FFFD per bad byte), not as tokenizers' ByteFallback (one per byte).
        if not hasattr(self, "_byte_tokens"):
            vocab = self.tokenizer.get_vocab()
            tokens = [vocab.get(f"<0x{value:02X}>") for value in range(256)]
            self._byte_tokens = tokens if None not in tokens else None
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        if self._byte_tokens is not None:
            byte_ids = {token: value for value, token in enumerate(self._byte_tokens)}
            ids = sentencepiece_byte_runs(ids, byte_ids, self._byte_tokens)
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    @staticmethod
    def _speech_segment(
        units: str, vocoder: PreTrainedModel | None, speaker_id: int | str, context: str = ""
    ) -> SpeechSegment:
        """A speech output segment; `context`: speech of the prompt that `units` continue, vocoded with them and cut
        off the audio in proportion of hubert units, as official."""
        if vocoder is None:
            return {"type": "speech", "units": units}
        if can_vocode(context + units, vocoder):
            audio = vocoder.decode_string(context + units, speaker_id=speaker_id).cpu().numpy()
            audio = audio.astype(np.float32, copy=False)
        else:
            audio = np.zeros(0, dtype=np.float32)
        # The official count of the whole speech's hubert units has one too many (`len(units.split("[Hu"))`).
        cut = math.ceil(audio.size * (context.count("[Hu") / ((context + units).count("[Hu") + 1)))
        return {"type": "speech", "audio": audio[cut:], "sampling_rate": vocoder.config.sampling_rate, "units": units}


def _needs_speech_tokenizer(segment: Mapping) -> bool:
    return segment["type"] == SPEECH and "units" not in segment


def _is_batch_of_prompts(segments) -> bool:
    return (
        isinstance(segments, Sequence)
        and not isinstance(segments, (str, Mapping))
        and len(segments) > 0
        and all(isinstance(item, Sequence) and not isinstance(item, (str, Mapping)) for item in segments)
    )


def _check_segments(segments, where: str) -> list[Mapping]:
    """Validates one segment list, raising errors that name the problem and the allowed values."""
    if isinstance(segments, (str, Mapping)) or not isinstance(segments, Sequence):
        raise TypeError(
            f"{where}: expected a list of segments such as [{{'type': 'text', 'text': 'Hello'}}], got "
            f"{type(segments).__name__}"
        )
    if len(segments) == 0:
        raise ValueError(f"{where}: the segment list is empty; give at least one text or speech segment")
    for index, segment in enumerate(segments):
        here = f"{where}, segment {index}"
        if not isinstance(segment, Mapping):
            raise TypeError(f"{here}: a segment is a dict with a 'type' key, got {type(segment).__name__}")
        kind = segment.get("type")
        if kind not in SEGMENT_TYPES:
            raise ValueError(
                f"{here}: unknown segment type {kind!r}; use one of {', '.join(map(repr, SEGMENT_TYPES))}"
            )
        if kind == TEXT and not isinstance(segment.get("text"), str):
            raise ValueError(f"{here}: a text segment needs a str 'text', got {type(segment.get('text')).__name__}")
        if kind == SPEECH:
            if ("audio" in segment) == ("units" in segment):
                raise ValueError(
                    f"{here}: a speech segment needs exactly one of 'audio' (path, array, tensor or Audio dict) and "
                    f"'units' (a unit string), got keys {sorted(segment)}"
                )
            if "units" in segment:
                if not isinstance(segment["units"], str) or not segment["units"]:
                    raise ValueError(f"{here}: 'units' must be a non-empty unit string such as '[Hu12][Hu7]'")
                try:
                    # Anything else would be tokenized as text after the [Speech] marker.
                    string_to_units(segment["units"], strict=True)
                except ValueError as error:
                    raise ValueError(f"{here}: {error}") from None
    return list(segments)


__all__ = ["GenerationSplitter", "SegmentUpdate", "SpiritLMProcessor", "can_vocode", "parse_generation"]
