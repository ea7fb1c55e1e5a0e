import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer, LlamaTokenizer

from transformers_spiritlm import SpiritLMConfig
from transformers_spiritlm.testing import tiny_lm_config, tiny_text_tokenizer
from transformers_spiritlm.tokenization_spiritlm import (
    add_spiritlm_tokens,
    build_spiritlm_tokenizer,
    check_spiritlm_token_layout,
    spiritlm_token_strings,
)


def llama_sized_tokenizer() -> LlamaTokenizer:
    """A Llama-style tokenizer with exactly 32000 text tokens, like Llama 2's."""
    vocab = dict(tiny_text_tokenizer().get_vocab())
    vocab.update({f"▁filler{i}": i for i in range(len(vocab), 32000)})
    return LlamaTokenizer(vocab=vocab, add_bos_token=True)


@pytest.mark.parametrize("text_vocab_size", [32000, 384])
def test_markers_and_units_get_layout_ids(text_vocab_size):
    config = SpiritLMConfig(variant="expressive", text_vocab_size=text_vocab_size, vocab_size=text_vocab_size + 667)
    base = llama_sized_tokenizer() if text_vocab_size == 32000 else tiny_text_tokenizer(text_vocab_size)
    tokenizer = add_spiritlm_tokens(base, config)
    ids = tokenizer("[Speech][Hu12][Pi3][St7][Text]hello").input_ids
    v = text_vocab_size
    assert ids[:6] == [1, v + 1, v + 2 + 12, v + 2 + 501 + 3, v + 2 + 501 + 64 + 7, v]
    assert all(i < v for i in ids[6:]) and len(ids) > 6
    if v == 32000:
        assert ids[:6] == [1, 32001, 32014, 32506, 32574, 32000]


@pytest.mark.parametrize(
    "string",
    [
        "[Speech][Hu12][Hu500][Hu0]",
        "[St71][Pi39][Hu99][Hu49][Pi63][St99][Hu1]",
        "[Speech][Hu3][Hu3][Hu3]",
        "[Text]hello[Speech][Hu12][Hu13]",
    ],
)
def test_decode_round_trips_unit_strings(string):
    config = tiny_lm_config()
    tokenizer = add_spiritlm_tokens(tiny_text_tokenizer(), config)
    ids = tokenizer(string, add_special_tokens=False).input_ids
    assert tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False) == string


def test_save_load_keeps_layout(tmp_path):
    config = tiny_lm_config()
    tokenizer = add_spiritlm_tokens(tiny_text_tokenizer(), config)
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    check_spiritlm_token_layout(reloaded, config)
    assert reloaded("[Speech][Hu7][Text]hi").input_ids == tokenizer("[Speech][Hu7][Text]hi").input_ids


def test_layout_mismatch_is_a_clear_error():
    config = tiny_lm_config(text_vocab_size=400, vocab_size=2000)
    with pytest.raises(ValueError, match=r"has 384 tokens but the config expects a text vocabulary of 400"):
        add_spiritlm_tokens(tiny_text_tokenizer(), config)
    tokenizer = tiny_text_tokenizer()
    tokenizer.add_tokens(["[Speech]"])
    with pytest.raises(ValueError, match=r"'\[Text\]' is missing, expected id 384"):
        check_spiritlm_token_layout(tokenizer, tiny_lm_config())
    with pytest.raises(ValueError, match=r"'\[Text\]' has id 385, expected id 384"):
        add_spiritlm_tokens(tokenizer, tiny_lm_config())


def _text_vocab_and_merges():
    backend = json.loads(tiny_text_tokenizer().backend_tokenizer.to_str())["model"]
    return backend["vocab"], [
        tuple(merge) if isinstance(merge, list) else tuple(merge.split(" ")) for merge in backend["merges"]
    ]


