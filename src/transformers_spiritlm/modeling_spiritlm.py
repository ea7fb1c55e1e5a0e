"""SPIRIT LM language model: LLaMA-2 over text tokens, modality markers and speech units."""

import copy
import os

import torch
from safetensors import SafetensorError
from torch import nn
from transformers import GenerationMixin, LlamaForCausalLM, LlamaModel, LlamaPreTrainedModel, PreTrainedConfig
from transformers.initialization import no_init_weights

from .configuration_spiritlm import SpiritLMConfig


class SpiritLMLoadingMixin:
    """`from_pretrained` that reports a path that is no folder as a `FileNotFoundError` (not as a malformed Hub repo
    id), and a truncated or corrupt safetensors file as an `OSError` naming the folder (the safetensors error names
    neither). Mixed into every SPIRIT LM model: LM, speech tokenizer and vocoder."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        path = os.fspath(pretrained_model_name_or_path)
        # Absolute, `./`, `../` and `~` paths are never Hub repo ids: the Hub would only reject them as malformed ids.
        if (os.path.isabs(path) or path.startswith((".", "~"))) and not os.path.isdir(os.path.expanduser(path)):
            raise FileNotFoundError(f"cannot load {cls.__name__}: {path} is not a folder; check the path")
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except SafetensorError as error:
            where = str(pretrained_model_name_or_path)
            if kwargs.get("subfolder"):
                where = os.path.join(where, kwargs["subfolder"])
            raise OSError(
                f"cannot load {cls.__name__} from {where}: a safetensors weights file is truncated or corrupt "
                f"({error}); download or convert it again"
            ) from error


class SpiritLMPreTrainedModel(SpiritLMLoadingMixin, LlamaPreTrainedModel):
    """Class-level facts shared by the SPIRIT LM models (LLaMA's, with the SPIRIT LM config)."""

    config: SpiritLMConfig


class SpiritLMModel(SpiritLMPreTrainedModel, LlamaModel):
    """The bare SPIRIT LM decoder, outputting hidden states (identical to [`~transformers.LlamaModel`])."""


class SpiritLMForCausalLM(SpiritLMPreTrainedModel, LlamaForCausalLM, GenerationMixin):
    """
    SPIRIT LM with its language-modelling head. The weights and the forward pass are exactly LLaMA's, so an official
    checkpoint (a `LlamaForCausalLM` state dict) loads unchanged; generation, KV cache, sdpa and `device_map` come
    from transformers. What SPIRIT LM adds lives in the config (the token id layout) and in generation
    (see [`SpiritLMModalityLogitsProcessor`]).
    """

    def __init__(self, config: SpiritLMConfig):
        # LlamaForCausalLM.__init__ would first build a LlamaModel: set the same attributes without that copy.
        SpiritLMPreTrainedModel.__init__(self, config)
        self.model = SpiritLMModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @classmethod
    def from_text_model(
        cls,
        text_model: LlamaForCausalLM | str | os.PathLike,
        variant: str = "base",
        num_hubert_units: int = 501,
        num_pitch_units: int | None = None,
        num_style_units: int | None = None,
        seed: int = 0,
        **kwargs,
    ) -> "SpiritLMForCausalLM":
        """
        A SPIRIT LM started from a LLaMA-architecture text model (Llama 2 / 3, TinyLlama, SmolLM...): its weights,
        with `[Text]`, `[Speech]` and the unit tokens appended after its text vocabulary, in the layout
        [`SpiritLMConfig`] derives from `text_vocab_size` = the text model's number of embedding rows. Extend its
        tokenizer to match with [`extend_text_tokenizer`].

        Each new row of the embeddings (and of the head, when untied) is the mean of the text rows plus Gaussian noise
        of 1/100 of their per-dimension standard deviation, drawn from `seed`. The mean keeps the new tokens' logits
        close to the average text logit, so the model's text distribution barely moves when they enter the softmax
        and no new token starts out dominant (Hewitt, 2021); the noise makes the units distinguishable for training.
        Text rows are copied, so for text-only input the logits on the text ids are the text model's.

        Args:
            text_model: a `LlamaForCausalLM` or the path / Hub id of one (loaded with `kwargs`, e.g. `dtype=`).
            variant: `"base"` or `"expressive"`.
            num_hubert_units: number of `[HuN]` tokens, the size of the speech tokenizer's unit vocabulary.
            num_pitch_units, num_style_units: number of `[PiN]` and `[StN]` tokens; by default 64 and 100 (the
                official counts) for EXPRESSIVE and none for BASE, which never reads or writes them.
            seed: seed of the noise of the new rows.

        Raises:
            ValueError: the text model is not a LLaMA-architecture causal LM (or already a SPIRIT LM).
        """
        if isinstance(text_model, (str, os.PathLike)):
            # Checked on the config, before any weights load.
            config_dict, _ = PreTrainedConfig.get_config_dict(text_model, **kwargs)
            _check_llama_model_type(config_dict.get("model_type"), os.fspath(text_model))
            text_model = LlamaForCausalLM.from_pretrained(text_model, **kwargs)
        _check_llama_model_type(
            getattr(getattr(text_model, "config", None), "model_type", None), type(text_model).__name__
        )
        if not isinstance(text_model, LlamaForCausalLM):
            raise ValueError(
                f"the text model is a {type(text_model).__name__}, not a LlamaForCausalLM: from_text_model takes a "
                "LLaMA-architecture causal LM with its language-modelling head"
            )
        expressive = variant == "expressive"
        num_pitch_units = num_pitch_units if num_pitch_units is not None else 64 if expressive else 0
        num_style_units = num_style_units if num_style_units is not None else 100 if expressive else 0
        text_embeddings = text_model.get_input_embeddings().weight
        text_vocab_size = text_embeddings.shape[0]
        text_config = text_model.config.to_dict()
        for key in ("model_type", "architectures", "_name_or_path", "transformers_version"):
            text_config.pop(key, None)
        config = SpiritLMConfig(
            **{
                **text_config,
                "variant": variant,
                "text_vocab_size": text_vocab_size,
                "num_hubert_units": num_hubert_units,
                "num_pitch_units": num_pitch_units,
                "num_style_units": num_style_units,
                "vocab_size": text_vocab_size + 2 + num_hubert_units + num_pitch_units + num_style_units,
            }
        )
        # Every weight is overwritten below: skip the random initialisation (minutes for a 7B model).
        with no_init_weights(), text_embeddings.device:
            model = cls._from_config(config, dtype=text_embeddings.dtype)
        generator = torch.Generator().manual_seed(seed)
        state_dict = text_model.state_dict()
        for name in ("model.embed_tokens.weight", "lm_head.weight"):
            if name in state_dict:
                state_dict[name] = _with_new_rows(state_dict[name], config.vocab_size, generator)
        model.load_state_dict(state_dict, strict=not config.tie_word_embeddings)
        model.tie_weights()
        model.generation_config = copy.deepcopy(text_model.generation_config)
        return model.train(text_model.training)


def _check_llama_model_type(model_type: str | None, source: str) -> None:
    if model_type != "llama":
        found = "already a SPIRIT LM" if model_type == SpiritLMConfig.model_type else f"model_type {model_type!r}"
        raise ValueError(
            f"{source} is {found}, not a LLaMA-architecture text model: from_text_model takes a LlamaForCausalLM "
            "(config model_type 'llama', e.g. Llama 2 / 3, TinyLlama, SmolLM) with its language-modelling head"
        )


def _with_new_rows(weight: torch.Tensor, num_rows: int, generator: torch.Generator) -> torch.Tensor:
    """`weight` (text rows) followed by `num_rows - len(weight)` rows of mean + noise (see `from_text_model`)."""
    text_rows = weight.detach().float().cpu()
    noise = torch.randn(num_rows - len(text_rows), text_rows.shape[1], generator=generator)
    new_rows = text_rows.mean(0) + noise * (text_rows.std(0) / 100)
    return torch.cat([weight.detach(), new_rows.to(weight)])


def load_language_model(repo: str | os.PathLike, device: str | None = None, gguf: str | os.PathLike | None = None):
    """The language model of the converted repo `repo` on `device` (eval mode), or, with `gguf`, its llama.cpp export
    (`spiritlm export-gguf`, needs the `[gguf]` extra) checked against the repo."""
    if gguf is not None:
        from .llama_cpp_backend import SpiritLMLlamaCppForCausalLM

        return SpiritLMLlamaCppForCausalLM.from_pretrained(repo, gguf)
    return SpiritLMForCausalLM.from_pretrained(repo).to(device).eval()


__all__ = [
    "SpiritLMLoadingMixin",
    "SpiritLMPreTrainedModel",
    "SpiritLMModel",
    "SpiritLMForCausalLM",
    "load_language_model",
]
