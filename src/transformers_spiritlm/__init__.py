"""SPIRIT LM for Hugging Face Transformers. Importing this package registers the SPIRIT LM configs, models,
processor and the `"spirit-lm"` pipeline with the transformers Auto classes."""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration_spiritlm import SpiritLMConfig
from .modeling_spiritlm import SpiritLMForCausalLM, SpiritLMModel, SpiritLMPreTrainedModel
from .units import string_to_units, units_to_string


AutoConfig.register(SpiritLMConfig.model_type, SpiritLMConfig, exist_ok=True)
AutoModel.register(SpiritLMConfig, SpiritLMModel, exist_ok=True)
AutoModelForCausalLM.register(SpiritLMConfig, SpiritLMForCausalLM, exist_ok=True)

__version__ = "0.1.0"

__all__ = [
    "SpiritLMConfig",
    "SpiritLMForCausalLM",
    "SpiritLMModel",
    "SpiritLMPreTrainedModel",
    "string_to_units",
    "units_to_string",
]
