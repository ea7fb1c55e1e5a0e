"""SPIRIT LM language model: LLaMA-2 over text tokens, modality markers and speech units."""

import os

from safetensors import SafetensorError
from torch import nn
from transformers import GenerationMixin, LlamaForCausalLM, LlamaModel, LlamaPreTrainedModel

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


__all__ = ["SpiritLMLoadingMixin", "SpiritLMPreTrainedModel", "SpiritLMModel", "SpiritLMForCausalLM"]
