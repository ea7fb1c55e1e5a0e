"""`spiritlm init`: a SPIRIT LM repo started from a LLaMA-architecture text model (see
[`SpiritLMForCausalLM.from_text_model`]), ready for training with the speech tokenizer and vocoder of your choice."""

import os
import shutil
import tempfile
from pathlib import Path

from transformers import AutoTokenizer

from .configuration_spiritlm import VOCODER_SUBFOLDER, SpiritLMConfig
from .feature_extraction_spiritlm import SpiritLMFeatureExtractor
from .modeling_spiritlm import SpiritLMForCausalLM
from .processing_spiritlm import SpiritLMProcessor
from .remote_code import add_auto_map
from .speech_tokenizer.modeling_speech_tokenizer import SpiritLMSpeechTokenizer
from .tokenization_spiritlm import extend_text_tokenizer
from .vocoder import SpiritLMVocoder


def init_spiritlm_repo(
    text_model: str | os.PathLike,
    output_dir: str | os.PathLike,
    variant: str = "base",
    num_hubert_units: int | None = None,
    speech_tokenizer: str | os.PathLike | None = None,
    vocoder: str | os.PathLike | None = None,
    seed: int = 0,
    force: bool = False,
) -> Path:
    """
    Writes to `output_dir` a SPIRIT LM repo started from the text model folder (or Hub id) `text_model` and its
    tokenizer: the language model of [`SpiritLMForCausalLM.from_text_model`], its tokenizer extended with
    [`extend_text_tokenizer`], the processor files and, when given, the speech tokenizer (a folder that
    `SpiritLMSpeechTokenizer.from_pretrained` loads, e.g. the output of `spiritlm train-units` or the
    `speech_tokenizer/` folder of a converted repo) and the vocoder (a `SpiritLMVocoder` folder, written to
    `vocoder/`). `AutoModelForCausalLM`, `AutoProcessor` and `pipeline("spirit-lm")` load the result; without a speech
    tokenizer the processor takes text and unit strings only, without a vocoder speech outputs carry no audio.

    `num_hubert_units` defaults to the speech tokenizer's (501 without one) and must match it and the vocoder's. The
    repo is written to a temporary folder beside `output_dir` and renamed once complete; an existing `output_dir` is
    refused unless `force`.

    Raises:
        FileExistsError: `output_dir` exists and `force` is False.
        ValueError: not a LLaMA-architecture text model, a tokenizer that already has SPIRIT LM tokens, or unit
            counts / streams that do not match between the language model, the speech tokenizer and the vocoder.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not force:
        raise FileExistsError(f"{output_dir} already exists; pass --force (force=True) to replace it")
    speech_model = SpiritLMSpeechTokenizer.from_pretrained(speech_tokenizer) if speech_tokenizer is not None else None
    vocoder_model = SpiritLMVocoder.from_pretrained(vocoder) if vocoder is not None else None
    if num_hubert_units is None:
        num_hubert_units = speech_model.config.num_hubert_units if speech_model is not None else 501
    unit_types = SpiritLMConfig(variant=variant).unit_types
    if speech_model is not None and speech_model.config.unit_types != unit_types:
        fix = "expressive" if "pitch" in speech_model.config.unit_types else "base"
        raise ValueError(
            f"the speech tokenizer writes {speech_model.config.unit_types} units but a SPIRIT LM of variant "
            f"{variant!r} reads {unit_types}; use --variant {fix}"
        )
    for name, component in (("speech tokenizer", speech_model), ("vocoder", vocoder_model)):
        if component is not None and component.config.num_hubert_units != num_hubert_units:
            raise ValueError(
                f"the {name} takes {component.config.num_hubert_units} hubert units but the language model gets "
                f"{num_hubert_units}; use the same number of units (--units) for all of them"
            )
    model = SpiritLMForCausalLM.from_text_model(
        text_model, variant=variant, num_hubert_units=num_hubert_units, seed=seed
    )
    tokenizer = extend_text_tokenizer(AutoTokenizer.from_pretrained(text_model), model.config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    processor = SpiritLMProcessor(SpiritLMFeatureExtractor(), tokenizer, speech_tokenizer=speech_model)

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}-", dir=output_dir.parent))
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        if vocoder_model is not None:
            vocoder_model.save_pretrained(staging / VOCODER_SUBFOLDER)
        add_auto_map(staging)
        if output_dir.exists():
            shutil.rmtree(output_dir) if output_dir.is_dir() else output_dir.unlink()
        os.replace(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir


__all__ = ["init_spiritlm_repo"]
