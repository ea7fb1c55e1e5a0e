import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, GenerationMixin, LlamaConfig, LlamaForCausalLM

from transformers_spiritlm import SpiritLMConfig, SpiritLMForCausalLM, SpiritLMModel
from transformers_spiritlm.testing import tiny_lm_config


def test_auto_classes_resolve_to_spiritlm(tiny_repo):
    assert type(AutoConfig.from_pretrained(tiny_repo)) is SpiritLMConfig
    assert type(AutoModel.from_pretrained(tiny_repo)) is SpiritLMModel
    assert type(AutoModelForCausalLM.from_pretrained(tiny_repo)) is SpiritLMForCausalLM


def test_save_load_round_trip_gives_identical_logits(tiny_repo, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_repo).eval()
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    input_ids = torch.randint(0, model.config.vocab_size, (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids).logits, reloaded(input_ids).logits, rtol=0, atol=0)


def test_logits_equal_llama_on_the_same_weights():
    torch.manual_seed(0)
    config = tiny_lm_config("base")
    spiritlm = SpiritLMForCausalLM(config).eval()
    llama_fields = {key: value for key, value in config.to_dict().items() if key in LlamaConfig.__dataclass_fields__}
    llama = LlamaForCausalLM(LlamaConfig(**llama_fields)).eval()
    assert not llama.load_state_dict(spiritlm.state_dict()).missing_keys
    input_ids = torch.randint(0, config.vocab_size, (3, 17), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(spiritlm(input_ids).logits, llama(input_ids).logits, rtol=0, atol=0)


def test_loads_a_plain_llama_state_dict(tmp_path):
    config = tiny_lm_config("base")
    llama_fields = {key: value for key, value in config.to_dict().items() if key in LlamaConfig.__dataclass_fields__}
    LlamaForCausalLM(LlamaConfig(**llama_fields)).save_pretrained(tmp_path)
    config.save_pretrained(tmp_path)  # the converted config; the weights are the Llama ones
    model = SpiritLMForCausalLM.from_pretrained(tmp_path)
    llama = LlamaForCausalLM.from_pretrained(tmp_path)
    torch.testing.assert_close(model.lm_head.weight, llama.lm_head.weight)


def test_id_layout_is_derived_from_the_text_vocabulary():
    official = SpiritLMConfig(variant="expressive")
    assert (official.text_token_id, official.speech_token_id) == (32000, 32001)
    assert (official.hubert_token_offset, official.pitch_token_offset, official.style_token_offset) == (
        32002,
        32503,
        32567,
    )
    tiny = tiny_lm_config(text_vocab_size=384)
    assert (tiny.text_token_id, tiny.hubert_token_offset, tiny.style_token_offset) == (384, 386, 386 + 501 + 64)
    assert "text_token_id" not in official.to_dict()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"vocab_size": 32100}, "vocab_size=32100 is smaller than the SPIRIT LM token layout, which needs 32667 ids"),
        ({"variant": "expresive"}, "unknown variant 'expresive'; use one of 'base', 'expressive'"),
        ({"num_hubert_units": 0}, r"^num_hubert_units=0 must be at least 1$"),
        ({"num_pitch_units": -1}, r"^num_pitch_units=-1 must be at least 0$"),
    ],
)
def test_bad_config_values_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SpiritLMConfig(**kwargs)


def test_generate_with_cache_matches_without():
    torch.manual_seed(0)
    model = SpiritLMForCausalLM(tiny_lm_config()).eval()
    input_ids = torch.randint(3, 300, (1, 9), generator=torch.Generator().manual_seed(2))
    with_cache = model.generate(input_ids, max_new_tokens=8, do_sample=False, use_cache=True)
    without_cache = model.generate(input_ids, max_new_tokens=8, do_sample=False, use_cache=False)
    assert torch.equal(with_cache, without_cache)


def test_causal_lm_lists_generation_mixin_among_its_direct_bases():
    # transformers' own models do, and its common test `test_inherits_generation_mixin` checks exactly this.
    assert GenerationMixin in SpiritLMForCausalLM.__bases__
    assert GenerationMixin not in SpiritLMModel.__mro__
