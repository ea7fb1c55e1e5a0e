"""The SPIRIT LM text + unit tokenizer: a Llama fast tokenizer with the modality markers and unit tokens at the ids
of the SPIRIT LM layout (see [`SpiritLMConfig`]).

[`build_spiritlm_tokenizer`] builds one that encodes and decodes exactly as the official code did: transformers 4.x's
SentencePiece `LlamaTokenizer` on the official files. [`add_spiritlm_tokens`] adds the tokens to any Llama tokenizer;
[`extend_text_tokenizer`] does so for the tokenizer of a text model a SPIRIT LM starts from.
"""

import re
from collections.abc import Mapping, Sequence

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE
from transformers import PreTrainedTokenizerBase, TokenizersBackend

from .configuration_spiritlm import SpiritLMConfig
from .modalities import SPEECH_MARKER, TEXT_MARKER


SPIECE_UNDERLINE = "\u2581"
LLAMA_SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")
# Unicode noncharacters, never produced by decoding: mark unit boundaries inside the decoder.
_BOUNDARY, _EMPTY_LAST_RUN = "\ufdd0", "\ufdd1"


def spiritlm_token_strings(config: SpiritLMConfig) -> list[str]:
    """The added tokens of the layout in id order: `[Text]`, `[Speech]`, `[Hu0]`.., `[Pi0]`.., `[St0]`.."""
    return (
        [TEXT_MARKER, SPEECH_MARKER]
        + [f"[Hu{i}]" for i in range(config.num_hubert_units)]
        + [f"[Pi{i}]" for i in range(config.num_pitch_units)]
        + [f"[St{i}]" for i in range(config.num_style_units)]
    )


def check_spiritlm_token_layout(tokenizer: PreTrainedTokenizerBase, config: SpiritLMConfig) -> None:
    """
    Raises `ValueError` unless every marker and unit token of `config`'s layout is a single token at its expected
    id (`[Text]` = text_vocab_size, `[Speech]` = text_vocab_size + 1, `[HuN]` = text_vocab_size + 2 + N, ...).
    """
    vocab = tokenizer.get_vocab()
    for expected_id, token in enumerate(spiritlm_token_strings(config), start=config.text_token_id):
        actual_id = vocab.get(token)
        if actual_id != expected_id:
            found = "is missing" if actual_id is None else f"has id {actual_id}"
            raise ValueError(
                f"tokenizer does not follow the SPIRIT LM token layout: {token!r} {found}, expected id {expected_id} "
                f"(text_vocab_size={config.text_vocab_size}); build it with add_spiritlm_tokens() on a tokenizer "
                f"whose text vocabulary has exactly {config.text_vocab_size} entries"
            )


def add_spiritlm_tokens(tokenizer: PreTrainedTokenizerBase, config: SpiritLMConfig) -> PreTrainedTokenizerBase:
    """
    Adds the SPIRIT LM markers and unit tokens to a Llama-style `tokenizer` (in place) and verifies the id layout.

    Tokens already present (e.g. user-defined pieces of an official SentencePiece model) are kept where they are.
    They are added as non-special, non-normalized tokens: like the official tokenizer, decoding with
    `skip_special_tokens=True` keeps them, and they are matched before the text model sees the string.
    """
    vocab = tokenizer.get_vocab()
    if len(vocab) < config.text_vocab_size:
        raise ValueError(
            f"the base tokenizer has {len(vocab)} tokens but the config expects a text vocabulary of "
            f"{config.text_vocab_size}; set SpiritLMConfig.text_vocab_size={len(vocab)}"
        )
    missing = [token for token in spiritlm_token_strings(config) if token not in vocab]
    tokenizer.add_tokens([AddedToken(token, normalized=False, special=False) for token in missing])
    check_spiritlm_token_layout(tokenizer, config)
    return tokenizer