@pytest.mark.parametrize(
    "units_in_sentencepiece, legacy, expected_start, decoded",
    [
        # One dummy prefix for the whole text: "▁" before a leading marker, none after it (official user-defined pieces).
        (True, True, ["<s>", "▁", "[Text]", "h"], "[Text]hello [Speech][Hu3][Hu4]"),
        # Units as added tokens, legacy: every chunk between them gets its own prefix; 4.x joins them with spaces.
        (False, True, ["<s>", "[Text]", "▁"], "[Text] hello  [Speech] [Hu3] [Hu4]"),
        (False, False, ["<s>", "▁", "[Text]", "h"], "[Text] hello  [Speech] [Hu3] [Hu4]"),
    ],
)
def test_built_tokenizer_follows_the_official_storage(
    units_in_sentencepiece, legacy, expected_start, decoded, tmp_path
):
    vocab, merges = _text_vocab_and_merges()
    config = tiny_lm_config()
    tokenizer = build_spiritlm_tokenizer(vocab, merges, spiritlm_token_strings(config), units_in_sentencepiece, legacy)
    tokenizer.save_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    check_spiritlm_token_layout(tokenizer, config)
    ids = tokenizer("[Text]hello [Speech][Hu3][Hu4]").input_ids
    assert tokenizer.convert_ids_to_tokens(ids)[: len(expected_start)] == expected_start
    assert tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False) == decoded
    assert (tokenizer.pad_token, tokenizer.padding_side) == ("<unk>", "left")


def test_built_tokenizer_rejects_malformed_inputs():
    vocab, merges = _text_vocab_and_merges()
    with pytest.raises(
        ValueError, match=r"unit tokens must look like '\[Name\]' and not be text pieces; got \['Hu3'\]"
    ):
        build_spiritlm_tokenizer(vocab, merges, ["[Text]", "Hu3"])
    with pytest.raises(ValueError, match=r"text_vocab ids must be exactly 0..383"):
        build_spiritlm_tokenizer({**vocab, "<s>": 999}, merges, ["[Text]"])


def test_invalid_utf8_bytes_decode_as_sentencepiece():
    # SentencePiece itself (the official tokenizer's decoder) is the reference: one U+FFFD per byte that does not
    # start a valid character, valid characters kept; tokenizers' ByteFallback would replace the whole run.
    import random

    import sentencepiece

    from transformers_spiritlm.tokenization_spiritlm import decode_bytes_like_sentencepiece

    model = (Path(__file__).parent / "fixtures" / "tokenizer" / "text_sentencepiece.model").read_bytes()
    processor = sentencepiece.SentencePieceProcessor(model_proto=model)
    byte_piece = {int(piece[3:5], 16): index for index in range(processor.get_piece_size())
                  if (piece := processor.id_to_piece(index)).startswith("<0x")}  # fmt: skip
    interesting = [
        0x0A,
        0x41,
        0x80,
        0xBF,
        0xC0,
        0xC1,
        0xC3,
        0xA9,
        0xE2,
        0x82,
        0xAC,
        0xED,
        0xA0,
        0xF0,
        0x9F,
        0xF4,
        0xFF,
    ]
    generator = random.Random(0)
    cases = [
        bytes([0x94, 0xB8, 0x0A, 0xE9]),
        bytes([0xE2, 0x82]),
        bytes([0xED, 0xA0, 0x80]),
        bytes([0xF0, 0x9F, 0x98]),
    ]
    cases += [bytes(generator.choice(interesting) for _ in range(generator.randrange(1, 7))) for _ in range(2000)]
    for data in cases:
        assert decode_bytes_like_sentencepiece(data) == processor.decode([byte_piece[b] for b in data]), data
    assert decode_bytes_like_sentencepiece(bytes([0x94, 0xB8, 0x0A, 0xE9])) == "\ufffd\ufffd\n\ufffd"


def test_processor_decodes_invalid_byte_runs_like_the_official_tokenizer(tiny_repo):
    from transformers_spiritlm import SpiritLMProcessor

    processor = SpiritLMProcessor.from_pretrained(tiny_repo, load_speech_tokenizer=False)
    byte = processor.tokenizer.convert_tokens_to_ids
    ids = [
        byte("<0x41>"),
        byte("<0x94>"),
        byte("<0xB8>"),
        byte("<0x0A>"),
        byte("<0xE9>"),
        byte("<0xC3>"),
        byte("<0xA9>"),
    ]
    assert processor.tokenizer.decode(ids) == "\ufffd" * 7  # tokenizers' ByteFallback alone: the whole run
    assert processor.decode_text(ids) == "A\ufffd\ufffd\n\ufffdé"
