"""Conversion of official files that real downloads may differ in: a text vocabulary holding user-defined pieces
before `[Text]` (padding or reserved pieces, as some Llama derivatives have), and a float16 language model for GPUs
without bfloat16."""

from pathlib import Path

import pytest
import sentencepiece as spm
import torch
from official_lm import write_official_lm, write_official_tokenizer
from sentencepiece import sentencepiece_model_pb2
from transformers import AutoModelForCausalLM

from transformers_spiritlm.conversion.convert_lm import convert_lm
from transformers_spiritlm.conversion.convert_tokenizer import SlowTokenizerReference, convert_tokenizer


FIXTURES = Path(__file__).parent / "fixtures"
TEXT_MODEL = FIXTURES / "tokenizer" / "text_sentencepiece.model"
USER_DEFINED = ["<pad>", "<reserved_0>"]
TEXTS = [
    "hello world",
    "<pad>",
    "a<pad>b <reserved_0> c",
    " <pad><pad> the end<reserved_0>",
    "[Text]hello<pad> world[Speech][Hu3][Hu500]",
    "[Speech][Hu12]<reserved_0>[Text] and they went out",
]


def text_model_with_user_defined_pieces() -> bytes:
    """The tiny text model of tests/fixtures/tokenizer/ (400 pieces) with two user-defined pieces appended."""
    proto = sentencepiece_model_pb2.ModelProto.FromString(TEXT_MODEL.read_bytes())
    for name in USER_DEFINED:
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = name, 0.0, sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED
    return proto.SerializeToString()


@pytest.mark.parametrize("unit_storage", ["sentencepiece", "added_tokens"])
def test_text_marker_is_located_after_user_defined_text_pieces(tmp_path, unit_storage):
    write_official_tokenizer(tmp_path, "base", unit_storage, sentencepiece_model=text_model_with_user_defined_pieces())
    tokenizer, official = convert_tokenizer(tmp_path, "base")
    assert official.text_vocab_size == 402
    assert official.user_defined_pieces == USER_DEFINED
    assert tokenizer.convert_tokens_to_ids(["<pad>", "<reserved_0>", "[Text]", "[Speech]", "[Hu0]"]) == [
        400,
        401,
        402,
        403,
        404,
    ]
    reference = SlowTokenizerReference(official)
    for text in TEXTS:
        assert tokenizer(text).input_ids == reference.encode(text), text


def test_user_defined_text_pieces_encode_as_sentencepiece_does(tmp_path):
    """Units inside the SentencePiece model: transformers 4.x's legacy `LlamaTokenizer` is `<s>` + SentencePiece's
    own encoding, which matches user-defined pieces whole."""
    write_official_tokenizer(
        tmp_path, "base", "sentencepiece", sentencepiece_model=text_model_with_user_defined_pieces()
    )
    tokenizer, _ = convert_tokenizer(tmp_path, "base")
    sentencepiece = spm.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer.model"))
    for text in TEXTS:
        expected = [1] + sentencepiece.encode(text)
        assert tokenizer(text).input_ids == expected, text
    assert tokenizer("a<pad>b").input_ids[2] == 400  # whole, not spelled out
    assert tokenizer.decode(tokenizer("a<pad>b <reserved_0> c").input_ids, skip_special_tokens=True) == (
        sentencepiece.decode(sentencepiece.encode("a<pad>b <reserved_0> c"))
    )


def test_pieces_after_text_marker_must_be_user_defined(tmp_path):
    model = text_model_with_user_defined_pieces()
    write_official_tokenizer(tmp_path, "base", "sentencepiece", sentencepiece_model=model)
    proto = sentencepiece_model_pb2.ModelProto.FromString((tmp_path / "tokenizer.model").read_bytes())
    proto.pieces[405].type = sentencepiece_model_pb2.ModelProto.SentencePiece.NORMAL  # [Hu1]
    (tmp_path / "tokenizer.model").write_bytes(proto.SerializeToString())
    with pytest.raises(
        ValueError, match=r"the pieces from \[Text\] \(id 402\) on must be user-defined; 1 are not, from id 405"
    ):
        convert_tokenizer(tmp_path, "base")


def test_float16_language_model_matches_float32(tmp_path):
    official_dir = write_official_lm(tmp_path / "ckpt", "base", sentencepiece_model=TEXT_MODEL.read_bytes())
    convert_lm(official_dir, tmp_path / "fp32", "base", 400, dtype="float32")
    config = convert_lm(official_dir, tmp_path / "fp16", "base", 400, dtype="float16")
    assert config.dtype == "float16"
    fp32 = AutoModelForCausalLM.from_pretrained(tmp_path / "fp32").eval()
    fp16 = AutoModelForCausalLM.from_pretrained(tmp_path / "fp16").eval()
    assert fp16.dtype == torch.float16
    ids = torch.tensor([[1, 400, 17, 230, 401, 402, 450]])
    with torch.no_grad():
        expected, got = fp32(ids).logits, fp16(ids).logits
    assert got.dtype == torch.float16 and torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), expected, atol=2e-2, rtol=2e-2)


def test_float16_refuses_weights_beyond_its_range(tmp_path):
    official_dir = write_official_lm(tmp_path / "ckpt", "base", sentencepiece_model=TEXT_MODEL.read_bytes())
    state = torch.load(official_dir / "pytorch_model.bin", weights_only=True)
    state["model.norm.weight"][3] = 1e5
    torch.save(state, official_dir / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"model.norm.weight has values beyond float16's range .* --dtype bfloat16"):
        convert_lm(official_dir, tmp_path / "fp16", "base", 400, dtype="float16")
