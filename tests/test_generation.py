import json
from pathlib import Path

import pytest
import torch
from transformers import LogitsProcessorList

from transformers_spiritlm import SpiritLMConfig, SpiritLMForCausalLM
from transformers_spiritlm.generation import SpiritLMModalityLogitsProcessor
from transformers_spiritlm.modalities import check_output_modality
from transformers_spiritlm.testing import tiny_lm_config


OFFICIAL = json.loads((Path(__file__).parent / "fixtures" / "processing" / "official_processing.json").read_text())


def banned_ids(processor: SpiritLMModalityLogitsProcessor, vocab_size: int) -> list[list[int]]:
    scores = processor(torch.zeros(1, 1, dtype=torch.long), torch.zeros(2, vocab_size))
    assert torch.equal(scores[0], scores[1])
    ids = torch.isinf(scores[0]).nonzero()[:, 0].tolist()
    ranges = []
    for token_id in ids:
        if ranges and ranges[-1][1] == token_id:
            ranges[-1][1] += 1
        else:
            ranges.append([token_id, token_id + 1])
    return ranges


@pytest.mark.parametrize("case", OFFICIAL["forbidden_tokens"], ids=lambda c: f"{c['variant']}-{c['output_modality']}")
def test_banned_ids_equal_the_official_bad_words_as_generate_applies_them(case):
    config = SpiritLMConfig(variant=case["variant"])  # official sizes: 32000 text tokens, vocab_size 32768
    processor = SpiritLMModalityLogitsProcessor(config, case["output_modality"])
    # `generate` exempts the end-of-sequence id from `bad_words_ids`: "effective" is what the official code bans.
    assert banned_ids(processor, config.vocab_size) == case["effective_ranges"]


def tiny_model(variant: str) -> SpiritLMForCausalLM:
    torch.manual_seed(0)
    return SpiritLMForCausalLM(tiny_lm_config(variant)).eval()


def generate(model, output_modality, do_sample, logits_processor=None, min_new_tokens=200, **kwargs):
    config = model.config
    prompt = torch.tensor([[config.bos_token_id, config.text_token_id, 300, 301, 302, config.speech_token_id, 400]])
    if logits_processor is None:
        logits_processor = LogitsProcessorList([SpiritLMModalityLogitsProcessor(config, output_modality)])
    torch.manual_seed(1)
    output = model.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        logits_processor=logits_processor,
        max_new_tokens=200,
        min_new_tokens=min_new_tokens,
        do_sample=do_sample,
        top_k=0,
        pad_token_id=config.pad_token_id,
        **kwargs,
    )
    return output[0, prompt.shape[1] :]


@pytest.mark.parametrize(
    "variant, do_sample",
    [("expressive", False), ("expressive", True), ("base", False)],
    ids=["expressive-greedy", "expressive-sampled", "base-greedy"],
)
def test_200_generated_tokens_stay_in_the_output_modality(variant, do_sample):
    model = tiny_model(variant)
    config = model.config
    text = generate(model, "text", do_sample)
    speech = generate(model, "speech", do_sample)
    assert len(text) == len(speech) == 200
    if variant == "expressive":
        assert (text < config.text_token_id).all(), "text output holds a marker or unit id"
    else:
        # BASE bans markers and hubert units; pitch / style ids are not banned, as official (the model never saw them)
        assert not ((text >= config.text_token_id) & (text < config.pitch_token_offset)).any()
    assert ((speech >= config.hubert_token_offset) & (speech < config.num_spiritlm_tokens)).all()
    if do_sample:
        unconstrained = generate(model, "arbitrary", do_sample)
        assert (unconstrained < config.text_token_id).any() and (unconstrained >= config.hubert_token_offset).any()


@pytest.mark.parametrize(
    "output_modality, min_new_tokens",
    [("text", 0), ("speech", 0), ("speech", 200)],
    ids=["text-stops-at-eos", "speech-stops-at-eos", "speech-200-tokens"],
)
def test_sampling_equals_the_official_bad_words_list(output_modality, min_new_tokens):
    """Same seed, same samples: the logits processor gives generation exactly what the official bad_words_ids gave,
    including where it samples the end-of-sequence token."""
    model = tiny_model("expressive")
    config = model.config
    case = next(
        c
        for c in OFFICIAL["forbidden_tokens"]
        if c["variant"] == "expressive" and c["output_modality"] == output_modality
    )

    def to_tiny_layout(official_id: int) -> int:  # range ends: 0, or an id of the layout after the 32000 text ids
        return official_id if official_id == 0 else official_id - 32000 + config.text_vocab_size

    bad_words_ids = [[i] for start, stop in case["ranges"] for i in range(to_tiny_layout(start), to_tiny_layout(stop))]
    ours = generate(model, output_modality, do_sample=True, min_new_tokens=min_new_tokens)
    official_way = generate(
        model, output_modality, do_sample=True, logits_processor=LogitsProcessorList(), bad_words_ids=bad_words_ids,
        min_new_tokens=min_new_tokens, eos_token_id=config.eos_token_id,
    )  # fmt: skip
    assert torch.equal(ours, official_way)
    assert len(ours) >= max(min_new_tokens, 10)


def test_end_of_sequence_stays_allowed_in_speech_mode():
    config = tiny_lm_config()
    processor = SpiritLMModalityLogitsProcessor(config, "speech", eos_token_id=[2, 5])
    scores = torch.randn(1, config.vocab_size, generator=torch.Generator().manual_seed(0))
    scores = processor(torch.zeros(1, 1, dtype=torch.long), scores)
    assert torch.isfinite(scores[0, [2, 5]]).all() and torch.isinf(scores[0, [0, 1, 3, 4, 6]]).all()


def test_arbitrary_leaves_scores_untouched():
    scores = torch.randn(2, tiny_lm_config().vocab_size, generator=torch.Generator().manual_seed(0))
    assert SpiritLMModalityLogitsProcessor(tiny_lm_config(), "ARBITRARY")(None, scores) is scores


@pytest.mark.parametrize("value", ["speach", "", None, 1])
def test_output_modality_typo_names_the_allowed_values(value):
    with pytest.raises(ValueError, match=r"unknown output_modality .*; use one of 'text', 'speech', 'arbitrary'"):
        check_output_modality(value)
    with pytest.raises(ValueError, match="use one of 'text', 'speech', 'arbitrary'"):
        SpiritLMModalityLogitsProcessor(tiny_lm_config(), value)
