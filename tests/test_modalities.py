import torch

from transformers_spiritlm import SpiritLMConfig
from transformers_spiritlm.data import SpiritLMDataCollator
from transformers_spiritlm.generation import banned_token_ranges
from transformers_spiritlm.modalities import (
    MARKERS,
    OUTPUT_MODALITIES,
    SEGMENT_TYPES,
    SpeechSegment,
    TextSegment,
    modality_token_ranges,
)
from transformers_spiritlm.testing import tiny_lm_config, tiny_spiritlm_tokenizer


def test_modalities_segment_types_and_markers():
    assert SEGMENT_TYPES == ("text", "speech")
    assert OUTPUT_MODALITIES == ("text", "speech", "arbitrary")
    assert MARKERS == {"text": "[Text]", "speech": "[Speech]"}
    assert TextSegment.__required_keys__ == {"type", "text"}
    assert SpeechSegment.__required_keys__ == {"type"}
    assert SpeechSegment.__optional_keys__ == {"audio", "sampling_rate", "units"}


def test_modality_token_ranges_of_the_official_layout():
    # [Text] = 32000 closes the text ids, [Speech] = 32001 opens the speech ids, then [Hu0] = 32002 ...
    assert modality_token_ranges(32000, 501) == {"text": range(0, 32001), "speech": range(32001, 32503)}
    assert modality_token_ranges(32000, 501 + 64 + 100) == {"text": range(0, 32001), "speech": range(32001, 32667)}


def test_generation_and_collator_use_the_same_ranges():
    config = tiny_lm_config("expressive")  # text vocabulary of 384: [Text] 384, [Speech] 385, units 386..1050
    assert banned_token_ranges(config, "text") == [range(384, 1051)]
    assert banned_token_ranges(config, "speech") == [range(0, 386)]
    assert banned_token_ranges(SpiritLMConfig(variant="base"), "text") == [range(32000, 32503)]
    collator = SpiritLMDataCollator(tiny_spiritlm_tokenizer(config))
    ids = torch.tensor([0, 1, 3, 383, 384, 385, 386, 887, 1050])
    assert collator.modality_mask(ids, "text").tolist() == [False, False, True, True, True, False, False, False, False]
    assert collator.modality_mask(ids, "speech").tolist() == [False] * 5 + [True] * 4