def extend_text_tokenizer(tokenizer: PreTrainedTokenizerBase, config: SpiritLMConfig) -> PreTrainedTokenizerBase:
    """
    The tokenizer of the text model [`SpiritLMForCausalLM.from_text_model`] started from, extended (in place) with the
    markers and unit tokens of `config`'s layout: any Llama-style tokenizer, SentencePiece-like (Llama 2, TinyLlama)
    or byte-level BPE (Llama 3, SmolLM), whose vocabulary has exactly `config.text_vocab_size` entries. Each unit
    token then encodes as one token at its id and decodes as itself (`"[Hu12][Hu7]"`). A tokenizer without a pad
    token pads with its unknown token, else its end-of-sequence token (padding is masked out).

    Raises:
        ValueError: the tokenizer already has a SPIRIT LM token (it is a SPIRIT LM tokenizer already) or its size is
            not the text model's vocabulary.
    """
    vocab = tokenizer.get_vocab()
    present = [token for token in spiritlm_token_strings(config) if token in vocab]
    if present:
        raise ValueError(
            f"the text tokenizer already has {present[0]!r} (id {vocab[present[0]]}): it is a SPIRIT LM tokenizer "
            "already, or uses that string for a text token; start from the text model's own tokenizer"
        )
    if len(vocab) != config.text_vocab_size:
        raise ValueError(
            f"the text tokenizer has {len(vocab)} tokens but the text model {config.text_vocab_size} embedding rows: "
            "SPIRIT LM appends its tokens right after the text vocabulary, so they must match; resize the text model "
            "first (text_model.resize_token_embeddings(len(tokenizer)))"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return add_spiritlm_tokens(tokenizer, config)


def _alternation(names: Sequence[str]) -> str:
    return "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))


def _official_decoder(unit_tokens: Sequence[str], leading_spaces: int, join_units: bool) -> decoders.Decoder:
    """
    The decoding of transformers 4.x's slow `LlamaTokenizer` with `skip_special_tokens=True`: pieces are
    concatenated, `▁` read as a space, and up to `leading_spaces` spaces of the dummy prefix are dropped from the start
    (one by transformers, one more by SentencePiece in legacy mode).

    With `join_units` (units stored as added tokens), 4.x decodes each run of text pieces between units on its own,
    dropping its leading spaces the same way, and joins the units and the runs with single spaces (its `_decode`
    defaults `spaces_between_special_tokens` to True), leaving out runs that decode to nothing, except the last one.
    Regexes over the fused text reproduce this: a boundary mark after each unit absorbs the spaces that start the next
    run, then becomes the joining space.
    """
    steps = [
        decoders.Replace(SPIECE_UNDERLINE, " "),
        decoders.ByteFallback(),
        decoders.Fuse(),
        decoders.Strip(content=" ", left=leading_spaces, right=0),
    ]
    if join_units:
        names = _alternation([token[1:-1] for token in unit_tokens])
        mark, empty_last_run = _BOUNDARY, _EMPTY_LAST_RUN
        steps += [
            decoders.Replace(Regex(rf"\[(?:{names})\K\] {{1,{leading_spaces}}}\z"), "]" + mark + empty_last_run),
            decoders.Replace(Regex(rf"\[(?:{names})\K\] {{0,{leading_spaces}}}(?!{mark})"), "]" + mark),
            decoders.Replace(Regex(rf"[^{mark}]\K\[(?=(?:{names})\])"), " ["),
            decoders.Replace(Regex(rf"{mark}\z"), ""),
            decoders.Replace(mark, " "),
            decoders.Replace(empty_last_run, ""),
        ]
    return decoders.Sequence(steps)


def build_spiritlm_tokenizer(
    text_vocab: Mapping[str, int],
    merges: Sequence[tuple[str, str]],
    unit_tokens: Sequence[str],
    units_in_sentencepiece: bool = True,
    legacy: bool = True,
    user_defined_pieces: Sequence[str] = (),
) -> PreTrainedTokenizerBase:
    """
    Builds the SPIRIT LM fast tokenizer from a Llama-style text BPE (`text_vocab` with ids `0..V-1`, `<unk>`, `<s>`,
    `</s>` and the `<0xXX>` byte pieces included, and its `merges`) and the marker / unit tokens, which get ids `V`,
    `V + 1`, ... in the order given (see [`spiritlm_token_strings`]).

    It encodes and decodes (`skip_special_tokens=True`) exactly as transformers 4.x's SentencePiece `LlamaTokenizer`
    (what the official code ran, with `add_bos_token=True`) on files that store the units
    - as user-defined pieces of the SentencePiece model (`units_in_sentencepiece=True`): one dummy-prefix `▁` for the
      whole text, so `"[Text]hello"` is `▁`, `[Text]`, `hello`;
    - or as added tokens in `tokenizer_config.json` (`units_in_sentencepiece=False`): with `legacy=True` every chunk
      between units gets its own dummy prefix (`[Text]`, `▁hello`); with `legacy=False` it encodes as above.
    `legacy` is the `tokenizer_config.json` setting (absent means True in transformers 4.x).
    `user_defined_pieces` are text pieces (in `text_vocab`) that SentencePiece matches whole wherever they occur, as it
    does user-defined pieces such as the padding or reserved pieces of some Llama derivatives.

    The text between units is normalized as SentencePiece does (`▁` prefix, spaces to `▁`), units are split off
    whole, and the rest is byte-fallback BPE. With one dummy prefix for the whole text, the BPE emits any chunk that
    is exactly a vocabulary entry whole (that is how units come out whole); SentencePiece does the same for every
    piece it can reach by merges, which the converter checks piece by piece. The unknown token `<unk>` doubles as the
    padding token.

    The result is a `TokenizersBackend` and saves as such: reload it with `AutoTokenizer`, not `LlamaTokenizer`, which
    would replace this normalization with its own.
    """
    text_vocab_size = len(text_vocab)
    if sorted(text_vocab.values()) != list(range(text_vocab_size)):
        raise ValueError(f"text_vocab ids must be exactly 0..{text_vocab_size - 1}")
    missing = [token for token in LLAMA_SPECIAL_TOKENS if token not in text_vocab]
    if missing:
        raise ValueError(f"text_vocab lacks the Llama special tokens {missing}")
    malformed = [token for token in unit_tokens if not re.fullmatch(r"\[\w+\]", token) or token in text_vocab]
    if malformed:
        raise ValueError(f"unit tokens must look like '[Name]' and not be text pieces; got {malformed[:5]}")
    unknown = [piece for piece in user_defined_pieces if piece not in text_vocab]
    if unknown:
        raise ValueError(f"user_defined_pieces must be text pieces; got {unknown[:5]}")
    # One dummy prefix for the whole text (units inside the text model) or one per chunk (units as added tokens).
    whole_text_prefix = units_in_sentencepiece or not legacy
    vocab = dict(text_vocab)
    if whole_text_prefix:
        vocab.update({token: text_vocab_size + index for index, token in enumerate(unit_tokens)})
    # Split off after normalization, like SentencePiece's own matching of user-defined pieces.
    isolated = [*(unit_tokens if whole_text_prefix else ()), *user_defined_pieces]
    # ignore_merges lets the BPE emit a unit (a vocabulary entry no merge builds) whole, as SentencePiece does.
    backend = Tokenizer(
        BPE(
            vocab=vocab,
            merges=list(merges),
            unk_token="<unk>",
            fuse_unk=True,
            byte_fallback=True,
            ignore_merges=bool(isolated),
        )
    )
    backend.normalizer = normalizers.Sequence(
        [normalizers.Prepend(SPIECE_UNDERLINE), normalizers.Replace(" ", SPIECE_UNDERLINE)]
    )
    if isolated:
        backend.pre_tokenizer = pre_tokenizers.Split(Regex(_alternation(isolated)), behavior="isolated")
    backend.decoder = _official_decoder(unit_tokens, 2 if legacy else 1, join_units=not units_in_sentencepiece)
    backend.add_special_tokens([AddedToken(token, normalized=False, special=True) for token in LLAMA_SPECIAL_TOKENS])
    if not whole_text_prefix:
        # Matched on the raw text, so each chunk between them is normalized (and prefixed) on its own.
        backend.add_tokens([AddedToken(token, normalized=False, special=False) for token in unit_tokens])
    return TokenizersBackend(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<unk>",
        add_bos_token=True,
        add_eos_token=False,
        clean_up_tokenization_spaces=False,
        padding_side="left",
    )


def decode_bytes_like_sentencepiece(data: bytes) -> str:
    """
    `data` decoded as SentencePiece decodes a run of byte-fallback pieces (`<0xE9>`...): valid UTF-8 characters as
    they are, and one U+FFFD per byte that does not start a valid character (the decoding restarts at the next byte).

    tokenizers' `ByteFallback` decoder instead turns every byte of an invalid run into U+FFFD, valid ones included,
    and Python's `errors="replace"` replaces a truncated sequence with one U+FFFD.
    """
    characters, position = [], 0
    while position < len(data):
        lead = data[position]
        length = (
            1
            if lead < 0x80
            else 2
            if lead >> 5 == 0b110
            else 3
            if lead >> 4 == 0b1110
            else 4
            if lead >> 3 == 0b11110
            else 0
        )
        chunk = data[position : position + length]
        try:
            # Python's strict decoder rejects what SentencePiece rejects: stray or missing continuation bytes,
            # overlong forms, surrogates and code points past U+10FFFF.
            character = chunk.decode("utf-8") if length and len(chunk) == length else None
        except UnicodeDecodeError:
            character = None
        characters.append("\ufffd" if character is None else character)
        position += length if character is not None else 1
    return "".join(characters)


def sentencepiece_byte_runs(ids: Sequence[int], byte_ids: Mapping[int, int], byte_tokens: Sequence[int]) -> list[int]:
    """
    `ids` with every run of byte-fallback ids that is not valid UTF-8 replaced by the byte ids of its SentencePiece
    decoding ([`decode_bytes_like_sentencepiece`]), so that the tokenizers decoder then gives the same text as the
    official SentencePiece tokenizer. `byte_ids` maps a byte token id to its byte value, `byte_tokens[value]` is the
    id of `<0xVALUE>`.
    """
    output, run = [], []
    for token in [*ids, None]:
        if token is not None and token in byte_ids:
            run.append(byte_ids[token])
            continue
        if run:
            data = bytes(run)
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                data = decode_bytes_like_sentencepiece(data).encode("utf-8")
            output.extend(byte_tokens[value] for value in data)
            run = []
        if token is not None:
            output.append(token)
    return output


__all__ = [
    "LLAMA_SPECIAL_TOKENS",
    "SPEECH_MARKER",
    "TEXT_MARKER",
    "add_spiritlm_tokens",
    "build_spiritlm_tokenizer",
    "check_spiritlm_token_layout",
    "decode_bytes_like_sentencepiece",
    "extend_text_tokenizer",
    "spiritlm_token_strings",
]
