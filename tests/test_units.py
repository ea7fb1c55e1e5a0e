import json
import random
from pathlib import Path

import pytest

from transformers_spiritlm import string_to_units, units_to_string


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
