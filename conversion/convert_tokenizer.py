"""Convert an official SPIRIT LM tokenizer (`tokenizer.model` + `tokenizer_config.json` / `special_tokens_map.json`) to
the fast tokenizer of a converted repo.

The official code loads these files with transformers 4.x's SentencePiece `LlamaTokenizer` (`add_bos_token=True`,
`add_eos_token=False`, `legacy` from `tokenizer_config.json`, absent meaning True). The markers and units live either
inside the SentencePiece model as user-defined pieces or as added tokens in the config files; both are read, the
official id layout is verified (`[Text]` = V, `[Speech]` = V + 1, `[HuN]` = V + 2 + N, then `[PiN]`, `[StN]`, with V
the number of text pieces: 32000 for the official files), and the result encodes and decodes exactly as 4.x did (see
[`build_spiritlm_tokenizer`]). [`SlowTokenizerReference`] recomputes 4.x's ids with `sentencepiece` alone, for the
converter's self-check.

    python conversion/convert_tokenizer.py --input-dir CKPT/spiritlm_model/spirit-lm-base-7b --variant base --output-dir OUT
"""

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import sentencepiece as spm
from google.protobuf.message import DecodeError
from sentencepiece import sentencepiece_model_pb2

from transformers_spiritlm.configuration_spiritlm import VARIANTS
from transformers_spiritlm.conversion import ConversionError, read_json
from transformers_spiritlm.tokenization_spiritlm import (
    LLAMA_SPECIAL_TOKENS,
    SPIECE_UNDERLINE,
    build_spiritlm_tokenizer,
)


NUM_HUBERT_UNITS, NUM_PITCH_UNITS, NUM_STYLE_UNITS = 501, 64, 100

_PIECE = sentencepiece_model_pb2.ModelProto.SentencePiece
_BPE = sentencepiece_model_pb2.TrainerSpec.BPE


class TokenizerConversionError(ConversionError):
    """The official tokenizer files are unreadable or do not follow the official SPIRIT LM layout."""


def official_unit_tokens(num_pitch_units: int, num_style_units: int) -> list[str]:
    """The official marker and unit tokens in id order."""
    return (
        ["[Text]", "[Speech]"]
        + [f"[Hu{i}]" for i in range(NUM_HUBERT_UNITS)]
        + [f"[Pi{i}]" for i in range(num_pitch_units)]
        + [f"[St{i}]" for i in range(num_style_units)]
    )


@dataclass
class OfficialTokenizer:
    """What the official tokenizer files hold, checked against the official layout."""

    directory: Path
    proto: sentencepiece_model_pb2.ModelProto
    text_vocab_size: int
    unit_tokens: list[str]
    units_in_sentencepiece: bool
    legacy: bool
    user_defined_pieces: list[str] = field(default_factory=list)  # in the text part, matched whole by SentencePiece


def _read_json(path: Path) -> dict:
    return read_json(path, "tokenizer", TokenizerConversionError)


def _read_proto(path: Path) -> sentencepiece_model_pb2.ModelProto:
    if not path.is_file():
        raise FileNotFoundError(f"official tokenizer file not found: {path}")
    try:
        proto = sentencepiece_model_pb2.ModelProto.FromString(path.read_bytes())
    except DecodeError as error:
        raise TokenizerConversionError(f"{path} is not a SentencePiece model ({error})") from None
    if not proto.pieces:
        raise TokenizerConversionError(f"{path} is not a SentencePiece model (it has no pieces)")
    return proto


