"""Configurations of the SPIRIT LM components: language model, speech tokenizer and vocoder."""

from huggingface_hub.dataclasses import strict
from transformers import LlamaConfig


VARIANTS = ("base", "expressive")


@strict
class SpiritLMConfig(LlamaConfig):
    r"""
    Configuration of [`SpiritLMForCausalLM`]: a Llama-2 decoder whose vocabulary is the text vocabulary followed by
    the modality markers and the speech units.

    The token id layout is derived from `text_vocab_size` (V) and the unit counts, never stored twice:
    `[Text]` = V, `[Speech]` = V + 1, `[HuN]` = V + 2 + N, then `[PiN]` and `[StN]` (expressive only) follow.
    With V = 32000 this is the official layout: 32000, 32001, 32002 + N, 32503 + N, 32567 + N.

    variant (`str`, defaults to `"base"`):
        `"base"` (HuBERT units only) or `"expressive"` (HuBERT, pitch and style units).
    text_vocab_size (`int`, defaults to 32000):
        Size of the SentencePiece text vocabulary.
    num_hubert_units (`int`, defaults to 501):
        Number of HuBERT unit tokens `[Hu0]`..`[Hu{n-1}]`.
    num_pitch_units (`int`, defaults to 64):
        Number of pitch unit tokens `[Pi0]`..`[Pi{n-1}]`.
    num_style_units (`int`, defaults to 100):
        Number of style unit tokens `[St0]`..`[St{n-1}]`.

    ```python
    >>> from transformers_spiritlm import SpiritLMConfig
    >>> config = SpiritLMConfig(variant="expressive")
    >>> config.text_token_id, config.speech_token_id, config.hubert_token_offset, config.pitch_token_offset
    (32000, 32001, 32002, 32503)
    ```"""

    model_type = "spiritlm"

    vocab_size: int = 32768
    variant: str = "base"
    text_vocab_size: int = 32000
    num_hubert_units: int = 501
    num_pitch_units: int = 64
    num_style_units: int = 100

    @property
    def text_token_id(self) -> int:
        """Id of the `[Text]` marker."""
        return self.text_vocab_size

    @property
    def speech_token_id(self) -> int:
        """Id of the `[Speech]` marker."""
        return self.text_vocab_size + 1

    @property
    def hubert_token_offset(self) -> int:
        """Id of `[Hu0]`."""
        return self.text_vocab_size + 2

    @property
    def pitch_token_offset(self) -> int:
        """Id of `[Pi0]`."""
        return self.hubert_token_offset + self.num_hubert_units

    @property
    def style_token_offset(self) -> int:
        """Id of `[St0]`."""
        return self.pitch_token_offset + self.num_pitch_units

    @property
    def num_spiritlm_tokens(self) -> int:
        """Number of token ids the layout uses (text vocabulary, markers and units, pitch and style included)."""
        return self.style_token_offset + self.num_style_units

    @property
    def unit_types(self) -> tuple[str, ...]:
        """Unit streams of this variant: `("hubert",)` or `("hubert", "pitch", "style")`."""
        return ("hubert", "pitch", "style") if self.variant == "expressive" else ("hubert",)

    def validate_architecture(self):
        """Checks the LLaMA shape and that the embedding matrix holds every id of the SPIRIT LM layout."""
        super().validate_architecture()
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; use one of {', '.join(map(repr, VARIANTS))}")
        if self.vocab_size < self.num_spiritlm_tokens:
            raise ValueError(
                f"vocab_size={self.vocab_size} is smaller than the SPIRIT LM token layout, which needs "
                f"{self.num_spiritlm_tokens} ids (text_vocab_size={self.text_vocab_size} + 2 markers + "
                f"{self.num_hubert_units} hubert + {self.num_pitch_units} pitch + {self.num_style_units} style units)"
            )


__all__ = ["SpiritLMConfig"]
