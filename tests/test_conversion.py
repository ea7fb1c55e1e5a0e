import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import AutoTokenizer
from transformers_spiritlm.conversion.convert_lm import LMConversionError, convert_lm
from transformers_spiritlm.conversion.convert_tokenizer import (
    SlowTokenizerReference,
    TokenizerConversionError,
    convert_tokenizer,
)

from transformers_spiritlm import SpiritLMForCausalLM
from transformers_spiritlm.testing.official_lm import (
    official_lm_state_dict,
    write_official_lm,
    write_official_tokenizer,
)

FIXTURES = Path(__file__).parent / "fixtures"
TOKENIZER_RECORD = json.loads((FIXTURES / "tokenizer" / "official_tokenizer.json").read_text(encoding="utf-8"))
TEXT_MODEL = (FIXTURES / "tokenizer" / TOKENIZER_RECORD["text_sentencepiece_model"]).read_bytes()
LM_RECORD = json.loads((FIXTURES / "lm" / "official_lm.json").read_text())
LM_LOGITS = np.load(FIXTURES / "lm" / "official_lm_logits.npz")


def _digest(state: dict) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="module", params=sorted(TOKENIZER_RECORD["configs"]))
def converted_tokenizer(request, tmp_path_factory):
    record = TOKENIZER_RECORD["configs"][request.param]
    official_dir = tmp_path_factory.mktemp("official")
    write_official_tokenizer(official_dir, "expressive", record["unit_storage"], record["legacy"], TEXT_MODEL)
    tokenizer, official = convert_tokenizer(official_dir, "expressive")
    tokenizer.save_pretrained(official_dir / "converted")
    return AutoTokenizer.from_pretrained(official_dir / "converted"), official, record


def test_converted_tokenizer_ids_equal_official(converted_tokenizer):
    tokenizer, _, record = converted_tokenizer
    ids = [tokenizer(string).input_ids for string in TOKENIZER_RECORD["strings"]]
    assert ids == record["ids"]


def test_converted_tokenizer_decodes_as_official(converted_tokenizer):
    tokenizer, _, record = converted_tokenizer
    decoded = [
        tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False) for ids in record["ids"]
    ]
    assert decoded == record["decoded"]


def test_sentencepiece_reference_ids_equal_official(converted_tokenizer):
    _, official, record = converted_tokenizer
    reference = SlowTokenizerReference(official)
    assert [reference.encode(string) for string in TOKENIZER_RECORD["strings"]] == record["ids"]


@pytest.mark.parametrize("legacy", [None, False])
def test_sentencepiece_units_round_trip_as_the_official_pipeline_expects(tmp_path, legacy):
    write_official_tokenizer(tmp_path, "expressive", "sentencepiece", legacy, TEXT_MODEL)
    tokenizer, _ = convert_tokenizer(tmp_path, "expressive")
    prompt = "[Speech][St71][Pi39][Hu99][Hu49][Text] and they went[Speech][Hu3]"
    ids = tokenizer(prompt).input_ids
    assert tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False) == prompt


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "unit_storage, breakage, message",
    [
        (
            "added_tokens",
            lambda d: _edit_json(
                d / "tokenizer_config.json",
                lambda c: c["added_tokens_decoder"].__setitem__(
                    "402", {**c["added_tokens_decoder"]["402"], "content": "[Hu1]"}
                ),
            ),
            r"id 402 is '\[Hu1\]', expected '\[Hu0\]' \(\[Text\]=400, \[Speech\]=401, \[HuN\]=402\+N",
        ),
        (
            "added_tokens",
            lambda d: _edit_json(d / "tokenizer_config.json", lambda c: c["added_tokens_decoder"].pop("401")),
            r"id 401 is nothing, expected '\[Speech\]'",
        ),
        (
            "added_tokens",
            lambda d: _edit_json(
                d / "tokenizer_config.json",
                lambda c: c["added_tokens_decoder"].__setitem__("1067", {"content": "[Xx0]"}),
            ),
            r"expressive tokenizer in .* has 668 tokens after the 400 text pieces; the official layout has 667",
        ),
        (
            "added_tokens",
            lambda d: _edit_json(
                d / "tokenizer_config.json",
                lambda c: c["added_tokens_decoder"]["400"].__setitem__("special", True),
            ),
            r"added token '\[Text\]' has .*'special': True.*needs plain",
        ),
        (
            "sentencepiece",
            lambda d: (d / "tokenizer.model").write_bytes(b"not a model"),
            r"tokenizer.model is not a SentencePiece model",
        ),
        (
            "sentencepiece",
            lambda d: (d / "special_tokens_map.json").unlink(),
            r"official tokenizer file not found: .*special_tokens_map.json",
        ),
    ],
)
def test_tokenizer_files_off_the_official_layout_are_clear_errors(tmp_path, unit_storage, breakage, message):
    write_official_tokenizer(tmp_path, "expressive", unit_storage, None, TEXT_MODEL)
    breakage(tmp_path)
    with pytest.raises((TokenizerConversionError, FileNotFoundError), match=message) as error:
        convert_tokenizer(tmp_path, "expressive")
    assert "\n" not in str(error.value)


