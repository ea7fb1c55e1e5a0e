"""The SPIRIT LM text + unit tokenizer: a Llama fast tokenizer with the modality markers and unit tokens added
at the ids of the SPIRIT LM layout (see [`SpiritLMConfig`])."""

from tokenizers import AddedToken
from transformers import PreTrainedTokenizerBase

from .configuration_spiritlm import SpiritLMConfig


TEXT_MARKER = "[Text]"
SPEECH_MARKER = "[Speech]"


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


__all__ = ["TEXT_MARKER", "SPEECH_MARKER", "add_spiritlm_tokens", "check_spiritlm_token_layout", "spiritlm_token_strings"]
