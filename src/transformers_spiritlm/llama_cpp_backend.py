"""SPIRIT LM's language model in llama.cpp (extra `[gguf]`): [`export_gguf`] writes it as a GGUF file, and
[`SpiritLMLlamaCppForCausalLM`] generates with it through the `generate` of a transformers causal LM, so that the
pipeline, the streamer and the `spiritlm` commands run it unchanged. The processor, speech tokenizer and vocoder stay
in torch; llama.cpp only ever sees token ids.

Imported only when used: the rest of the package never imports `gguf` or `llama_cpp`.
"""

import copy
import ctypes
import json
import logging
import os
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, GenerationConfig, LogitsProcessorList, StoppingCriteriaList
from transformers.generation import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, cached_file

from .configuration_spiritlm import SpiritLMConfig
from .extras import import_extra
from .tokenization_spiritlm import check_spiritlm_token_layout, spiritlm_token_strings


GGUF_TYPES = ("f32", "f16", "q8_0", "q4_0", "q4_K_M")
# llama.cpp's `llama_ftype` of each quantized type (llama.h).
_LLAMA_FTYPES = {"q8_0": 7, "q4_0": 2, "q4_K_M": 15}
# `ggml_type` of the KV cache (`type_k` / `type_v` of the llama.cpp context).
_KV_CACHE_TYPES = {"float32": 0, "float16": 1}
# Generation settings the backend does not apply, with the value that means "off": any other value is refused.
_UNSUPPORTED_SETTINGS = {
    "num_beams": 1, "num_return_sequences": 1, "min_length": 0, "min_new_tokens": 0, "no_repeat_ngram_size": 0,
    "bad_words_ids": None, "force_words_ids": None, "sequence_bias": None, "suppress_tokens": None,
    "begin_suppress_tokens": None, "forced_bos_token_id": None, "forced_eos_token_id": None, "typical_p": 1.0,
    "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "top_h": None, "encoder_repetition_penalty": 1.0,
    "return_dict_in_generate": False, "output_scores": False, "output_logits": False,
    "prompt_lookup_num_tokens": None,
}  # fmt: skip


def _gguf():
    return import_extra("gguf", "gguf", "writing a GGUF file")


def _llama_cpp(purpose: str = "running SPIRIT LM with llama.cpp"):
    return import_extra("llama_cpp", "gguf", purpose)


def check_gguf_type(gguf_type: str) -> str:
    """Returns `gguf_type` if it is one of `GGUF_TYPES`, else raises a `ValueError` listing them."""
    if gguf_type not in GGUF_TYPES:
        raise ValueError(f"unknown GGUF type {gguf_type!r}; use one of {', '.join(GGUF_TYPES)}")
    return gguf_type


def _check_llama_layout(config: SpiritLMConfig) -> None:
    """llama.cpp's LLaMA graph has no biases and plain RoPE: refuse a config it would run differently."""
    rope_type = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if config.attention_bias or config.mlp_bias or rope_type != "default" or config.hidden_act != "silu":
        raise ValueError(
            "this SPIRIT LM config is not a plain LLaMA (attention_bias, mlp_bias, rope scaling or a non-SiLU "
            "activation): llama.cpp's LLaMA graph would compute something else, so it is not exported"
        )


