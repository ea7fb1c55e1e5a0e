"""The SPIRIT LM modalities, once: their names, their marker tokens and their token ids."""

TEXT = "text"
SPEECH = "speech"
ARBITRARY = "arbitrary"
# The `"type"` of a segment; also the modality of a training span. The order is fixed: seeded code indexes it.
SEGMENT_TYPES = (TEXT, SPEECH)
# What generation may be asked for: one modality, or any mix of them.
OUTPUT_MODALITIES = (TEXT, SPEECH, ARBITRARY)
TEXT_MARKER = "[Text]"
SPEECH_MARKER = "[Speech]"
# The token that opens each modality in a SPIRIT LM string.
MARKERS = {TEXT: TEXT_MARKER, SPEECH: SPEECH_MARKER}


def check_output_modality(output_modality: str) -> str:
    """Returns `output_modality` lower-cased (`"TEXT"` works like `"text"`, as in the official code), or raises a
    `ValueError` naming the allowed values."""
    if isinstance(output_modality, str) and output_modality.lower() in OUTPUT_MODALITIES:
        return output_modality.lower()
    raise ValueError(
        f"unknown output_modality {output_modality!r}; use one of {', '.join(map(repr, OUTPUT_MODALITIES))}"
    )


def modality_token_ranges(text_vocab_size: int, num_unit_tokens: int) -> dict[str, range]:
    """
    The token ids of each modality in the SPIRIT LM layout, its marker included: `"text"` is the text vocabulary and
    `[Text]` (`0` to `text_vocab_size`), `"speech"` is `[Speech]` and the `num_unit_tokens` unit tokens after it.

    ```python
    >>> modality_token_ranges(32000, 501)
    {'text': range(0, 32001), 'speech': range(32001, 32503)}
    ```
    """
    speech_marker = text_vocab_size + 1
    return {TEXT: range(0, speech_marker), SPEECH: range(speech_marker, speech_marker + 1 + num_unit_tokens)}


__all__ = [
    "ARBITRARY",
    "MARKERS",
    "OUTPUT_MODALITIES",
    "SEGMENT_TYPES",
    "SPEECH",
    "SPEECH_MARKER",
    "TEXT",
    "TEXT_MARKER",
    "check_output_modality",
    "modality_token_ranges",
]
