"""The `"spirit-lm"` pipeline: interleaved speech / text prompt in, text / speech segments out."""

import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypedDict, overload

import numpy as np
import torch
from transformers import (
    GenerationConfig,
    LogitsProcessorList,
    Pipeline,
    PreTrainedModel,
    StoppingCriteriaList,
    set_seed,
)
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.utils import cached_file, logging

from .configuration_spiritlm import VOCODER_SUBFOLDER
from .generation import SpiritLMModalityLogitsProcessor, check_context_length
from .modalities import ARBITRARY, Segment, StreamChunk, check_output_modality
from .modeling_spiritlm import SpiritLMForCausalLM
from .streaming import SpiritLMStopOnCancel, SpiritLMStreamer
from .vocoder import SpiritLMVocoder, load_vocoder


logger = logging.get_logger(__name__)

_AUDIO_DICT_KEYS = ("array", "path", "bytes")
# A str prompt ending like this that names an existing file is almost certainly meant as speech.
_AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a")

# One prompt: text, speech (a path, an array or tensor, an Audio dict), a segment or a list of segments.
Prompt = str | os.PathLike | np.ndarray | torch.Tensor | Mapping[str, Any] | list[Segment]


class PromptAndSegments(TypedDict):
    """What the pipeline returns per prompt with `return_prompt=True`."""

    prompt: str
    segments: list[Segment]


