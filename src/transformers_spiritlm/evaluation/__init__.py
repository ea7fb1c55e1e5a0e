"""Evaluation of SPIRIT LM: likelihood scoring of continuations (sWUGGY / sBLIMP / StoryCloze style), the official
few-shot cross-modal prompts, and the Speech-Text Sentiment Preservation benchmark (STSP)."""

from .scoring import REDUCTIONS, minimal_pair_accuracy, render_segments, score_continuations


__all__ = ["REDUCTIONS", "minimal_pair_accuracy", "render_segments", "score_continuations"]
