"""SPIRIT LM for Hugging Face Transformers. Importing this package registers the SPIRIT LM configs, models,
processor and the `"spirit-lm"` pipeline with the transformers Auto classes."""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForCausalLM, AutoProcessor

from .configuration_spiritlm import SpiritLMConfig, SpiritLMSpeechTokenizerConfig, SpiritLMVocoderConfig
from .data import SpiritLMDataCollator, SpiritLMSequenceBuilder
from .evaluation import minimal_pair_accuracy, score_continuations
from .feature_extraction_spiritlm import SpiritLMFeatureExtractor
from .generation import SpiritLMModalityLogitsProcessor
from .modeling_spiritlm import SpiritLMForCausalLM, SpiritLMModel, SpiritLMPreTrainedModel
from .pipeline_spiritlm import SpiritLMPipeline
from .processing_spiritlm import SpiritLMProcessor
from .speech_tokenizer.modeling_speech_tokenizer import SpiritLMSpeechTokenizer, SpiritLMSpeechTokenizerOutput
from .streaming import SpiritLMStreamer
from .units import string_to_units, units_to_string
from .vocoder import SpiritLMVocoder, SpiritLMVocoderOutput


AutoConfig.register(SpiritLMConfig.model_type, SpiritLMConfig, exist_ok=True)
AutoModel.register(SpiritLMConfig, SpiritLMModel, exist_ok=True)
AutoModelForCausalLM.register(SpiritLMConfig, SpiritLMForCausalLM, exist_ok=True)
AutoConfig.register(SpiritLMVocoderConfig.model_type, SpiritLMVocoderConfig, exist_ok=True)
AutoModel.register(SpiritLMVocoderConfig, SpiritLMVocoder, exist_ok=True)
AutoConfig.register(SpiritLMSpeechTokenizerConfig.model_type, SpiritLMSpeechTokenizerConfig, exist_ok=True)
AutoModel.register(SpiritLMSpeechTokenizerConfig, SpiritLMSpeechTokenizer, exist_ok=True)
AutoFeatureExtractor.register(SpiritLMConfig, SpiritLMFeatureExtractor, exist_ok=True)
AutoFeatureExtractor.register(SpiritLMSpeechTokenizerConfig, SpiritLMFeatureExtractor, exist_ok=True)
AutoProcessor.register(SpiritLMConfig, SpiritLMProcessor, exist_ok=True)

__version__ = "0.1.0"

__all__ = [
    "SpiritLMConfig",
    "SpiritLMDataCollator",
    "SpiritLMFeatureExtractor",
    "SpiritLMForCausalLM",
    "SpiritLMModalityLogitsProcessor",
    "SpiritLMModel",
    "SpiritLMPipeline",
    "SpiritLMPreTrainedModel",
    "SpiritLMProcessor",
    "SpiritLMSequenceBuilder",
    "SpiritLMSpeechTokenizer",
    "SpiritLMSpeechTokenizerConfig",
    "SpiritLMSpeechTokenizerOutput",
    "SpiritLMStreamer",
    "SpiritLMVocoder",
    "SpiritLMVocoderConfig",
    "SpiritLMVocoderOutput",
    "minimal_pair_accuracy",
    "score_continuations",
    "string_to_units",
    "units_to_string",
]