def test_base_tokenizer_may_carry_the_expressive_units(tmp_path):
    write_official_tokenizer(tmp_path, "expressive", "sentencepiece", None, TEXT_MODEL)
    tokenizer, official = convert_tokenizer(tmp_path, "base")
    assert len(official.unit_tokens) == 667 and tokenizer.convert_tokens_to_ids("[St99]") == 400 + 666
    write_official_tokenizer(tmp_path, "base", "sentencepiece", None, TEXT_MODEL)
    with pytest.raises(TokenizerConversionError, match=r"id 903 is nothing, expected '\[Pi0\]'"):
        convert_tokenizer(tmp_path, "expressive")


@pytest.mark.parametrize("variant", ["base", "expressive"])
def test_converted_lm_logits_equal_official(tmp_path, variant):
    record = LM_RECORD["variants"][variant]
    official_dir = write_official_lm(
        tmp_path / "ckpt", variant, seed=LM_RECORD["seed"], sentencepiece_model=TEXT_MODEL
    )
    config = json.loads((official_dir / "config.json").read_text())
    assert _digest(official_lm_state_dict(config, seed=LM_RECORD["seed"])) == record["weights_sha256"]
    tokenizer, official = convert_tokenizer(official_dir, variant)
    convert_lm(official_dir, tmp_path / "out", variant, official.text_vocab_size, dtype="float32")

    model = SpiritLMForCausalLM.from_pretrained(tmp_path / "out").eval()
    ids = tokenizer(record["probe"], return_tensors="pt").input_ids
    assert ids[0].tolist() == record["ids"]
    with torch.no_grad():
        logits = model(ids).logits[0]
    torch.testing.assert_close(logits, torch.from_numpy(LM_LOGITS[variant]), rtol=1e-5, atol=1e-5)
    expected_units = (0, 0) if variant == "base" else (64, 100)
    assert (model.config.num_pitch_units, model.config.num_style_units) == expected_units
    assert model.config.text_token_id == 400 and model.generation_config.pad_token_id == 0


def test_lm_conversion_streams_into_shards_and_casts(tmp_path):
    official_dir = write_official_lm(tmp_path / "ckpt", "base", shards=3, sentencepiece_model=TEXT_MODEL)
    config = convert_lm(official_dir, tmp_path / "out", "base", 400, dtype="bfloat16", max_shard_size="40KB")
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    official = official_lm_state_dict(json.loads((official_dir / "config.json").read_text()))
    for name, file_name in index["weight_map"].items():
        with safe_open(tmp_path / "out" / file_name, "pt") as shard:
            assert torch.equal(shard.get_tensor(name), official[name].to(torch.bfloat16))
    assert config.dtype == "bfloat16"
    assert SpiritLMForCausalLM.from_pretrained(tmp_path / "out").dtype == torch.bfloat16


def test_truncated_or_missing_lm_weights_are_one_line_errors(tmp_path):
    official_dir = write_official_lm(tmp_path / "ckpt", "base", sentencepiece_model=TEXT_MODEL)
    weights = official_dir / "pytorch_model.bin"
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(LMConversionError, match=r"pytorch_model.bin is truncated or corrupt, re-download it") as error:
        convert_lm(official_dir, tmp_path / "out", "base", 400)
    assert "\n" not in str(error.value)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match=r"official language model file not found: .*pytorch_model.bin"):
        convert_lm(official_dir, tmp_path / "out", "base", 400)


def test_lm_weights_that_do_not_fit_the_config_are_clear_errors(tmp_path):
    official_dir = write_official_lm(tmp_path / "ckpt", "base", sentencepiece_model=TEXT_MODEL)
    _edit_json(official_dir / "config.json", lambda c: c.__setitem__("num_hidden_layers", 3))
    with pytest.raises(LMConversionError, match=r"missing \['model.layers.2.self_attn.q_proj.weight'"):
        convert_lm(official_dir, tmp_path / "out", "base", 400)
    _edit_json(official_dir / "config.json", lambda c: c.update(num_hidden_layers=2, vocab_size=800))
    with pytest.raises(LMConversionError, match=r"vocab_size=800 is smaller than the SPIRIT LM token layout"):
        convert_lm(official_dir, tmp_path / "out", "base", 400)