class SpiritLMPipeline(Pipeline):
    r"""
    Generates text and / or speech from an interleaved speech + text prompt with SPIRIT LM.

    Loads the model, the [`SpiritLMProcessor`] (with its speech tokenizer) and the [`SpiritLMVocoder`] of a converted
    repo (`vocoder/` subfolder; pass `vocoder=` to use another one).

    `dtype` and `device_map` apply to the language model only. The speech tokenizer and the vocoder run in float32,
    as in the official code (the speech tokenizer's bfloat16 path gives other units), on the pipeline's device (the
    language model's first device under `device_map`); `speech_tokenizer_dtype=` / `vocoder_dtype=` choose another
    dtype for them. A `vocoder` or `processor` you pass keeps its dtype unless you give these.

    Inputs, per prompt:
        - a `str`: a text prompt;
        - a `pathlib.Path`, numpy array, torch tensor or `datasets` Audio dict (`{"array", "sampling_rate"}`): a
          speech prompt (`sampling_rate=` gives the rate of arrays / tensors);
        - a segment dict or a list of them: `{"type": "text", "text": ...}`, `{"type": "speech", "audio": ...}` or
          `{"type": "speech", "units": "[Hu..]..."}`, interleaved in order.
        A list whose items are any of these (not segment dicts) is a batch: one output list per item.

    Call kwargs:
        output_modality (`str`, defaults to `"arbitrary"`): `"text"`, `"speech"` or `"arbitrary"`. It ends the prompt
            with the marker of that modality and, unless `force_output_modality=False`, restricts generation to it.
        speaker_id (`int` or `str`, defaults to 2): vocoder speaker (index or name), as official.
        seed (`int`, *optional*): seeds python, numpy and torch before each `generate` call, so an item gives the
            same output alone or in a batch (with the default `batch_size=1`; a larger `batch_size` generates, and
            seeds, per batch).
        return_prompt (`bool`, defaults to `False`): return `{"prompt": str, "segments": [...]}` instead of the list.
        streamer: passed to `generate`, e.g. a [`SpiritLMStreamer`] iterated in another thread (one prompt only);
            [`~SpiritLMPipeline.stream`] sets that up for you.
        any generation kwarg (`max_new_tokens`, `do_sample`, `temperature`, `top_p`, `generation_config`, ...). When
        neither the call nor the model's generation config sets a length, up to 200 new tokens are generated. A
        prompt whose tokens and `max_new_tokens` together exceed the model's `max_position_embeddings` raises a
        `ValueError` before generating.

    Returns:
        Per prompt, a list of `{"type": "text", "text": str}` and `{"type": "speech", "audio": np.ndarray (float32),
        "sampling_rate": 16000, "units": str}` segments, decoded as the official code does (see
        [`~SpiritLMProcessor.decode_generation`]).

    ```python
    >>> import transformers_spiritlm
    >>> from transformers import pipeline
    >>> pipe = pipeline("spirit-lm", model="path/to/spiritlm-expressive")
    >>> pipe("The capital of France is", output_modality="text", max_new_tokens=20)
    [{'type': 'text', 'text': '...'}]
    >>> pipe(Path("question.wav"), output_modality="speech", do_sample=True, seed=0)
    [{'type': 'speech', 'audio': array([...], dtype=float32), 'sampling_rate': 16000, 'units': '[Hu..]...'}]
    ```
    """

    _load_processor = True
    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False
    _load_video_processor = False
    _pipeline_calls_generate = True
    _default_generation_config = GenerationConfig(max_new_tokens=200)

    def __init__(
        self,
        *args,
        vocoder: SpiritLMVocoder | str | os.PathLike | None = None,
        speech_tokenizer_dtype: str | torch.dtype | None = None,
        vocoder_dtype: str | torch.dtype | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if self.processor is None:
            raise ValueError(
                "the spirit-lm pipeline needs a SpiritLMProcessor; pass processor=... or a converted repo"
            )
        self.tokenizer = self.processor.tokenizer
        # Audio reaches the model as token ids: batches are collated as text only (left-padded by the tokenizer).
        self.feature_extractor = None
        if self.processor.speech_tokenizer is not None:
            self.processor.speech_tokenizer.to(self.device, dtype=_torch_dtype(speech_tokenizer_dtype))
        if self.tokenizer.pad_token_id is not None:
            # Set after the base class read it: the tokenizer only arrives with the processor.
            self._generation_defaults.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        self.vocoder = self._load_vocoder(vocoder, _torch_dtype(vocoder_dtype))

    def _load_vocoder(self, vocoder, dtype: torch.dtype | None) -> SpiritLMVocoder | None:
        if isinstance(vocoder, PreTrainedModel):
            return vocoder.to(self.device, dtype=dtype).eval()
        load_kwargs = {"dtype": dtype or torch.float32}
        if vocoder is not None:
            return SpiritLMVocoder.from_pretrained(vocoder, **load_kwargs).to(self.device).eval()
        repo = self.model.name_or_path
        if repo and cached_file(
            repo, "config.json", subfolder=VOCODER_SUBFOLDER, _raise_exceptions_for_missing_entries=False
        ):
            return load_vocoder(repo, **load_kwargs).to(self.device)
        logger.warning(
            f"no vocoder found in {repo!r} (expected a {VOCODER_SUBFOLDER}/ folder): speech outputs will carry their "
            "units but no audio; pass vocoder=SpiritLMVocoder.from_pretrained(...) to get audio"
        )
        return None

    @overload
    def __call__(self, inputs: Prompt, *, return_prompt: Literal[True], **kwargs: Any) -> PromptAndSegments: ...

    @overload
    def __call__(
        self, inputs: list[Prompt], *, return_prompt: Literal[True], **kwargs: Any
    ) -> list[PromptAndSegments]: ...

    @overload
    def __call__(self, inputs: Prompt, **kwargs: Any) -> list[Segment]: ...

    @overload
    def __call__(self, inputs: list[Prompt], **kwargs: Any) -> list[list[Segment]]: ...

    def __call__(self, inputs, **kwargs):
        """Generates from one prompt or a batch of prompts; see the class docstring for inputs, kwargs and outputs."""
        if _is_batch(inputs):
            if kwargs.get("streamer") is not None:
                raise ValueError(
                    f"a streamer follows one generation, got a batch of {len(inputs)} prompts: call the pipeline once "
                    "per prompt with a new streamer each, or use pipe.stream(prompt)"
                )
            return super().__call__(
                [tuple(_to_segments(item, f"input {i}")) for i, item in enumerate(inputs)], **kwargs
            )
        # A tuple is not taken for a batch by the base class.
        return super().__call__(tuple(_to_segments(inputs, "input")), **kwargs)

    def stream(
        self,
        inputs,
        chunk_size: int = 40,
        first_chunk_size: int | None = 5,
        left_context: int | None = None,
        lookahead: int | None = None,
        timeout: float | None = None,
        **kwargs,
    ) -> Iterator[StreamChunk]:
        """
        Generates from one prompt in a background thread and returns the output as it comes: an iterator of
        `{"type": "text", "text": delta}` and `{"type": "speech", "audio": np.ndarray, "sampling_rate": 16000,
        "units": str}` chunks (see [`SpiritLMStreamer`]), which join into the segments `pipe(inputs, **kwargs)`
        returns.

        Args:
            inputs: one prompt, as for `__call__` (a batch is a `ValueError`).
            chunk_size, first_chunk_size, left_context, lookahead: speech chunking, see
                [`~SpiritLMVocoder.chunked_decoder`].
            timeout: seconds to wait for the next token before raising `queue.Empty` (`None`: forever).
            kwargs: the same as `__call__` (`output_modality`, `speaker_id`, `seed`, `max_new_tokens`, ...).

        An exception of the generation is raised by the iterator. Leaving the iteration early (`break`, or `close()`
        on the iterator) stops the generation and waits for its thread.

        ```python
        >>> for chunk in pipe.stream("Tell me a story", output_modality="speech", max_new_tokens=200):
        ...     print(chunk["type"], chunk.get("text", chunk.get("units")))
        ```
        """
        if _is_batch(inputs):
            raise ValueError(
                f"pipe.stream streams one prompt, got a batch of {len(inputs)}: call it once per prompt, or use "
                "pipe(batch) for complete outputs"
            )
        for name in ("streamer", "return_prompt"):
            if name in kwargs:
                raise ValueError(f"pipe.stream does not take {name}=; it makes its own streamer and yields chunks")
        preprocess_params, forward_params, _ = self._sanitize_parameters(**kwargs)
        generate_kwargs = dict(forward_params.pop("generate_kwargs", {}))
        settings = self._get_set_generation_params(self._prepare_generate_kwargs(dict(generate_kwargs)))
        streamer = SpiritLMStreamer(
            self.processor,
            self.vocoder,
            output_modality=forward_params.get("output_modality", "arbitrary"),
            speaker_id=kwargs.get("speaker_id", 2),
            chunk_size=chunk_size,
            first_chunk_size=first_chunk_size,
            left_context=left_context,
            lookahead=lookahead,
            eos_token_id=settings.get("eos_token_id"),
            timeout=timeout,
        )
        stopping = StoppingCriteriaList(generate_kwargs.pop("stopping_criteria", None) or [])
        stopping.append(SpiritLMStopOnCancel(streamer))
        forward_params["generate_kwargs"] = {**generate_kwargs, "streamer": streamer, "stopping_criteria": stopping}
        model_inputs = self.preprocess(tuple(_to_segments(inputs, "input")), **preprocess_params)

        def generate() -> None:
            try:
                self.forward(model_inputs, **forward_params)
            except BaseException as error:  # noqa: BLE001 - re-raised in the consumer's thread
                streamer.fail(error)

        return _iterate_in_thread(streamer, threading.Thread(target=generate, name="spiritlm-stream", daemon=True))

    def _sanitize_parameters(
        self,
        output_modality: str | None = None,
        speaker_id: int | str | None = None,
        seed: int | None = None,
        return_prompt: bool | None = None,
        force_output_modality: bool | None = None,
        sampling_rate: int | None = None,
        **generate_kwargs,
    ):
        preprocess_params, forward_params, postprocess_params = {}, {}, {}
        if output_modality is not None:
            output_modality = check_output_modality(output_modality)
            preprocess_params["output_modality"] = forward_params["output_modality"] = output_modality
            postprocess_params["output_modality"] = output_modality
        if sampling_rate is not None:
            preprocess_params["sampling_rate"] = sampling_rate
        if seed is not None:
            forward_params["seed"] = seed
        if force_output_modality is not None:
            forward_params["force_output_modality"] = force_output_modality
        if generate_kwargs:
            preprocess_params["generate_kwargs"] = forward_params["generate_kwargs"] = generate_kwargs
            # Where generation stops matters to decoding too.
            eos_token_id = generate_kwargs.get("eos_token_id")
            if eos_token_id is None and generate_kwargs.get("generation_config") is not None:
                eos_token_id = generate_kwargs["generation_config"].eos_token_id
            if eos_token_id is not None:
                postprocess_params["eos_token_id"] = eos_token_id
        if speaker_id is not None:
            self._check_speaker(speaker_id)
            postprocess_params["speaker_id"] = speaker_id
        if return_prompt is not None:
            postprocess_params["return_prompt"] = return_prompt
        return preprocess_params, forward_params, postprocess_params

    def _check_speaker(self, speaker_id: int | str) -> None:
        """Fails before generating rather than after: the vocoder only sees the speaker when decoding."""
        vocoder = getattr(self, "vocoder", None)  # unset while the base class __init__ sanitizes init kwargs
        if vocoder is None or vocoder.config.num_speakers is None:
            return
        names = vocoder.config.speakers or []
        is_index = isinstance(speaker_id, int) and not isinstance(speaker_id, bool)
        if speaker_id in names or (is_index and 0 <= speaker_id < vocoder.config.num_speakers):
            return
        choices = f"0 to {vocoder.config.num_speakers - 1}" + (f" or a name in {names}" if names else "")
        raise ValueError(f"unknown speaker_id {speaker_id!r}; this vocoder takes {choices}")

    def preprocess(
        self,
        segments,
        output_modality: str = "arbitrary",
        sampling_rate: int | None = None,
        generate_kwargs: dict | None = None,
    ):
        prompt = self.processor.build_prompt(
            list(segments), output_modality=output_modality, sampling_rate=sampling_rate
        )
        encoded = self.tokenizer(prompt, return_tensors="pt")
        length = encoded["input_ids"].shape[-1]
        check_context_length(self.model.config, length, self._max_new_tokens(generate_kwargs or {}, length))
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "prompt": prompt}

    def _max_new_tokens(self, generate_kwargs: dict, prompt_length: int) -> int:
        """How many tokens `generate` may add to a prompt of `prompt_length` tokens with the call's kwargs."""
        settings = self._get_set_generation_params(self._prepare_generate_kwargs(dict(generate_kwargs)))
        if settings.get("max_new_tokens") is not None:
            return settings["max_new_tokens"]
        return max(settings.get("max_length", GenerationConfig().max_length) - prompt_length, 0)

    def _forward(
        self,
        model_inputs,
        output_modality: str = "arbitrary",
        seed: int | None = None,
        force_output_modality: bool = True,
        generate_kwargs: dict | None = None,
    ):
        generate_kwargs = self._prepare_generate_kwargs(dict(generate_kwargs or {}))
        logits_processor = LogitsProcessorList(generate_kwargs.pop("logits_processor", None) or [])
        if force_output_modality and output_modality != ARBITRARY:
            eos_token_id = self._get_set_generation_params(generate_kwargs).get("eos_token_id")
            logits_processor.append(SpiritLMModalityLogitsProcessor(self.model.config, output_modality, eos_token_id))
        streamer = generate_kwargs.get("streamer")
        if isinstance(streamer, SpiritLMStreamer) and streamer.output_modality != output_modality:
            raise ValueError(
                f"the streamer splits output_modality={streamer.output_modality!r} but the pipeline generates "
                f"{output_modality!r}: make the streamer with output_modality={output_modality!r}"
            )
        if seed is not None:
            set_seed(seed)
        output = self.model.generate(
            input_ids=model_inputs["input_ids"],
            attention_mask=model_inputs["attention_mask"],
            logits_processor=logits_processor,
            **generate_kwargs,
        )
        sequences = output if isinstance(output, torch.Tensor) else output.sequences
        return {
            "sequences": sequences,
            "attention_mask": model_inputs["attention_mask"],
            "prompt": model_inputs["prompt"],
        }

    def postprocess(
        self,
        model_outputs,
        output_modality: str = "arbitrary",
        speaker_id: int | str = 2,
        return_prompt: bool = False,
        eos_token_id: int | list[int] | None = None,
    ):
        if eos_token_id is None:
            eos_token_id = self.model.generation_config.eos_token_id
        prompt = model_outputs["prompt"]
        prompt = prompt[0] if isinstance(prompt, list) else prompt
        segments = self.processor.post_process_generation(
            model_outputs["sequences"],
            model_outputs["attention_mask"],
            output_modality=output_modality,
            vocoder=self.vocoder,
            speaker_id=speaker_id,
            eos_token_id=eos_token_id,
        )[0]
        return {"prompt": prompt, "segments": segments} if return_prompt else segments


