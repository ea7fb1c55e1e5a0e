"""Continuations of a batch of prompts in one modality, as the evaluation tasks generate them: left-padded batches,
the official modality constraint, per-item seeded sampling (outputs independent of batching and of the number of
processes), retries of items with no output of the modality, and the first output segment of each item."""

import hashlib
import os
from collections.abc import Mapping, Sequence

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from ..generation import SpiritLMModalityLogitsProcessor, check_context_length


# What an item id may hold to be its wav file's name as it is ("+" is kept for the names that add a hash).
_WAV_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
_WAV_STEM_LENGTH = 100


def item_seed(seed: int, item_id: object, attempt: int = 0) -> int:
    """The sampling seed of one item: a hash of the run's seed, the item's id and the attempt, so that an item's
    output depends neither on the batch it is in nor on the process that generates it."""
    digest = hashlib.sha256(f"{seed}/{item_id}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class PerItemSamplingLogitsProcessor(LogitsProcessor):
    """
    Temperature + top-p sampling with one `torch.Generator` per batch row: every score but the drawn token's becomes
    `-inf`, so that greedy decoding (`do_sample=False`) takes it. Each row draws from its own seeded stream, whatever
    the other rows of the batch.
    """

    def __init__(self, seeds: Sequence[int], temperature: float = 1.0, top_p: float = 1.0):
        if temperature <= 0 or not 0 < top_p <= 1:
            raise ValueError(f"need temperature > 0 and 0 < top_p <= 1, got {temperature} and {top_p}")
        self.generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = (scores.float() / self.temperature).softmax(dim=-1)
        if self.top_p < 1:
            # As transformers' TopPLogitsWarper: drop the least likely tokens whose total is at most 1 - top_p.
            sorted_probs, order = probs.sort(dim=-1)
            drop = sorted_probs.cumsum(dim=-1) <= 1 - self.top_p
            drop[:, -1] = False
            probs = probs.scatter(-1, order, sorted_probs.masked_fill(drop, 0.0))
        probs = probs.cpu()
        tokens = [torch.multinomial(probs[row], 1, generator=gen)[0] for row, gen in enumerate(self.generators)]
        chosen = torch.full_like(scores, -float("inf"))
        chosen[torch.arange(len(tokens)), torch.stack(tokens).to(scores.device)] = 0.0
        return chosen


def wav_file_name(item_id: object) -> str:
    """`<id>.wav` for an id of at most 100 lowercase ASCII letters, digits, `-`, `_` and `.`; for any other id, its
    first 100 characters lowercased (others made `_`), `+` and 16 hex digits of its SHA-256. Different ids get
    different names, on case-insensitive file systems too, and no name is too long for a file system."""
    item_id = str(item_id)
    if item_id and len(item_id) <= _WAV_STEM_LENGTH and all(c in _WAV_NAME_CHARACTERS for c in item_id):
        return f"{item_id}.wav"
    readable = "".join(c if c in _WAV_NAME_CHARACTERS else "_" for c in item_id.lower()[:_WAV_STEM_LENGTH])
    return f"{readable}+{hashlib.sha256(item_id.encode()).hexdigest()[:16]}.wav"


def query_prompts(
    processor, rows: Sequence[Mapping], queries: Sequence[list[dict]], target: str, prefix: str = ""
) -> list[str]:
    """`prefix` (e.g. a few-shot prompt) + the prompt of each query (segments) asking for `target`; an unreadable
    input is an error naming the manifest lines of `rows`."""
    try:
        return [prefix + prompt for prompt in processor.build_prompts(list(queries), target)]
    except (OSError, ValueError, TypeError) as error:
        lines = ", ".join(str(row.get("_line", "?")) for row in rows)
        raise type(error)(f"manifest line(s) {lines} (prompts numbered from 0 in this batch): {error}") from None


def load_models(repo: str | os.PathLike, device: str | torch.device, vocoder: bool = False) -> tuple:
    """`(model, processor, vocoder)` of a converted repo on `device`, in eval mode (the processor's speech tokenizer
    too); `vocoder` is `None` unless asked for."""
    from transformers import AutoModelForCausalLM, AutoProcessor

    processor = AutoProcessor.from_pretrained(repo)
    model = AutoModelForCausalLM.from_pretrained(repo).to(device).eval()
    if processor.speech_tokenizer is not None:
        processor.speech_tokenizer.to(device)
    if not vocoder:
        return model, processor, None
    from ..vocoder import load_vocoder

    return model, processor, load_vocoder(repo).to(device)


@torch.no_grad()
def generate_segments(
    model,
    processor,
    prompts: Sequence[str],
    ids: Sequence,
    target: str,
    max_new_tokens: int,
    vocoder=None,
    do_sample: bool = True,
    seed: int = 0,
    temperature: float = 1.0,
    top_p: float = 1.0,
    num_attempts: int = 1,
    speaker_id: int | str = 2,
) -> list[dict | None]:
    """
    The first output segment of the `target` modality (`"text"` or `"speech"`) of each prompt, generated together
    with left padding: `{"type": "text", "text"}`, or `{"type": "speech", "units", "audio", "sampling_rate"}` with a
    `vocoder` (`{"type": "speech", "units"}` without); `None` for a prompt with no such output (speech with no audio
    counts as none when vocoding).

    Args:
        ids: one per prompt; with `do_sample`, item `i` samples from the stream [`item_seed`]`(seed, ids[i],
            attempt)`, whatever the batch. `do_sample=False` is greedy.
        num_attempts: when sampling, the items without output are generated again with their next seeds, at most
            this many times in all.
    """
    tokenizer = processor.tokenizer
    eos_token_id = model.generation_config.eos_token_id or tokenizer.eos_token_id
    generation_config = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    modality = SpiritLMModalityLogitsProcessor(model.config, target, eos_token_id)

    def generate(batch_prompts: list[str], batch_ids: list, attempt: int) -> list[dict | None]:
        encoded = tokenizer(batch_prompts, padding=True, padding_side="left", return_tensors="pt")
        for item_id, length in zip(batch_ids, encoded["attention_mask"].sum(-1).tolist()):
            check_context_length(model.config, length, max_new_tokens, f"the prompt of item {item_id}")
        processors = LogitsProcessorList([modality])
        if do_sample:
            seeds = [item_seed(seed, item_id, attempt) for item_id in batch_ids]
            processors.append(PerItemSamplingLogitsProcessor(seeds, temperature, top_p))
        sequences = model.generate(
            input_ids=encoded["input_ids"].to(model.device),
            attention_mask=encoded["attention_mask"].to(model.device),
            logits_processor=processors,
            generation_config=generation_config,
        )
        outputs = processor.post_process_generation(
            sequences, encoded["attention_mask"], target, vocoder if target == "speech" else None, speaker_id,
            eos_token_id,
        )  # fmt: skip
        results = []
        for segments in outputs:
            found = next((segment for segment in segments if segment["type"] == target), None)
            if vocoder is not None and found is not None and len(found.get("audio", ())) == 0:
                found = None
            results.append(found)
        return results

    outputs: list[dict | None] = [None] * len(prompts)
    pending = list(range(len(prompts)))
    # Greedy decoding would give the same output again.
    for attempt in range(num_attempts if do_sample else 1):
        if not pending:
            break
        results = generate([prompts[i] for i in pending], [ids[i] for i in pending], attempt)
        for index, output in zip(pending, results):
            outputs[index] = output
        pending = [index for index in pending if outputs[index] is None]
    return outputs


__all__ = [
    "PerItemSamplingLogitsProcessor",
    "generate_segments",
    "item_seed",
    "load_models",
    "query_prompts",
    "wav_file_name",
]
