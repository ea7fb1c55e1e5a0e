import json
import random
from pathlib import Path

import pytest

from transformers_spiritlm import string_to_units, units_to_string
from transformers_spiritlm.units import (
    MOST_COMMON_STYLES,
    UnitStringReader,
    UnitStringToken,
    UnitStringTokenizer,
    tokenize,
)


OFFICIAL = json.loads((Path(__file__).parent / "fixtures" / "units" / "official_units.json").read_text())


@pytest.mark.parametrize("case", OFFICIAL["units_to_string"], ids=lambda case: case["output"][:30] or "empty")
def test_units_to_string_matches_official(case):
    out = units_to_string(case["units"], has_pitch=case["has_pitch"], has_style=case["has_style"])
    assert out == case["output"]


def test_units_to_string_issue_example_and_int_lists():
    units = {"hubert": [78, 42, 81, 159, 316, 259], "pitch": [13, 13, 13, 13, 13, 3], "style": [81] * 6}
    expected = "[St81][Pi13][Hu78][Hu42][Hu81][Hu159][Hu316][Hu259][Pi3][St81][St81][St81][St81][St81]"
    assert units_to_string(units) == expected
    # Streams are included when present (None), or as the flags say.
    assert units_to_string(units, has_pitch=False, has_style=False) == "[Hu78][Hu42][Hu81][Hu159][Hu316][Hu259]"


def test_units_to_string_requires_hubert():
    with pytest.raises(ValueError, match="'hubert' stream"):
        units_to_string({"pitch": [1, 2]})


@pytest.mark.parametrize(
    "case", OFFICIAL["string_to_units"], ids=lambda case: f"{case['string'][:25]}-dup{int(case['duplicate'])}"
)
def test_string_to_units_matches_official(case):
    out = string_to_units(case["string"], duplicate_hubert_for_multiple_pitch=case["duplicate"], generator=0)
    assert out == case["output"]


@pytest.mark.parametrize("case", OFFICIAL["string_to_units_random_style"], ids=lambda c: f"{c['string']}-{c['seed']}")
def test_missing_style_choice_is_seedable_like_official(case):
    # The official code seeds nothing and uses the global `random`; a Random(seed) draws the same choice.
    assert string_to_units(case["string"], generator=random.Random(case["seed"])) == case["output"]
    assert string_to_units(case["string"], generator=case["seed"]) == case["output"]


def test_round_trip_of_units_without_repeats():
    string = "[Hu1][Hu2][Hu30][Hu500][Hu0]"
    assert units_to_string(string_to_units(string)) == string
    assert string_to_units(units_to_string({"hubert": [1, 2, 30, 500, 0]})) == {"hubert": "1 2 30 500 0"}


def test_string_to_units_expands_pitch_and_style_per_hubert_unit():
    parsed = string_to_units("[St4][Pi1][Hu5][Hu6][Pi2][Hu7][St9][Hu8]")
    assert parsed == {"hubert": "5 6 7 8", "pitch": "1 1 2 2", "style": "4 4 4 9"}


@pytest.mark.parametrize(
    "string, message",
    [
        ("[Hu999]", r"'\[Hu999\]' at character 0 is out of range: hubert units go from 0 to 500"),
        ("[Hu1][Pi64]", r"'\[Pi64\]' at character 5 is out of range: pitch units go from 0 to 63"),
        ("[Hu1][Hu", r"malformed unit string at character 5: '\[Hu'"),
        ("[Xx3]", r"malformed unit string at character 0: '\[Xx3\]'"),
        ("[Hu1]hello", r"malformed unit string at character 5: 'hello'"),
    ],
)
def test_strict_mode_rejects_malformed_strings(string, message):
    with pytest.raises(ValueError, match=message):
        string_to_units(string, strict=True)
    string_to_units(string)  # lenient mode, like the official parser, does not raise


def test_strict_mode_uses_given_unit_counts():
    assert string_to_units("[Hu7][Pi2]", strict=True, num_units={"hubert": 8}, generator=0)["hubert"] == "7"
    with pytest.raises(ValueError, match="hubert units go from 0 to 6"):
        string_to_units("[Hu7]", strict=True, num_units={"hubert": 7})


def test_string_to_units_rejects_non_strings():
    with pytest.raises(TypeError, match="expects a str, got list"):
        string_to_units(["[Hu1]"])


def text(string: str) -> UnitStringToken:
    return UnitStringToken("text", string)


def marker(string: str) -> UnitStringToken:
    return UnitStringToken("marker", string)


def unit(string: str, stream: str | None) -> UnitStringToken:
    return UnitStringToken("unit", string, stream)


def test_tokenize_splits_markers_units_and_text():
    assert tokenize("Hi[Speech][St3][Pi1][Hu5] there[Text]ok[") == [
        text("Hi"),
        marker("[Speech]"),
        unit("[St3]", "style"),
        unit("[Pi1]", "pitch"),
        unit("[Hu5]", "hubert"),
        text(" there"),
        marker("[Text]"),
        text("ok"),
        text("["),
    ]
    # A "[" that opens neither a marker nor a unit is text up to the next "["; "]" alone is text.
    assert tokenize("a[Pizza]b[Tex]t[[Hu1]]") == [
        text("a"),
        unit("[Pizza]", "pitch"),
        text("b"),
        text("[Tex]t"),
        text("["),
        unit("[Hu1]", "hubert"),
        text("]"),
    ]


