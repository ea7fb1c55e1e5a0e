"""Sentiment of STSP outputs: any Hugging Face sequence-classification model for text and audio-classification model
for speech, with a table from its labels (emotions or sentiments) to the three sentiments."""

import os
from collections.abc import Mapping

import numpy as np
import torch

from ..audio import resample
from ..modalities import SEGMENT_TYPES


SENTIMENTS = ("negative", "neutral", "positive")
# Official tables (spiritlm/eval/stsp/utils.py): emotions of the reference manifests, and the labels of the official
# speech (Expresso emotion) classifier.
EMOTION_TO_SENTIMENT = {"happy": "positive", "angry": "negative", "sad": "negative", "default": "neutral",
                        "neutral": "neutral", "amused": "positive"}  # fmt: skip
EXPRESSO_EMOTION_TO_SENTIMENT = {"happy": "positive", "angry": "negative", "sad": "negative", "default": "neutral"}


class SentimentClassifier:
    """
    The sentiment of generated text or speech, as the official STSP evaluation reads it: the classifier's top label,
    lower-cased, mapped through `label_map` (sentiment labels map to themselves).

    Args:
        model: an `AutoModelForSequenceClassification` (text) or `AutoModelForAudioClassification` (speech).
        preprocessor: its tokenizer (text) or feature extractor (speech).
        modality: `"text"` or `"speech"`.
        label_map: classifier label -> sentiment; defaults to the official Expresso emotion table for speech and to
            the sentiments themselves for text. Every label of the model must map to one of [`SENTIMENTS`].
    """

    def __init__(self, model, preprocessor, modality: str, label_map: Mapping[str, str] | None = None):
        if modality not in SEGMENT_TYPES:
            raise ValueError(f"modality must be 'text' or 'speech', got {modality!r}")
        self.model, self.preprocessor, self.modality = model.eval(), preprocessor, modality
        table = dict(EXPRESSO_EMOTION_TO_SENTIMENT if modality == "speech" and label_map is None else {})
        table.update({sentiment: sentiment for sentiment in SENTIMENTS})
        table.update({str(label).lower(): str(value).lower() for label, value in (label_map or {}).items()})
        labels = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
        unmapped = [label for label in labels if table.get(label.lower()) not in SENTIMENTS]
        if unmapped:
            raise ValueError(
                f"the {modality} classifier's labels {unmapped} map to no sentiment ({', '.join(SENTIMENTS)}); "
                "give a label map, e.g. --label-map LABEL_0=negative,LABEL_1=neutral,LABEL_2=positive"
            )
        self.sentiments = [table[label.lower()] for label in labels]

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        modality: str,
        label_map: Mapping[str, str] | None = None,
        tokenizer: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
    ) -> "SentimentClassifier":
        """Loads a classifier folder or Hub repo (`tokenizer`: where the text tokenizer is, when not beside the
        model, as for the official STSP text classifier)."""
        from transformers import (
            AutoFeatureExtractor,
            AutoModelForAudioClassification,
            AutoModelForSequenceClassification,
            AutoTokenizer,
        )

        if modality == "text":
            model = AutoModelForSequenceClassification.from_pretrained(path)
            preprocessor = AutoTokenizer.from_pretrained(tokenizer or path)
        elif modality == "speech":
            model = AutoModelForAudioClassification.from_pretrained(path)
            preprocessor = AutoFeatureExtractor.from_pretrained(path)
        else:
            raise ValueError(f"modality must be 'text' or 'speech', got {modality!r}")
        return cls(model.to(device), preprocessor, modality, label_map)

    @torch.inference_mode()
    def __call__(self, output: str | np.ndarray, sampling_rate: int = 16000) -> str:
        """The sentiment of one text, or of one waveform at `sampling_rate` (one item at a time, so that the result
        does not depend on what else is classified)."""
        device = self.model.device
        if self.modality == "text":
            inputs = self.preprocessor(output, truncation=True, return_tensors="pt")
        else:
            audio = torch.as_tensor(output, dtype=torch.float32)
            rate = self.preprocessor.sampling_rate
            if sampling_rate != rate:
                audio = resample(audio, sampling_rate, rate)
            inputs = self.preprocessor(audio.numpy(), sampling_rate=rate, return_tensors="pt")
        logits = self.model(**{name: value.to(device) for name, value in inputs.items()}).logits
        return self.sentiments[int(logits[0].argmax())]


__all__ = ["EMOTION_TO_SENTIMENT", "EXPRESSO_EMOTION_TO_SENTIMENT", "SENTIMENTS", "SentimentClassifier"]
