"""Tiny random-weight sentiment classifiers for STSP tests and examples: a RoBERTa `text-classification` model with the
three sentiment labels and a wav2vec2 `audio-classification` model with the official Expresso emotion labels."""

import os
from pathlib import Path

import torch
from transformers import (
    RobertaConfig,
    RobertaForSequenceClassification,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2ForSequenceClassification,
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


def build_tiny_speech_classifier(output_dir: str | os.PathLike, labels=SPEECH_LABELS, seed: int = 0) -> Path:
    """Writes a 1-layer, 16-wide wav2vec2 audio classifier and its 16 kHz feature extractor to `output_dir`."""
    torch.manual_seed(seed)
    config = Wav2Vec2Config(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8, 8, 8),
        conv_stride=(5, 4, 4),
        conv_kernel=(10, 4, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        classifier_proj_size=8,
        **_labels(labels),
    )
    Wav2Vec2ForSequenceClassification(config).save_pretrained(output_dir)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(output_dir)
    return Path(output_dir)


__all__ = ["SPEECH_LABELS", "TEXT_LABELS", "build_tiny_speech_classifier", "build_tiny_text_classifier"]
