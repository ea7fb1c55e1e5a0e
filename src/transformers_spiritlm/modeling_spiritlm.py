"""SPIRIT LM language model: LLaMA-2 over text tokens, modality markers and speech units."""

from torch import nn
from transformers import LlamaForCausalLM, LlamaModel, LlamaPreTrainedModel

from .configuration_spiritlm import SpiritLMConfig


class SpiritLMPreTrainedModel(LlamaPreTrainedModel):
    """Class-level facts shared by the SPIRIT LM models (LLaMA's, with the SPIRIT LM config)."""

    config_class = SpiritLMConfig
    config: SpiritLMConfig


class SpiritLMModel(SpiritLMPreTrainedModel, LlamaModel):
    """The bare SPIRIT LM decoder, outputting hidden states (identical to [`~transformers.LlamaModel`])."""

    def __init__(self, config: SpiritLMConfig):
        super().__init__(config)


class SpiritLMForCausalLM(SpiritLMPreTrainedModel, LlamaForCausalLM):
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


__all__ = ["SpiritLMPreTrainedModel", "SpiritLMModel", "SpiritLMForCausalLM"]
