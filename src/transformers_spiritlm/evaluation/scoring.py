"""Log-likelihood scoring of continuations given prompts, in text and speech: the measure behind SPIRIT LM's
zero-shot evaluations (sWUGGY and sBLIMP compare the scores of a real and a fake word or sentence, StoryCloze those of
two story endings, all in speech, text or across modalities)."""

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..generation import check_context_length
from ..modalities import MARKERS, SEGMENT_TYPES, SPEECH, SPEECH_MARKER, TEXT, TEXT_MARKER
from ..units import units_to_string


REDUCTIONS = ("sum", "mean")


def _last_modality(string: str, previous: str | None) -> str | None:
    text, speech = string.rfind(TEXT_MARKER), string.rfind(SPEECH_MARKER)
    if text == speech == -1:
        return previous
    return TEXT if text > speech else SPEECH


def _speech_string(segment: Mapping, speech_tokenizer) -> str:
    if "units" in segment:
        units = segment["units"]
        return units if isinstance(units, str) else units_to_string(units)
    if "audio" not in segment:
        raise ValueError(f"speech segment {sorted(segment)} needs 'audio' or pre-computed 'units'")
    if speech_tokenizer is None:
        raise ValueError("scoring audio needs a speech tokenizer: pass speech_tokenizer= or a SpiritLMProcessor")
    audio = segment["audio"]
    if segment.get("sampling_rate") is not None:
        audio = {"array": audio, "sampling_rate": segment["sampling_rate"]}
    return speech_tokenizer.encode_string(audio)


def render_segments(item, speech_tokenizer=None, previous_modality: str | None = None) -> str:
    """
    The SPIRIT LM string of one prompt or continuation.

    `item` is a SPIRIT LM string taken verbatim (text carries its marker: `"[Text]the cat"`; a continuation may omit
    it to go on in the prompt's modality), a segment dict or a list of segments: `{"type": "text", "text": str}`,
    `{"type": "speech", "audio": ..., "sampling_rate": ...}` (encoded with `speech_tokenizer`) or
    `{"type": "speech", "units": dict | str}` (units from `encode_units`, or a unit string). A marker is written
    at each modality change, counting from `previous_modality` (the modality the prompt ends in).
    """
    if isinstance(item, str):
        return item
    segments = [item] if isinstance(item, Mapping) else item
    if not isinstance(segments, Sequence):
        raise TypeError(
            f"expected a SPIRIT LM string, a segment dict or a list of segments, got {type(item).__name__}"
        )
    pieces = []
    modality = previous_modality
    for index, segment in enumerate(segments):
        kind = segment.get("type") if isinstance(segment, Mapping) else None
        if kind not in SEGMENT_TYPES:
            raise ValueError(f"segment #{index} must be a dict with 'type' 'text' or 'speech', got {segment!r}")
        if kind != modality:
            pieces.append(MARKERS[kind])
        pieces.append(segment["text"] if kind == TEXT else _speech_string(segment, speech_tokenizer))
        modality = kind
    return "".join(pieces)


def text_and_speech_tokenizers(tokenizer, speech_tokenizer=None) -> tuple:
    """`(text tokenizer, speech tokenizer)` of a [`SpiritLMProcessor`] (which carries both) or of the two given."""
    if hasattr(tokenizer, "tokenizer") and hasattr(tokenizer, "speech_tokenizer"):
        return tokenizer.tokenizer, speech_tokenizer or tokenizer.speech_tokenizer
    return tokenizer, speech_tokenizer


def tokenize_pair(tokenizer, prompt: str, continuation: str) -> tuple[list[int], list[int]]:
    """
    The token ids of a prompt (with BOS) and of its continuation, both SPIRIT LM strings, as they occur in the
    tokenization of `prompt + continuation`: the continuation's tokens are those of the whole string from the first
    one that differs from the prompt's own tokenization. Tokenized alone, a continuation would start with the `▁` of
    SentencePiece's dummy prefix, which the whole string never has. With an empty prompt, BOS and the continuation.
    """
    if not prompt:
        prompt_ids = tokenizer("", add_special_tokens=True)["input_ids"]
        return prompt_ids, tokenizer(continuation, add_special_tokens=False)["input_ids"]
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    whole_ids = tokenizer(prompt + continuation, add_special_tokens=True)["input_ids"]
    shared = 0
    while shared < min(len(prompt_ids), len(whole_ids)) and prompt_ids[shared] == whole_ids[shared]:
        shared += 1
    return whole_ids[:shared], whole_ids[shared:]


def _encode_pairs(tokenizer, speech_tokenizer, prompts, continuations) -> list[tuple[list[int], list[int]]]:
    pairs = []
    for index, (prompt, continuation) in enumerate(zip(prompts, continuations)):
        prompt_string = render_segments(prompt if prompt is not None else "", speech_tokenizer)
        if prompt_string and not prompt_string.startswith((TEXT_MARKER, SPEECH_MARKER)):
            raise ValueError(
                f"prompt #{index} {prompt_string[:40]!r} has no modality marker; write "
                f"'{TEXT_MARKER}{prompt_string[:20]}' or pass segments like {{'type': 'text', 'text': ...}}"
            )
        previous = _last_modality(prompt_string, None)
        continuation_string = render_segments(continuation, speech_tokenizer, previous)
        prompt_ids, continuation_ids = tokenize_pair(tokenizer, prompt_string, continuation_string)
        if not continuation_ids:
            raise ValueError(f"continuation #{index} is empty: there is nothing to score")
        if not prompt_ids:
            raise ValueError(
                f"prompt #{index} is empty and the tokenizer adds no BOS token: the first continuation token has "
                "no context; give a prompt"
            )
        pairs.append((prompt_ids, continuation_ids))
    return pairs