def _check_sentencepiece_settings(proto: sentencepiece_model_pb2.ModelProto, path: Path) -> None:
    trainer, normalizer = proto.trainer_spec, proto.normalizer_spec
    expected = {
        "model_type": (trainer.model_type, _BPE),
        "byte_fallback": (trainer.byte_fallback, True),
        "add_dummy_prefix": (normalizer.add_dummy_prefix, True),
        "remove_extra_whitespaces": (normalizer.remove_extra_whitespaces, False),
        "escape_whitespaces": (normalizer.escape_whitespaces, True),
        "precompiled_charsmap (a non-identity normalization)": (bool(normalizer.precompiled_charsmap), False),
    }
    wrong = [f"{name}={actual!r} (expected {want!r})" for name, (actual, want) in expected.items() if actual != want]
    if wrong:
        raise TokenizerConversionError(f"{path} is not a Llama 2 SentencePiece model: {', '.join(wrong)}")
    first = [piece.piece for piece in proto.pieces[:3]]
    if first != list(LLAMA_SPECIAL_TOKENS):
        raise TokenizerConversionError(f"{path} starts with pieces {first}, expected {list(LLAMA_SPECIAL_TOKENS)}")


def _added_tokens(directory: Path, config: dict) -> dict[int, dict]:
    """Added tokens by id, from `added_tokens_decoder` and, when present, the older `added_tokens.json`."""
    added = {}
    for index, token in (config.get("added_tokens_decoder") or {}).items():
        added[int(index)] = token if isinstance(token, dict) else {"content": str(token)}
    added_file = directory / "added_tokens.json"
    if added_file.is_file():
        for content, index in _read_json(added_file).items():
            added.setdefault(int(index), {"content": content})
    return added


def _layout_error(where: str, token_id: int, found: str | None, expected: str, text_vocab_size: int) -> str:
    found = "nothing" if found is None else repr(found)
    return (
        f"{where} does not follow the official SPIRIT LM id layout: id {token_id} is {found}, expected {expected!r} "
        f"([Text]={text_vocab_size}, [Speech]={text_vocab_size + 1}, [HuN]={text_vocab_size + 2}+N, "
        f"[PiN]={text_vocab_size + 2 + NUM_HUBERT_UNITS}+N, [StN]={text_vocab_size + 2 + NUM_HUBERT_UNITS + 64}+N)"
    )


