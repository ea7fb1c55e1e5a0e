"""SPIRIT LM for Hugging Face Transformers. Importing this package registers the SPIRIT LM configs, models,
processor and the `"spirit-lm"` pipeline with the transformers Auto classes.

The public names are imported on first use. The `spiritlm` console script (`transformers_spiritlm_cli`) defers the
registration, which loads torch and transformers, until a command runs: `spiritlm --help` and argument errors answer
at once.
"""

import importlib
import sys


__version__ = "0.1.0"

# public name -> the module defining it
_PUBLIC = {
    "SpiritLMConfig": "configuration_spiritlm",
    "SpiritLMSpeechTokenizerConfig": "configuration_spiritlm",
    "SpiritLMVocoderConfig": "configuration_spiritlm",
    "SpiritLMDataCollator": "data",
    "SpiritLMSequenceBuilder": "data",
    "minimal_pair_accuracy": "evaluation",
    "score_continuations": "evaluation",
    "SpiritLMFeatureExtractor": "feature_extraction_spiritlm",
    "SpiritLMModalityLogitsProcessor": "generation",
    "SpiritLMForCausalLM": "modeling_spiritlm",
    "SpiritLMModel": "modeling_spiritlm",
    "SpiritLMPreTrainedModel": "modeling_spiritlm",
    "SpiritLMPipeline": "pipeline_spiritlm",
    "SpiritLMProcessor": "processing_spiritlm",
    "SpiritLMSpeechTokenizer": "speech_tokenizer.modeling_speech_tokenizer",
    "SpiritLMSpeechTokenizerOutput": "speech_tokenizer.modeling_speech_tokenizer",
    "SpiritLMStreamer": "streaming",
    "string_to_units": "units",
    "units_to_string": "units",
    "SpiritLMVocoder": "vocoder",
    "SpiritLMVocoderOutput": "vocoder",
}


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


def register_auto_classes() -> None:
    """Registers the SPIRIT LM configs, models, feature extractor and processor with the transformers Auto classes,
    and the `"spirit-lm"` pipeline. Importing the package does it; calling it again changes nothing."""
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForCausalLM, AutoProcessor

    from . import pipeline_spiritlm  # noqa: F401  (registers the pipeline)
    from .configuration_spiritlm import SpiritLMConfig, SpiritLMSpeechTokenizerConfig, SpiritLMVocoderConfig
    from .feature_extraction_spiritlm import SpiritLMFeatureExtractor
    from .modeling_spiritlm import SpiritLMForCausalLM, SpiritLMModel
    from .processing_spiritlm import SpiritLMProcessor
    from .speech_tokenizer.modeling_speech_tokenizer import SpiritLMSpeechTokenizer
    from .vocoder import SpiritLMVocoder

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


# Imported by the `spiritlm` console script, whose `main` registers once the arguments parsed.
if "transformers_spiritlm_cli" not in sys.modules:
    register_auto_classes()

__all__ = sorted(_PUBLIC)