def _torch_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """`"bfloat16"` or `torch.bfloat16` -> `torch.bfloat16`; `None` stays `None`."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and isinstance(getattr(torch, dtype, None), torch.dtype):
        return getattr(torch, dtype)
    raise ValueError(f"unknown dtype {dtype!r}; use a torch.dtype or its name, such as 'float32' or 'bfloat16'")


def _iterate_in_thread(streamer: SpiritLMStreamer, thread: threading.Thread) -> Iterator[StreamChunk]:
    """Starts `thread` (generation into `streamer`) and yields the streamer's chunks; stops the generation and joins
    the thread when the caller stops iterating."""
    thread.start()
    try:
        yield from streamer
    finally:
        streamer.cancel()
        thread.join()


def _is_segment(item) -> bool:
    return isinstance(item, Mapping) and "type" in item


def _is_batch(inputs) -> bool:
    """A list (or tuple) of prompts, as opposed to one prompt given as a list of segment dicts."""
    if not isinstance(inputs, (list, tuple)):
        return False
    if len(inputs) == 0:
        raise ValueError("empty input: give a prompt (str, audio, segment list) or a non-empty list of prompts")
    return not all(_is_segment(item) for item in inputs)


def _to_segments(prompt, where: str) -> list[Mapping]:
    """One pipeline input as a segment list (validated later by the processor)."""
    if isinstance(prompt, str):
        if prompt.lower().endswith(_AUDIO_SUFFIXES) and os.path.isfile(prompt):
            logger.warning_once(
                f"the text prompt {prompt!r} names an audio file; a str is always text. To use the file as speech, "
                f"pass Path({prompt!r}) or {{'type': 'speech', 'audio': {prompt!r}}}"
            )
        return [{"type": "text", "text": prompt}]
    if isinstance(prompt, (Path, np.ndarray, torch.Tensor)):
        return [{"type": "speech", "audio": prompt}]
    if _is_segment(prompt):
        return [prompt]
    if isinstance(prompt, Mapping):
        if any(key in prompt for key in _AUDIO_DICT_KEYS):
            return [{"type": "speech", "audio": prompt}]
        raise ValueError(
            f"{where}: a dict must be a segment (with a 'type' key: 'text' or 'speech') or a datasets Audio dict "
            f"(with 'array' and 'sampling_rate'), got keys {sorted(prompt)}"
        )
    if isinstance(prompt, Sequence) and len(prompt) and all(_is_segment(item) for item in prompt):
        return list(prompt)
    if isinstance(prompt, Sequence) and not len(prompt):
        raise ValueError(f"{where}: the segment list is empty; give at least one text or speech segment")
    raise TypeError(
        f"{where}: unsupported prompt of type {type(prompt).__name__}; pass a str (text), a pathlib.Path, numpy array, "
        "torch tensor or Audio dict (speech), or a list of segment dicts such as {'type': 'text', 'text': 'Hi'} "
        "(a plain str is text: wrap a file path in pathlib.Path to use it as speech)"
    )


PIPELINE_REGISTRY.register_pipeline("spirit-lm", pipeline_class=SpiritLMPipeline, pt_model=SpiritLMForCausalLM)

__all__ = ["PromptAndSegments", "SpiritLMPipeline"]