def gguf_vocabulary(repo: str | os.PathLike, config: SpiritLMConfig) -> tuple[list[str], list[float], list[int]]:
    """
    The GGUF vocabulary of a converted repo, one entry per row of the embedding (`config.vocab_size`): tokens,
    scores and `gguf.TokenType` values. Text pieces are the SentencePiece vocabulary of `tokenizer.json` (`<unk>`
    unknown, `<s>` / `</s>` control, `<0xNN>` byte, the others normal, scored by rank as SentencePiece orders them);
    the markers and unit tokens are user-defined tokens at their ids; padding rows past them are unused.
    """
    gguf = _gguf()
    tokenizer = AutoTokenizer.from_pretrained(repo)
    check_spiritlm_token_layout(tokenizer, config)
    pieces = {index: token for token, index in tokenizer.get_vocab().items()}
    special = {tokenizer.bos_token, tokenizer.eos_token}
    added = spiritlm_token_strings(config)
    tokens, scores, types = [], [], []
    for index in range(config.vocab_size):
        if index >= config.text_vocab_size + len(added):
            tokens.append(f"<unused{index}>")
            scores.append(0.0)
            types.append(gguf.TokenType.UNUSED)
            continue
        if index >= config.text_vocab_size:
            tokens.append(added[index - config.text_vocab_size])
            scores.append(0.0)
            types.append(gguf.TokenType.USER_DEFINED)
            continue
        if index not in pieces:
            raise ValueError(f"{repo}: the tokenizer has no token with id {index} of its text vocabulary")
        piece = pieces[index]
        tokens.append(piece)
        if piece == tokenizer.unk_token:
            token_type = gguf.TokenType.UNKNOWN
        elif piece in special:
            token_type = gguf.TokenType.CONTROL
        elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            token_type = gguf.TokenType.BYTE
        else:
            token_type = gguf.TokenType.NORMAL
        scores.append(-float(index) if token_type == gguf.TokenType.NORMAL else 0.0)
        types.append(token_type)
    return tokens, scores, [int(token_type) for token_type in types]


def _weight_files(repo: str | os.PathLike) -> list[str]:
    """The safetensors files of the language model in `repo` (a folder or a Hub repo id)."""
    index = cached_file(repo, SAFE_WEIGHTS_INDEX_NAME, _raise_exceptions_for_missing_entries=False)
    if index is None:
        single = cached_file(repo, SAFE_WEIGHTS_NAME, _raise_exceptions_for_missing_entries=False)
        if single is None:
            raise FileNotFoundError(f"{repo} has no {SAFE_WEIGHTS_NAME}: give a converted SPIRIT LM repo")
        return [single]
    with open(index) as file:
        names = sorted(set(json.load(file)["weight_map"].values()))
    return [cached_file(repo, name) for name in names]


def _llama_permute(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Reorders the rows of a q / k projection from transformers' rotate-half RoPE layout to the interleaved pairs
    that llama.cpp's RoPE rotates (the inverse of transformers' own LLaMA conversion)."""
    head_dim = weight.shape[0] // num_heads
    return weight.reshape(num_heads, 2, head_dim // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _gguf_tensors(repo: str | os.PathLike, config: SpiritLMConfig) -> Iterator[tuple[str, list[int], Callable]]:
    """`(gguf name, shape, load)` for every weight of the language model; `load()` reads it as a float32 tensor in
    llama.cpp's layout, one at a time."""
    from safetensors import safe_open

    gguf = _gguf()
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    heads = {
        "self_attn.q_proj.weight": config.num_attention_heads,
        "self_attn.k_proj.weight": config.num_key_value_heads,
    }
    for path in _weight_files(repo):
        with safe_open(path, framework="pt") as file:
            for key in file.keys():
                name = names.get_name(key, try_suffixes=(".weight",))
                if name is None:
                    raise ValueError(f"{path}: tensor {key!r} is not part of a LLaMA model; cannot export it")
                num_heads = next((count for suffix, count in heads.items() if key.endswith(suffix)), None)

                def load(path=path, key=key, num_heads=num_heads) -> torch.Tensor:
                    with safe_open(path, framework="pt") as file:
                        tensor = file.get_tensor(key).float()
                    return tensor if num_heads is None else _llama_permute(tensor, num_heads)

                yield name, file.get_slice(key).get_shape(), load