def test_unclosed_unit_reads_on_to_the_next_closing_bracket():
    # The official parser reads "[Hu1" on to the next "]": "[Text]" is then speech, not a marker; "[Hu2]" is a unit.
    assert tokenize("[Hu1[Text]y[Hu1[Hu2]z") == [
        unit("[Hu1", "hubert"),
        unit("[Text]", None),
        text("y"),
        unit("[Hu1", "hubert"),
        unit("[Hu2]", "hubert"),
        text("z"),
    ]
    assert tokenize("x[Hu12") == [text("x"), unit("[Hu12", "hubert")]


def test_tokenizer_holds_back_what_more_characters_can_change():
    tokenizer = UnitStringTokenizer()
    assert tokenizer.push("abc[Hu1") == [text("abc")]
    assert tokenizer.pending == "[Hu1"
    assert tokenizer.push("2][") == [unit("[Hu12]", "hubert")]
    assert tokenizer.pending == "["
    assert tokenizer.push("Te") == []  # "[Te" may become "[Text]"
    assert tokenizer.push("xt") == []
    assert tokenizer.push("]hel") == [marker("[Text]"), text("hel")]
    assert tokenizer.push("lo [S") == [text("lo ")]  # "[S" may open "[Speech]" or "[St"
    assert tokenizer.push("ky") == [text("[Sky")]
    assert tokenizer.push("[Hu3") == []
    assert tokenizer.flush() == [unit("[Hu3", "hubert")]  # the end of the string closes it
    assert tokenizer.pending == ""
    tokenizer.push("[Te")
    assert tokenizer.flush() == [text("[Te")]


def test_tokenizer_passes_byte_fallback_text_through():
    # What byte-fallback tokens decode to: a multi-byte character, or U+FFFD for an invalid byte run.
    tokenizer = UnitStringTokenizer()
    assert tokenizer.push("caf\u00e9 \ufffd\ufffd") == [text("caf\u00e9 \ufffd\ufffd")]
    assert tokenizer.push("[\ufffd") == [text("[\ufffd")]
    assert tokenizer.push("]\u00e9[Hu7]") == [text("]\u00e9"), unit("[Hu7]", "hubert")]


def test_unit_of_a_token():
    assert [token.unit for token in tokenize("[Hu12][Pi0][St99][Hu][Hu 3][Hu4")] == [12, 0, 99, None, None, None]
    assert tokenize("[Text]")[0].unit is None


def test_reader_gives_rows_as_units_arrive():
    reader = UnitStringReader()
    reader.push("[Hu5][Hu6][P")
    assert (reader.hubert, reader.pitch, reader.style, reader.ends) == (
        ["5", "6"],
        [None, None],
        [None, None],
        [5, 10],
    )
    reader.push("i1][St4][Hu7][Pi2][St8]")
    # The first pitch (style) unit goes to the rows before it; a row takes the last pitch and style before it.
    assert (reader.hubert, reader.pitch, reader.style, reader.ends) == (
        ["5", "6", "7"],
        ["1", "1", "1"],
        ["4", "4", "4"],
        [5, 10, 25],
    )
    assert reader.last == {"hubert": "7", "pitch": "2", "style": "8"}


def test_reader_reads_like_the_official_parser():
    reader = UnitStringReader()
    reader.push("Hu3x[Hu12]")
    assert reader.hubert == ["3", "12"]  # the string's first piece counts, as if it followed a "["
    reader.push("a")
    assert reader.hubert == ["3", "12]"]  # text after a unit: the value runs on to the next "["
    reader.push("b[Hu4[")
    assert reader.hubert == ["3", "12]a", ""]  # an unclosed "[Hu4": its last character is dropped
    reader.flush()
    assert reader.hubert == ["3", "12]a", ""]


def test_reader_converts_values_and_picks_the_missing_style():
    reader = UnitStringReader(convert=lambda stream, value: (stream, int(value)))
    reader.push("[Hu1][Pi2][Hu3]")
    reader.flush()
    reader.choose_missing_style(random.Random(7))
    style = random.Random(7).choice(MOST_COMMON_STYLES)
    assert reader.hubert == [("hubert", 1), ("hubert", 3)]
    assert reader.style == [("style", style), ("style", style)]


def test_units_to_string_offsets_place_a_span_in_its_utterance():
    # Hubert units 25 and 26 sit at 1.0 s and 1.04 s, pitch unit 12 at 0.96 s and 13 at 1.04 s, style unit 1 at 1 s:
    # style first at equal time, then pitch.
    span = {"hubert": [7, 8], "pitch": [3, 4], "style": [9]}
    offsets = {"hubert": 25, "pitch": 12, "style": 1}
    assert units_to_string(span, offsets=offsets) == "[Pi3][St9][Hu7][Pi4][Hu8]"
    assert units_to_string(span) == "[St9][Pi3][Hu7][Hu8][Pi4]"
