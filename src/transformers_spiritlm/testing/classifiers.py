"""Tiny random-weight models that the evaluation tasks run beside SPIRIT LM, for tests and examples: the STSP sentiment
classifiers (a RoBERTa `text-classification` model with the three sentiment labels and a wav2vec2
`audio-classification` model with the official Expresso emotion labels) and the speech recognizer of `eval tts` (a
wav2vec2 CTC model over lowercase letters)."""

import json
import os
import string
import tempfile
from pathlib import Path

import torch
from transformers import (
    RobertaConfig,
    RobertaForSequenceClassification,
    Wav2Vec2Config,
    Wav2Vec2CTCTokenizer,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2ForCTC,
    Wav2Vec2ForSequenceClassification,
    Wav2Vec2Processor,
)

from . import tiny_text_tokenizer


TEXT_LABELS = ("negative", "neutral", "positive")
SPEECH_LABELS = ("happy", "angry", "sad", "default")


def _labels(labels) -> dict:
    return {"id2label": dict(enumerate(labels)), "label2id": {label: i for i, label in enumerate(labels)}}


def build_tiny_text_classifier(output_dir: str | os.PathLike, labels=TEXT_LABELS, seed: int = 0) -> Path:
    """Writes a 1-layer, 16-wide RoBERTa sequence classifier and the tiny text tokenizer to `output_dir`."""
    tokenizer = tiny_text_tokenizer()
    torch.manual_seed(seed)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=1026,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        **_labels(labels),
    )
    RobertaForSequenceClassification(config).save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return Path(output_dir)


# A 1-layer, 16-wide wav2vec2 over 16 kHz audio.
_TINY_WAV2VEC2 = {
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "conv_dim": (8, 8, 8),
    "conv_stride": (5, 4, 4),
    "conv_kernel": (10, 4, 4),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}


def build_tiny_speech_classifier(output_dir: str | os.PathLike, labels=SPEECH_LABELS, seed: int = 0) -> Path:
    """Writes a 1-layer, 16-wide wav2vec2 audio classifier and its 16 kHz feature extractor to `output_dir`."""
    torch.manual_seed(seed)
    config = Wav2Vec2Config(**_TINY_WAV2VEC2, classifier_proj_size=8, **_labels(labels))
    Wav2Vec2ForSequenceClassification(config).save_pretrained(output_dir)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(output_dir)
    return Path(output_dir)


def build_tiny_asr_model(output_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Writes a 1-layer, 16-wide wav2vec2 CTC model over the letters `a`-`z`, `'` and the word separator `|`, with
    its character tokenizer and 16 kHz feature extractor, to `output_dir`: an `automatic-speech-recognition` model."""
    vocabulary = {"<pad>": 0, "<unk>": 1, "|": 2, "'": 3, **{c: i + 4 for i, c in enumerate(string.ascii_lowercase)}}
    with tempfile.TemporaryDirectory() as scratch:
        vocab_file = Path(scratch) / "vocab.json"
        vocab_file.write_text(json.dumps(vocabulary))
        tokenizer = Wav2Vec2CTCTokenizer(str(vocab_file), word_delimiter_token="|")
    torch.manual_seed(seed)
    config = Wav2Vec2Config(**_TINY_WAV2VEC2, vocab_size=len(vocabulary), pad_token_id=0)
    Wav2Vec2ForCTC(config).save_pretrained(output_dir)
    feature_extractor = Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True, return_attention_mask=True)
    Wav2Vec2Processor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(output_dir)
    return Path(output_dir)


__all__ = [
    "SPEECH_LABELS",
    "TEXT_LABELS",
    "build_tiny_asr_model",
    "build_tiny_speech_classifier",
    "build_tiny_text_classifier",
]