@torch.no_grad()
def score_continuations(
    model,
    tokenizer,
    prompts: Sequence | None,
    continuations: Sequence,
    speech_tokenizer=None,
    batch_size: int = 8,
    reduction: str = "sum",
    show_progress: bool = False,
) -> list[float]:
    """
    Log-likelihood of each continuation given its prompt under a SPIRIT LM: `sum log p(continuation tokens |
    BOS, prompt tokens)` (natural log), or its mean per token with `reduction="mean"`.

    The continuation's tokens are those it has in the tokenization of prompt + continuation, as the official
    tokenizer sees the whole string ([`tokenize_pair`]); together they must fit in the model's
    `max_position_embeddings`. Rows are sorted by length and left-padded in batches of `batch_size`; the scores do
    not depend on the batching.

    Args:
        model: a causal LM (e.g. [`SpiritLMForCausalLM`]), on any device / dtype; log-probabilities are computed in
            float32.
        tokenizer: the SPIRIT LM tokenizer, or a [`SpiritLMProcessor`] (whose speech tokenizer is then used).
        prompts: one item per continuation (see [`render_segments`] for the forms), `""` / `None` for no prompt, or
            `prompts=None` for no prompt at all (sWUGGY, sBLIMP).
        continuations: what is scored, in the same forms.
        speech_tokenizer: [`SpiritLMSpeechTokenizer`] for items given as audio.

    Returns:
        One float per continuation, in input order; higher is more likely.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; use one of {', '.join(map(repr, REDUCTIONS))}")
    if isinstance(continuations, (str, Mapping)):
        raise TypeError("continuations must be a list (one item per continuation), got a single item")
    prompts = [None] * len(continuations) if prompts is None else prompts
    if isinstance(prompts, (str, Mapping)) or len(prompts) != len(continuations):
        got = "a single item" if isinstance(prompts, (str, Mapping)) else f"{len(prompts)} prompts"
        raise ValueError(f"give one prompt per continuation: got {got} for {len(continuations)} continuations")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    tokenizer, speech_tokenizer = text_and_speech_tokenizers(tokenizer, speech_tokenizer)
    pairs = _encode_pairs(tokenizer, speech_tokenizer, prompts, continuations)
    for index, (prompt_ids, continuation_ids) in enumerate(pairs):
        inputs = len(prompt_ids) + len(continuation_ids) - 1  # see below: the last token is only a target
        check_context_length(model.config, inputs, what=f"prompt #{index} with its continuation")
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
    scores = np.zeros(len(pairs), dtype=np.float64)
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc="Scoring", disable=not show_progress):
        # The last continuation token is only a target, never an input.
        inputs = [pairs[i][0] + pairs[i][1][:-1] for i in batch]
        width = max(map(len, inputs))
        keep = max(len(pairs[i][1]) for i in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(inputs):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention_mask[row, width - len(ids) :] = 1
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            position_ids=position_ids.to(device),
            logits_to_keep=keep,
        ).logits
        log_probs = torch.log_softmax(logits.float(), dim=-1).cpu()
        for row, i in enumerate(batch):
            targets = torch.tensor(pairs[i][1])
            token_log_probs = log_probs[row, keep - len(targets) :].gather(-1, targets[:, None])[:, 0]
            total = token_log_probs.sum().item()
            scores[i] = total / len(targets) if reduction == "mean" else total
    return scores.tolist()


def minimal_pair_accuracy(
    model,
    tokenizer,
    pairs: Sequence[tuple],
    prompts: Sequence | None = None,
    speech_tokenizer=None,
    batch_size: int = 8,
    reduction: str = "sum",
) -> float:
    """
    Fraction of `(correct, wrong)` continuation pairs where the correct one scores strictly higher, each pair given
    its prompt (`prompts`, one per pair; `None` for none). sWUGGY and sBLIMP are this with no prompt, StoryCloze
    with the story as prompt and its two endings as the pair.
    """
    if not pairs:
        raise ValueError("no pairs to evaluate")
    for index, pair in enumerate(pairs):
        if isinstance(pair, (str, Mapping)) or len(pair) != 2:
            raise ValueError(f"pair #{index} must be a (correct, wrong) pair, got {pair!r}")
    prompts = [None] * len(pairs) if prompts is None else list(prompts)
    if len(prompts) != len(pairs):
        raise ValueError(f"give one prompt per pair: got {len(prompts)} prompts for {len(pairs)} pairs")
    scores = score_continuations(
        model,
        tokenizer,
        [prompt for prompt in prompts for _ in range(2)],
        [continuation for pair in pairs for continuation in pair],
        speech_tokenizer=speech_tokenizer,
        batch_size=batch_size,
        reduction=reduction,
    )
    return float(np.mean([correct > wrong for correct, wrong in zip(scores[0::2], scores[1::2])]))


__all__ = [
    "minimal_pair_accuracy",
    "render_segments",
    "score_continuations",
    "text_and_speech_tokenizers",
    "tokenize_pair",
]
