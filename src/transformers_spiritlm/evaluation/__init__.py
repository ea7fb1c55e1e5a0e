"""Evaluation of SPIRIT LM: likelihood scoring of continuations, the minimal-pair benchmarks in their published
layouts (sWUGGY, sBLIMP, StoryCloze, SALMon), the official few-shot cross-modal prompts, and the Speech-Text Sentiment
Preservation benchmark (STSP)."""

from .few_shot import (
    FEW_SHOT_MANIFESTS,
    build_few_shot_prompt,
    few_shot_examples,
    few_shot_prompt_from_manifest,
    half_audio,
    sample_few_shot_rows,
)
from .manifest import DIRECTIONS, read_jsonl, split_direction
from .pairs import (
    Pair,
    evaluate_pairs,
    outcome,
    pair_accuracy,
    pair_batches,
    pair_inputs,
    read_gold_pairs,
    read_pairs_jsonl,
    score_pairs,
)
from .salmon import PARTS as SALMON_PARTS
from .salmon import read_salmon
from .sblimp import read_sblimp
from .scoring import REDUCTIONS, minimal_pair_accuracy, render_segments, score_continuations, tokenize_pair
from .sentiment import EMOTION_TO_SENTIMENT, EXPRESSO_EMOTION_TO_SENTIMENT, SENTIMENTS, SentimentClassifier
from .storycloze import read_storycloze
from .stsp import (
    MAX_NEW_TOKENS,
    NUM_ATTEMPTS,
    PerItemSamplingLogitsProcessor,
    item_seed,
    predict_stsp,
    read_stsp_manifest,
    reference_label,
    score_stsp,
    write_records,
)
from .swuggy import read_swuggy


__all__ = [
    "DIRECTIONS",
    "EMOTION_TO_SENTIMENT",
    "EXPRESSO_EMOTION_TO_SENTIMENT",
    "MAX_NEW_TOKENS",
    "NUM_ATTEMPTS",
    "PerItemSamplingLogitsProcessor",
    "SENTIMENTS",
    "SentimentClassifier",
    "item_seed",
    "predict_stsp",
    "read_stsp_manifest",
    "reference_label",
    "score_stsp",
    "write_records",
    "FEW_SHOT_MANIFESTS",
    "REDUCTIONS",
    "build_few_shot_prompt",
    "few_shot_examples",
    "few_shot_prompt_from_manifest",
    "half_audio",
    "minimal_pair_accuracy",
    "read_jsonl",
    "render_segments",
    "sample_few_shot_rows",
    "score_continuations",
    "split_direction",
    "tokenize_pair",
    "Pair",
    "SALMON_PARTS",
    "evaluate_pairs",
    "outcome",
    "pair_accuracy",
    "pair_batches",
    "pair_inputs",
    "read_gold_pairs",
    "read_pairs_jsonl",
    "read_salmon",
    "read_sblimp",
    "read_storycloze",
    "read_swuggy",
    "score_pairs",
]