def _write_gguf(repo: str | os.PathLike, config: SpiritLMConfig, path: Path, half: bool) -> None:
    """Writes the float32 (or, with `half`, float16 except the 1-D norms) GGUF of `repo` to `path`, one tensor in
    memory at a time."""
    gguf = _gguf()
    tokens, scores, types = gguf_vocabulary(repo, config)
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_name(Path(str(repo)).name or "spiritlm")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_key_length(config.head_dim)
    writer.add_value_length(config.head_dim)
    writer.add_rope_dimension_count(config.head_dim)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if half else gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(config.bos_token_id)
    writer.add_eos_token_id(config.eos_token_id)
    if config.pad_token_id is not None:
        writer.add_pad_token_id(config.pad_token_id)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)

    def dtype(shape: list[int]) -> np.dtype:
        return np.dtype(np.float16 if half and len(shape) > 1 else np.float32)

    # The header lists every tensor before the first one's data: shapes first, then the weights one at a time.
    tensors = list(_gguf_tensors(repo, config))
    for name, shape, _ in tensors:
        writer.add_tensor_info(name, tuple(shape), dtype(shape), int(np.prod(shape)) * dtype(shape).itemsize)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for _, shape, load in tensors:
            writer.write_tensor_data(load().numpy().astype(dtype(shape)))
    finally:
        writer.close()


def export_gguf(
    repo: str | os.PathLike,
    output: str | os.PathLike,
    gguf_type: str = "f32",
    force: bool = False,
    n_threads: int | None = None,
) -> Path:
    """
    Writes the language model of a converted SPIRIT LM repo (BASE or EXPRESSIVE) to `output` as a GGUF file that
    llama.cpp runs: LLaMA tensor layout, the SentencePiece text vocabulary, the markers and unit tokens as
    user-defined tokens at their ids, padding rows unused (see [`gguf_vocabulary`]).

    Args:
        repo: converted repo folder or Hub repo id.
        output: the GGUF file to write; an existing one is refused unless `force`.
        gguf_type: `"f32"` (exact), `"f16"`, or a llama.cpp quantization, `"q8_0"`, `"q4_0"` or `"q4_K_M"`, made
            with `llama_model_quantize` from an f16 copy as llama.cpp's own converter does.
        n_threads: threads for the quantization (default: llama.cpp's choice).

    The file is written beside `output` under a temporary name and renamed over it when complete. Returns `output`.
    """
    check_gguf_type(gguf_type)
    output = Path(output)
    if output.exists() and not force:
        raise FileExistsError(f"{output} exists; choose another output or pass force=True (--force) to overwrite it")
    _gguf()
    llama_cpp = _llama_cpp(f"quantizing to {gguf_type}") if gguf_type in _LLAMA_FTYPES else None
    config = SpiritLMConfig.from_pretrained(repo)
    _check_llama_layout(config)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.{os.getpid()}.part")
    source = output.with_name(f".{output.name}.{os.getpid()}.f16.part")
    try:
        if llama_cpp is None:
            _write_gguf(repo, config, partial, half=gguf_type == "f16")
        else:
            _write_gguf(repo, config, source, half=True)
            # llama-cpp-python prints llama.cpp's log through this logger: its per-tensor lines, errors aside, go.
            logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = _LLAMA_FTYPES[gguf_type]
            params.nthread = n_threads or 0
            status = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), ctypes.byref(params))
            if status != 0:
                raise RuntimeError(f"llama.cpp could not quantize {repo} to {gguf_type} (status {status})")
        os.replace(partial, output)
    finally:
        for path in (partial, source):
            path.unlink(missing_ok=True)
    return output


