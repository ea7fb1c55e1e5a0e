"""Output-modality control for SPIRIT LM generation: a `LogitsProcessor` over the id ranges of the config.

It enters generation the standard way, `model.generate(..., logits_processor=LogitsProcessorList([processor]))`.
"""

import torch
from transformers import LogitsProcessor

from .configuration_spiritlm import SpiritLMConfig
from .modalities import OUTPUT_MODALITIES, SPEECH, TEXT, check_output_modality, modality_token_ranges


def check_context_length(config, prompt_tokens: int, max_new_tokens: int = 0, what: str = "the prompt") -> None:
    """
    Raises a `ValueError` naming the lengths and the fix when `prompt_tokens + max_new_tokens` positions exceed the
    `max_position_embeddings` the model was trained on (4096 for SPIRIT LM): past them it would run on silently,
    with positions it never saw. Generation counts in full: its `max_new_tokens` must fit beside the prompt. A
    config without `max_position_embeddings` is not checked.
    """
    limit = getattr(config, "max_position_embeddings", None)
    total = prompt_tokens + max_new_tokens
    if limit is None or total <= limit:
        return
    if not max_new_tokens:
        raise ValueError(
            f"{what} has {prompt_tokens} tokens, more than the {limit} positions the model was trained on "
            "(max_position_embeddings); shorten it"
        )
    fix = f"lower max_new_tokens to {limit - prompt_tokens} or " if prompt_tokens < limit else ""
    raise ValueError(
        f"{what} has {prompt_tokens} tokens and max_new_tokens is {max_new_tokens}: {total} positions, more than the "
        f"{limit} the model was trained on (max_position_embeddings); {fix}shorten the prompt (less audio or text)"
    )


def banned_token_ranges(config: SpiritLMConfig, output_modality: str) -> list[range]:
    """
    The token ids that generation in `output_modality` must not produce, as ranges (the official forbidden tokens):

    - `"text"`: the `[Text]` / `[Speech]` markers and the hubert units; pitch and style units too for EXPRESSIVE.
    - `"speech"`: the text vocabulary and the markers, so that only unit tokens remain.
    - `"arbitrary"`: nothing.

    Ids past the layout (`vocab_size` padding rows, which have no token) are not banned, as in the official lists.
    The end-of-sequence id falls in the `"speech"` ranges; [`SpiritLMModalityLogitsProcessor`] exempts it, as
    `generate` exempts it from the official `bad_words_ids`.
    """
    output_modality = check_output_modality(output_modality)
    num_unit_tokens = sum(getattr(config, f"num_{unit_type}_units") for unit_type in config.unit_types)
    ranges = modality_token_ranges(config.text_vocab_size, num_unit_tokens)
    # The other modality's ids and both markers: the two markers sit between the modalities, so one range each.
    if output_modality == TEXT:
        return [range(ranges[TEXT].stop - 1, ranges[SPEECH].stop)]
    if output_modality == SPEECH:
        return [range(0, ranges[SPEECH].start + 1)]
    return []


class SpiritLMModalityLogitsProcessor(LogitsProcessor):
    r"""
    Restricts generation to one output modality by setting the scores of the banned ids to `-inf` (see
    [`banned_token_ranges`]). The result equals the official `bad_words_ids` list of single tokens as `generate`
    applies it, end-of-sequence exemption included, without building a 32000-entry list.

    Args:
        config ([`SpiritLMConfig`]): the model config, which defines the id layout.
        output_modality (`str`): `"text"`, `"speech"` or `"arbitrary"` (no constraint).
        eos_token_id (`int` or `list[int]`, *optional*): ids that stay allowed so that generation can stop; defaults
            to `config.eos_token_id`. Pass the generation config's when it differs.

    ```python
    >>> from transformers import LogitsProcessorList
    >>> processor = SpiritLMModalityLogitsProcessor(model.config, "speech")
    >>> model.generate(**inputs, logits_processor=LogitsProcessorList([processor]), max_new_tokens=100)
    ```
    """

    def __init__(self, config: SpiritLMConfig, output_modality: str, eos_token_id: int | list[int] | None = None):
        self.output_modality = check_output_modality(output_modality)
        self.banned_ranges = banned_token_ranges(config, self.output_modality)
        if eos_token_id is None:
            eos_token_id = config.eos_token_id
        self.eos_token_ids = [] if eos_token_id is None else [int(i) for i in torch.tensor(eos_token_id).reshape(-1)]
        self._biases = {}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if not self.banned_ranges:
            return scores
        key = (scores.shape[-1], scores.device, scores.dtype)
        if key not in self._biases:
            self._biases[key] = self._banned_bias(*key)
        # One addition per step (as `generate` applies bad_words_ids) costs less than editing a copy of the scores.
        return scores + self._biases[key]

    def _banned_bias(self, vocab_size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """`(vocab_size,)` tensor: `-inf` at the banned ids, `0` elsewhere and at the end-of-sequence ids."""
        bias = torch.zeros(vocab_size, dtype=dtype, device=device)
        for banned in self.banned_ranges:
            bias[banned.start : banned.stop] = -float("inf")
        bias[self.eos_token_ids] = 0
        return bias


__all__ = ["OUTPUT_MODALITIES", "SpiritLMModalityLogitsProcessor", "banned_token_ranges", "check_output_modality"]
