"""Evaluation of SPIRIT LM: likelihood scoring of continuations, the minimal-pair benchmarks in their published
layouts (sWUGGY, sBLIMP, StoryCloze, SALMon), the official few-shot cross-modal prompts, the Speech-Text Sentiment
Preservation benchmark (STSP), few-shot ASR and TTS with their word / character error rates, and one report of all."""

from .asr import (
    ASR_FIELDS,
    ASR_MAX_NEW_TOKENS,
    evaluate_asr,
    few_shot_prefix,
    first_line,
    read_few_shot_rows,
    transcribe,
)
from .continuations import PerItemSamplingLogitsProcessor, generate_segments, item_seed, wav_file_name
from .few_shot import (
    FEW_SHOT_MANIFESTS,
    build_few_shot_prompt,
    few_shot_examples,
    few_shot_prompt_from_manifest,
    half_audio,
    sample_few_shot_rows,
    select_few_shot_rows,
    transcript_examples,
)
from .manifest import DIRECTIONS, check_same_ids, predictions_by_id, read_jsonl, read_manifest, split_direction
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
from .report import collect_metrics, markdown_report, parse_result_argument, plot_report, read_published, write_report
from .salmon import PARTS as SALMON_PARTS
from .salmon import read_salmon
from .sblimp import read_sblimp
from .scoring import REDUCTIONS, minimal_pair_accuracy, render_segments, score_continuations, tokenize_pair
from .sentiment import EMOTION_TO_SENTIMENT, EXPRESSO_EMOTION_TO_SENTIMENT, SENTIMENTS, SentimentClassifier
from .storycloze import read_storycloze
from .stsp import (
    MAX_NEW_TOKENS,
    NUM_ATTEMPTS,
    StspRun,
    predict_stsp,
    read_stsp_manifest,
    reference_label,
    run_stsp,
    score_stsp,
)
from .swuggy import read_swuggy
from .tts import TTS_MAX_NEW_TOKENS, evaluate_tts, load_asr_pipeline, synthesise
from .wer import UNITS, error_rates, normalize_transcript, score_transcripts


__all__ = [
    "DIRECTIONS",
    "EMOTION_TO_SENTIMENT",
    "EXPRESSO_EMOTION_TO_SENTIMENT",
    "MAX_NEW_TOKENS",
    "NUM_ATTEMPTS",
    "PerItemSamplingLogitsProcessor",
    "SENTIMENTS",
    "SentimentClassifier",
    "StspRun",
    "item_seed",
    "predict_stsp",
    "read_stsp_manifest",
    "reference_label",
    "run_stsp",
    "score_stsp",
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
    "generate_segments",
    "wav_file_name",
    "UNITS",
    "check_same_ids",
    "error_rates",
    "normalize_transcript",
    "predictions_by_id",
    "read_manifest",
    "score_transcripts",
    "ASR_FIELDS",
    "ASR_MAX_NEW_TOKENS",
    "TTS_MAX_NEW_TOKENS",
    "evaluate_asr",
    "evaluate_tts",
    "few_shot_prefix",
    "first_line",
    "load_asr_pipeline",
    "read_few_shot_rows",
    "select_few_shot_rows",
    "synthesise",
    "transcribe",
    "transcript_examples",
    "collect_metrics",
    "markdown_report",
    "parse_result_argument",
    "plot_report",
    "read_published",
    "write_report",
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