def _field(reader, key: str):
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def check_gguf_matches(gguf_file: str | os.PathLike, repo: str | os.PathLike, config: SpiritLMConfig) -> None:
    """
    Raises a `ValueError` naming the difference unless `gguf_file` is a LLaMA GGUF of the language model of `repo`:
    the sizes of `config` and the vocabulary [`export_gguf`] writes for `repo` (a file that is not GGUF at all is a
    `ValueError` too). Reads the header only.
    """
    gguf = _gguf()
    path = Path(gguf_file)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {path} not found; write one with `spiritlm export-gguf --repo {repo}`")
    with open(path, "rb") as file:
        magic = file.read(4)
    if magic != b"GGUF":
        raise ValueError(f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF')")
    reader = gguf.GGUFReader(path)
    architecture = _field(reader, "general.architecture")
    if architecture != "llama":
        raise ValueError(f"{path} holds a {architecture!r} model, not a LLaMA: it is no SPIRIT LM export")
    expected = {
        "embedding_length": config.hidden_size,
        "block_count": config.num_hidden_layers,
        "feed_forward_length": config.intermediate_size,
        "attention.head_count": config.num_attention_heads,
        "attention.head_count_kv": config.num_key_value_heads,
    }
    for key, value in expected.items():
        found = _field(reader, f"llama.{key}")
        if found != value:
            raise ValueError(
                f"{path} does not match {repo}: llama.{key} is {found}, the repo's config says {value}; export the "
                f"GGUF from this repo with `spiritlm export-gguf --repo {repo}`"
            )
    tokens = _field(reader, "tokenizer.ggml.tokens") or []
    vocabulary = gguf_vocabulary(repo, config)[0]
    if len(tokens) != len(vocabulary):
        raise ValueError(
            f"{path} does not match {repo}: its vocabulary has {len(tokens)} tokens, the repo's {len(vocabulary)}; "
            f"export the GGUF from this repo with `spiritlm export-gguf --repo {repo}`"
        )
    for index, (token, wanted) in enumerate(zip(tokens, vocabulary)):
        if token != wanted:
            raise ValueError(
                f"{path} does not match {repo}: token {index} is {token!r} in the GGUF, {wanted!r} in the repo's "
                f"tokenizer; export the GGUF from this repo with `spiritlm export-gguf --repo {repo}`"
            )


class SpiritLMLlamaCppForCausalLM:
    r"""
    The SPIRIT LM language model run by llama.cpp from a GGUF file ([`export_gguf`]), with the part of a transformers
    causal LM that the pipeline, [`SpiritLMStreamer`] and the `spiritlm` commands use: `config`, `generation_config`,
    `name_or_path` (the converted repo, where the processor and vocoder are found), `device` and [`generate`].

    Generation is driven by token ids only. The logits of each step go through the `logits_processor` you pass (the
    pipeline's [`SpiritLMModalityLogitsProcessor`]) and, when sampling, transformers' temperature / top-k / top-p /
    min-p warpers, in the order `generate` applies them, then `argmax` or `torch.multinomial`. A batch is generated
    item by item (llama.cpp holds one sequence); the output is padded as `generate` pads it.

    Args:
        gguf_file: the GGUF file.
        config ([`SpiritLMConfig`]) and generation_config: those of the converted repo.
        name_or_path: the converted repo.
        n_ctx (`int`, *optional*): context length of the llama.cpp context (default: `max_position_embeddings`).
        n_threads (`int`, *optional*): CPU threads (default: llama.cpp's, half the cores).
        kv_cache_dtype (`str`, *optional*): `"float32"` or `"float16"`. Defaults to float32 for an f32 GGUF (whose
            logits then equal transformers' float32 ones to ~1e-6) and float16 otherwise (half the memory).

    ```python
    >>> model = SpiritLMLlamaCppForCausalLM.from_pretrained("path/to/spiritlm-expressive", "spiritlm-q4_0.gguf")
    >>> pipe = pipeline("spirit-lm", model=model, processor="path/to/spiritlm-expressive")
    ```
    """

    main_input_name = "input_ids"
    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(
        self,
        gguf_file: str | os.PathLike,
        config: SpiritLMConfig,
        generation_config: GenerationConfig | None = None,
        name_or_path: str = "",
        n_ctx: int | None = None,
        n_threads: int | None = None,
        kv_cache_dtype: str | None = None,
    ):
        llama_cpp = _llama_cpp()
        self.config = config
        self.generation_config = generation_config or GenerationConfig.from_model_config(config)
        self.name_or_path = str(name_or_path)
        self.gguf_file = Path(gguf_file)
        if kv_cache_dtype is None:
            file_type = _field(_gguf().GGUFReader(self.gguf_file), "general.file_type")
            kv_cache_dtype = "float32" if file_type == 0 else "float16"
        if kv_cache_dtype not in _KV_CACHE_TYPES:
            raise ValueError(f"unknown kv_cache_dtype {kv_cache_dtype!r}; use 'float32' or 'float16'")
        self.n_ctx = n_ctx or config.max_position_embeddings
        cache_type = _KV_CACHE_TYPES[kv_cache_dtype]
        self._llama_cpp = llama_cpp
        self.llm = llama_cpp.Llama(
            model_path=str(self.gguf_file),
            n_ctx=self.n_ctx,
            n_threads=n_threads,
            type_k=cache_type,
            type_v=cache_type,
            verbose=False,
        )
        # Closed at exit while the interpreter still runs: llama-cpp-python's own __del__ fails once it is torn down.
        weakref.finalize(self, self.llm.close)

    @classmethod
    def from_pretrained(
        cls, repo: str | os.PathLike, gguf_file: str | os.PathLike, **kwargs
    ) -> "SpiritLMLlamaCppForCausalLM":
        """Loads `gguf_file` for the converted repo `repo` (its config and generation config), after checking that
        the file is this repo's export ([`check_gguf_matches`]). `kwargs` go to the constructor."""
        _llama_cpp()
        config = SpiritLMConfig.from_pretrained(repo)
        check_gguf_matches(gguf_file, repo, config)
        try:
            generation_config = GenerationConfig.from_pretrained(repo)
        except OSError:
            generation_config = None
        return cls(gguf_file, config, generation_config, name_or_path=str(repo), **kwargs)

    def can_generate(self) -> bool:
        return True

    def to(self, *args, **kwargs) -> "SpiritLMLlamaCppForCausalLM":
        """llama.cpp runs where it was built for: the model stays put, its outputs are CPU tensors."""
        return self

    def eval(self) -> "SpiritLMLlamaCppForCausalLM":
        return self

    def _last_logits(self) -> torch.Tensor:
        """`(1, vocab_size)` float32 logits after the last evaluated token."""
        pointer = self._llama_cpp.llama_get_logits_ith(self.llm._ctx.ctx, -1)
        return torch.from_numpy(np.ctypeslib.as_array(pointer, shape=(self.llm.n_vocab(),)).copy())[None]

    def last_logits(self, input_ids: list[int] | torch.Tensor) -> torch.Tensor:
        """The `(vocab_size,)` float32 logits that follow the 1-D sequence `input_ids`."""
        ids = torch.as_tensor(input_ids).reshape(-1).tolist()
        self._check_length(len(ids), 0)
        self.llm.reset()
        self.llm.eval(ids)
        return self._last_logits()[0]

    def _check_length(self, prompt_tokens: int, max_new_tokens: int) -> None:
        if prompt_tokens + max_new_tokens > self.n_ctx:
            raise ValueError(
                f"the prompt has {prompt_tokens} tokens and max_new_tokens is {max_new_tokens}: more than the "
                f"llama.cpp context of {self.n_ctx} tokens; load the model with a larger n_ctx or shorten the prompt"
            )

    def _generation_settings(self, generation_config: GenerationConfig | None, kwargs: dict) -> GenerationConfig:
        # As `generate` resolves them: the call's kwargs over its generation config over the model's over the global
        # defaults (such as top_k=50 when sampling).
        settings = copy.deepcopy(generation_config) if generation_config is not None else GenerationConfig()
        settings.update(**self.generation_config.to_dict(), defaults_only=True, allow_custom_entries=True)
        settings.update(**settings._get_default_generation_params(), defaults_only=True)
        unused = settings.update(**kwargs)
        if unused:
            raise TypeError(f"{type(self).__name__}.generate does not take {', '.join(sorted(unused))}")
        refused = [
            f"{key}={getattr(settings, key)!r}"
            for key, off in _UNSUPPORTED_SETTINGS.items()
            if getattr(settings, key, None) not in (None, off)
        ]
        if refused:
            raise ValueError(
                "the llama.cpp backend generates one sequence per prompt by greedy search or sampling; it does not "
                f"apply {', '.join(refused)}"
            )
        return settings

    def _logits_processors(self, settings: GenerationConfig, logits_processor) -> LogitsProcessorList:
        """What `generate` would apply, in its order: repetition penalty, the caller's processors, the warpers."""
        processors = LogitsProcessorList()
        if settings.repetition_penalty is not None and settings.repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(settings.repetition_penalty))
        processors.extend(logits_processor or [])
        if settings.do_sample:
            if settings.temperature is not None and settings.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(settings.temperature))
            if settings.top_k is not None and settings.top_k != 0:
                processors.append(TopKLogitsWarper(settings.top_k))
            if settings.top_p is not None and settings.top_p < 1.0:
                processors.append(TopPLogitsWarper(settings.top_p))
            if settings.min_p is not None:
                processors.append(MinPLogitsWarper(settings.min_p))
        return processors

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor | None = None,
        logits_processor: LogitsProcessorList | None = None,
        stopping_criteria: StoppingCriteriaList | None = None,
        streamer=None,
        generation_config: GenerationConfig | None = None,
        **kwargs,
    ) -> torch.LongTensor:
        """
        `generate` of a transformers causal LM, for greedy search and sampling: `max_new_tokens`, `do_sample`,
        `temperature`, `top_k`, `top_p`, `min_p`, `repetition_penalty`, `eos_token_id`, `pad_token_id`,
        `logits_processor`, `stopping_criteria` and `streamer` (batch of one) as there; other generation settings
        raise a `ValueError`. Returns the `(batch, prompt + new tokens)` ids on the CPU, the prompts as given (left
        padding kept), finished rows padded with `pad_token_id`.
        """
        settings = self._generation_settings(generation_config, kwargs)
        input_ids = torch.as_tensor(input_ids).cpu()
        if input_ids.ndim == 1:
            input_ids = input_ids[None]
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.cpu()
        if streamer is not None and input_ids.shape[0] > 1:
            raise ValueError(f"a streamer follows one sequence, got a batch of {input_ids.shape[0]}")
        if settings.max_new_tokens is not None:
            max_new_tokens = settings.max_new_tokens
        else:
            max_new_tokens = max(settings.max_length - input_ids.shape[1], 0)
        eos = settings.eos_token_id
        eos = [] if eos is None else [int(i) for i in torch.tensor(eos).reshape(-1)]
        pad = settings.pad_token_id if settings.pad_token_id is not None else (eos or [0])[0]
        processors = self._logits_processors(settings, logits_processor)
        stopping = stopping_criteria or StoppingCriteriaList()
        for length in attention_mask.sum(-1).tolist():
            self._check_length(int(length), max_new_tokens)
        outputs = []
        for row, mask in zip(input_ids, attention_mask):
            if streamer is not None:
                streamer.put(row[None])
            outputs.append(
                self._generate_one(row, mask, max_new_tokens, settings.do_sample, eos, processors, stopping, streamer)
            )
        if streamer is not None:
            streamer.end()
        width = max(len(new) for new in outputs)
        new_tokens = torch.full((len(outputs), width), pad, dtype=torch.long)
        for index, new in enumerate(outputs):
            new_tokens[index, : len(new)] = torch.tensor(new, dtype=torch.long)
        return torch.cat([input_ids.long(), new_tokens], dim=1)

    def _generate_one(self, row, mask, max_new_tokens, do_sample, eos, processors, stopping, streamer) -> list[int]:
        """New token ids after one prompt row (its left padding skipped)."""
        self.llm.reset()
        self.llm.eval(row[mask.bool()].tolist())
        ids, new = row[None].long(), []
        for _ in range(max_new_tokens):
            scores = processors(ids, self._last_logits())
            if do_sample:
                token = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1)[0]
            else:
                token = torch.argmax(scores, dim=-1)
            ids = torch.cat([ids, token[:, None]], dim=-1)
            new.append(int(token))
            stop = int(token) in eos or bool(stopping(ids, scores).any())
            if streamer is not None:
                streamer.put(token.reshape(1))
            if stop:
                break
            self.llm.eval([int(token)])
        return new


__all__ = [
    "GGUF_TYPES",
    "SpiritLMLlamaCppForCausalLM",
    "check_gguf_matches",
    "check_gguf_type",
    "export_gguf",
    "gguf_vocabulary",
]