def read_official_tokenizer(directory: str | Path, variant: str) -> OfficialTokenizer:
    """
    Reads and verifies an official tokenizer folder. Raises `FileNotFoundError` for a missing file and
    [`TokenizerConversionError`] (a `ValueError`) for a corrupt file, settings the conversion cannot reproduce, or a
    vocabulary that does not follow the official layout (BASE: markers + 501 hubert units, optionally followed by the
    pitch and style units; EXPRESSIVE: all of them).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {', '.join(map(repr, VARIANTS))}")
    directory = Path(directory)
    model_path = directory / "tokenizer.model"
    proto = _read_proto(model_path)
    config = _read_json(directory / "tokenizer_config.json")
    special_map = _read_json(directory / "special_tokens_map.json")
    _check_sentencepiece_settings(proto, model_path)
    if config.get("add_prefix_space", True) is False:
        raise TokenizerConversionError(
            f"{directory / 'tokenizer_config.json'}: add_prefix_space=false is not supported"
        )

    added = _added_tokens(directory, config)
    # [Text] starts the official layout: located by its piece or added token, since the text part may itself hold
    # user-defined pieces (padding or reserved pieces of some Llama derivatives).
    text_vocab_size = next(
        (index for index, piece in enumerate(proto.pieces) if piece.piece == "[Text]"),
        next((index for index, token in added.items() if token["content"] == "[Text]"), len(proto.pieces)),
    )
    user_defined = [index for index, piece in enumerate(proto.pieces) if piece.type == _PIECE.USER_DEFINED]
    not_user_defined = sorted(set(range(text_vocab_size, len(proto.pieces))) - set(user_defined))
    if not_user_defined:
        raise TokenizerConversionError(
            f"{model_path}: the pieces from [Text] (id {text_vocab_size}) on must be user-defined; "
            f"{len(not_user_defined)} are not, from id {not_user_defined[0]}"
        )
    vocab = {index: piece.piece for index, piece in enumerate(proto.pieces)}
    for index, token in added.items():
        if 3 <= index < len(proto.pieces) and vocab[index] != token["content"]:
            raise TokenizerConversionError(
                f"{directory}: added token {token['content']!r} has id {index}, which is the piece {vocab[index]!r}"
            )
        vocab[index] = token["content"]
    added_units = {index: token for index, token in added.items() if index >= text_vocab_size}

    full = official_unit_tokens(NUM_PITCH_UNITS, NUM_STYLE_UNITS)
    count = len(vocab) - text_vocab_size
    allowed = (len(full),) if variant == "expressive" else (2 + NUM_HUBERT_UNITS, len(full))
    for offset, expected in enumerate(full[: max(count, allowed[0])]):
        found = vocab.get(text_vocab_size + offset)
        if found != expected:
            raise TokenizerConversionError(
                _layout_error(
                    f"{variant} tokenizer in {directory}", text_vocab_size + offset, found, expected, text_vocab_size
                )
            )
    if count not in allowed or sorted(vocab) != list(range(len(vocab))):
        raise TokenizerConversionError(
            f"{variant} tokenizer in {directory} has {count} tokens after the {text_vocab_size} text pieces; the "
            f"official layout has {' or '.join(map(str, allowed))}"
        )
    unit_tokens = full[:count]

    for token in added_units.values():
        flags = {flag: token.get(flag, False) for flag in ("lstrip", "rstrip", "single_word", "special")}
        if any(flags.values()):
            raise TokenizerConversionError(
                f"{directory}: added token {token['content']!r} has {flags}; the official tokenizer needs plain "
                "(non-special, non-stripping) unit tokens"
            )
    extra_special = [
        str(t.get("content", t) if isinstance(t, dict) else t)
        for t in special_map.get("additional_special_tokens", [])
    ]
    if set(extra_special) & set(unit_tokens):
        raise TokenizerConversionError(
            f"{directory / 'special_tokens_map.json'} lists unit tokens as additional_special_tokens, which decoding "
            "with skip_special_tokens=True would drop"
        )
    if added_units and len(added_units) != count:
        raise TokenizerConversionError(
            f"{directory}: {len(added_units)} units are added tokens and {count - len(added_units)} are not"
        )
    return OfficialTokenizer(
        directory=directory,
        proto=proto,
        text_vocab_size=text_vocab_size,
        unit_tokens=unit_tokens,
        units_in_sentencepiece=not added_units,
        legacy=config.get("legacy") is not False,
        user_defined_pieces=[proto.pieces[index].piece for index in user_defined if index < text_vocab_size],
    )


def text_vocab_and_merges(proto: sentencepiece_model_pb2.ModelProto, text_vocab_size: int):
    """The text pieces as a `{piece: id}` vocabulary and the BPE merges that reproduce SentencePiece's: every split of
    a normal piece into two normal pieces, ranked by the merged piece's score (then id), as SentencePiece merges the
    highest-scoring pair first."""
    pieces = proto.pieces[:text_vocab_size]
    vocab = {piece.piece: index for index, piece in enumerate(pieces)}
    normal = {piece.piece: (piece.score, index) for index, piece in enumerate(pieces) if piece.type == _PIECE.NORMAL}
    ranked = []
    for piece, (score, index) in normal.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in normal and right in normal:
                ranked.append((-score, index, left, right))
    return vocab, [(left, right) for _, _, left, right in sorted(ranked)]


def convert_tokenizer(directory: str | Path, variant: str):
    """Reads, verifies and converts an official tokenizer folder; returns `(fast_tokenizer, official)`."""
    official = read_official_tokenizer(directory, variant)
    vocab, merges = text_vocab_and_merges(official.proto, official.text_vocab_size)
    tokenizer = build_spiritlm_tokenizer(
        vocab,
        merges,
        official.unit_tokens,
        units_in_sentencepiece=official.units_in_sentencepiece,
        legacy=official.legacy,
        user_defined_pieces=official.user_defined_pieces,
    )
    return tokenizer, official


class SlowTokenizerReference:
    """
    The ids transformers 4.x's SentencePiece `LlamaTokenizer` gives on the official files (`add_bos_token=True`),
    computed with `sentencepiece` directly: the text is split on added tokens (the Llama special tokens, and the units
    when stored as added tokens) and each chunk between them is encoded by the SentencePiece model. In legacy mode
    SentencePiece adds a dummy prefix to every chunk; otherwise 4.x prefixes the whole text once and encodes each
    chunk without one (keeping a chunk's leading spaces by encoding it after `<unk>`).
    """

    def __init__(self, official: OfficialTokenizer):
        self.legacy = official.legacy
        self.processor = spm.SentencePieceProcessor(model_proto=official.proto.SerializeToString())
        if not self.legacy:
            without_prefix = sentencepiece_model_pb2.ModelProto()
            without_prefix.CopyFrom(official.proto)
            without_prefix.normalizer_spec.add_dummy_prefix = False
            self.processor = spm.SentencePieceProcessor(model_proto=without_prefix.SerializeToString())
        self.added = {token: index for index, token in enumerate(LLAMA_SPECIAL_TOKENS)}
        if not official.units_in_sentencepiece:
            self.added.update({token: official.text_vocab_size + i for i, token in enumerate(official.unit_tokens)})
        self._split = re.compile("(" + "|".join(map(re.escape, sorted(self.added, key=len, reverse=True))) + ")")
        self._unk_length = len(self.processor.encode("<unk>"))
        self._underline_id = self.processor.piece_to_id(SPIECE_UNDERLINE)
        self._special_ids = {self.added[token] for token in LLAMA_SPECIAL_TOKENS}

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, `<s>` first."""
        if not self.legacy and text:
            text = SPIECE_UNDERLINE + text.replace(SPIECE_UNDERLINE, " ")
        ids = []
        for chunk in self._split.split(text):
            if chunk in self.added:
                ids.append(self.added[chunk])
            elif chunk and (self.legacy or not chunk.startswith((SPIECE_UNDERLINE, " "))):
                ids += self.processor.encode(chunk)
            elif chunk:
                ids += self.processor.encode("<unk>" + chunk)[self._unk_length :]
        if not self.legacy and len(ids) > 1 and ids[0] == self._underline_id and ids[1] in self._special_ids:
            ids = ids[1:]
        return [self.added["<s>"]] + ids


def pieces_encoded_differently(tokenizer, official: OfficialTokenizer) -> list[str]:
    """
    The text pieces for which `"[Text]" + piece` (`▁` read as a space) gets different ids from `tokenizer` and from
    the official tokenizer ([`SlowTokenizerReference`]). When the text right after a unit is exactly one vocabulary
    piece, the fast tokenizer emits that piece whole (see [`build_spiritlm_tokenizer`]) where SentencePiece might end
    elsewhere by its merges; this lists where that happens (empty when every piece encodes to itself).
    """
    reference = SlowTokenizerReference(official)
    pieces = [
        piece.piece for piece in official.proto.pieces[: official.text_vocab_size] if piece.type == _PIECE.NORMAL
    ]
    texts = ["[Text]" + piece.replace(SPIECE_UNDERLINE, " ") for piece in pieces]
    fast = tokenizer(texts).input_ids
    return [piece for piece, text, ids in zip(pieces, texts, fast) if ids != reference.encode(text)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input-dir", required=True, help="official spiritlm_model/spirit-lm-{variant}-7b folder")
    parser.add_argument("--variant", required=True, choices=VARIANTS)
    parser.add_argument("--output-dir", required=True)
    args = parser.parse_args(argv)
    tokenizer, official = convert_tokenizer(args.input_dir, args.variant)
    tokenizer.save_pretrained(args.output_dir)
    print(f"converted {len(official.unit_tokens)} unit tokens after {official.text_vocab_size} text pieces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
