"""The SPIRIT LM modalities, once: their names, the segments and stream chunks that carry them, their marker tokens
and their token ids."""

from typing import Any, Literal, TypedDict


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


class TextSegment(TypedDict):
    """Text in a prompt or an output: `{"type": "text", "text": str}`. As a stream chunk, `text` is a delta."""

    type: Literal["text"]
    text: str


class _SpeechType(TypedDict):
    type: Literal["speech"]


class SpeechSegment(_SpeechType, total=False):
    """
    Speech in a prompt or an output: `{"type": "speech", ...}`.

    - in a prompt: `audio` (a path, 1-D or (channels, samples) array / tensor, or a `datasets` Audio dict) and an
      optional `sampling_rate`, or `units`, a unit string such as `"[St71][Pi39][Hu99]"`;
    - in an output or a stream chunk: `audio` (float32 numpy array), `sampling_rate` (16000) and `units`, the unit
      tokens the audio comes from; `units` alone where there is no audio (no vocoder, or streamed speech that the
      official rules drop).
    """

    audio: Any
    sampling_rate: int
    units: str


Segment = TextSegment | SpeechSegment
# An item of a stream: a text delta or a piece of speech; consecutive chunks of one segment join into it.
StreamChunk = TextSegment | SpeechSegment


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
    "Segment",
    "SpeechSegment",
    "StreamChunk",
    "TextSegment",
    "check_output_modality",
    "modality_token_ranges",
]
