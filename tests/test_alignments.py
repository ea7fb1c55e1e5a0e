import json
from pathlib import Path

import pytest
import torch

from transformers_spiritlm.alignments import read_ctm, read_textgrid, read_textgrid_tiers
from transformers_spiritlm.data import WordAlignment


FIXTURES = Path(__file__).resolve().parent / "fixtures"
ALIGNMENTS = FIXTURES / "alignments"
# The exact word times of the espeak-ng clips, which the TextGrid and CTM fixtures restate.
EXPECTED = {
    Path(row["audio"]).stem: [WordAlignment(word["word"], word["start"], word["end"]) for word in row["words"]]
    for row in map(json.loads, (FIXTURES / "audio" / "aligned" / "words.jsonl").read_text().splitlines())
}


def test_reads_the_word_tier_of_long_and_short_format_textgrids():
    assert read_textgrid(ALIGNMENTS / "clip_00.TextGrid") == EXPECTED["clip_00"]
    assert read_textgrid(ALIGNMENTS / "clip_01.TextGrid", duration=2.639) == EXPECTED["clip_01"]
    tiers = read_textgrid_tiers(ALIGNMENTS / "clip_00.TextGrid")
    assert list(tiers) == ["words", "phones"]
    assert tiers["phones"][:3] == [(0.0, 0.1, ""), (0.1, 0.2, "DH"), (0.2, 0.3055, "AH0")]
    assert [word.word for word in read_textgrid(ALIGNMENTS / "clip_00.TextGrid", tier="phones")] == ["DH", "AH0"]


def test_reads_a_utf16_textgrid(tmp_path):
    path = tmp_path / "utf16.TextGrid"
    path.write_bytes((ALIGNMENTS / "clip_00.TextGrid").read_text().encode("utf-16"))
    assert read_textgrid(path) == EXPECTED["clip_00"]


def test_reads_a_ctm_by_utterance():
    alignments = read_ctm(ALIGNMENTS / "words.ctm", duration={"clip_00": 3.5648125, "clip_01": 2.639})
    assert list(alignments) == ["clip_00", "clip_01"]
    for utterance, words in alignments.items():
        assert [word.word for word in words] == [word.word for word in EXPECTED[utterance]]
        # The CTM stores start and duration to 7 decimals.
        torch.testing.assert_close(
            [(word.start, word.end) for word in words],
            [(word.start, word.end) for word in EXPECTED[utterance]],
            rtol=0,
            atol=2e-7,
        )


def swapped(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "xmin = 0.3655\n",
            "xmin = 0.33\n",
            r"tier 'words', interval #4 \('quick', 0.33 to 0.692125 s\) overlaps interval #3 \('', 0.3055 to 0.3655 s\); "
            "intervals must be sorted by time and must not overlap",
        ),
        (
            "xmin = 0.3655\n            xmax = 0.692125\n",
            "xmin = 0.05\n            xmax = 0.08\n",
            r"interval #4 \('quick', 0.05 to 0.08 s\) starts before interval #3",
        ),
        (
            'xmax = 3.5648125\n            text = ""',
            'xmax = 3.9\n            text = ""',
            r"interval #19 \('', 3.4648125 to 3.9 s\) lies outside the TextGrid's time range 0.0 to 3.5648125 s",
        ),
        (
            'name = "words"',
            'name = "sentences"',
            r"has no interval tier 'words'; its interval tiers are \['sentences', 'phones'\]",
        ),
        (
            "intervals: size = 19",
            "intervals: size = 20",
            'bad.TextGrid: not a TextGrid: expected a number, found "IntervalTier"',
        ),
    ],
)
def test_bad_textgrids_are_clear_errors(tmp_path, old, new, message):
    path = tmp_path / "bad.TextGrid"
    path.write_text(swapped((ALIGNMENTS / "clip_00.TextGrid").read_text(), old, new))
    with pytest.raises(ValueError, match=message):
        read_textgrid(path)


def test_textgrid_words_past_the_audio_end_and_other_files_are_errors(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"clip_00.TextGrid, tier 'words': word #7 'lazy' ends at 3.1023125 s but the speech is only 3.00 s long",
    ):
        read_textgrid(ALIGNMENTS / "clip_00.TextGrid", duration=3.0)
    with pytest.raises(FileNotFoundError, match="TextGrid file .*missing.TextGrid not found"):
        read_textgrid(tmp_path / "missing.TextGrid")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="notes.txt: not a complete TextGrid"):
        read_textgrid(tmp_path / "notes.txt")
    (tmp_path / "words.txt").write_text('"ooTextFile" "Sound" 0 1')
    with pytest.raises(
        ValueError, match='not a TextGrid: it must start with File type = "ooTextFile", Object class = "TextGrid"'
    ):
        read_textgrid(tmp_path / "words.txt")


@pytest.mark.parametrize(
    "lines, message",
    [
        (
            ["a 1 0.0 0.5 hi", "a 1 0.4 0.5 there"],
            r"utterance 'a': word #1 'there' starts at 0.4 s, before word #0 'hi' ends at 0.5 s",
        ),
        (
            ["a 1 1.0 0.5 hi", "a 1 0.0 0.5 there"],
            r"utterance 'a': word #1 'there' starts at 0.0 s, before word #0 'hi'",
        ),
        (
            ["a 1 0.0 0.5 hi", "b 1 0.0 9.0 long"],
            r"utterance 'b': word #0 'long' ends at 9.0 s but the speech is only 2.00 s long",
        ),
        (["a 1 0.0 0.5"], r"line 1: 'a 1 0.0 0.5' has 4 fields; a CTM line is"),
        (["a 1 zero 0.5 hi"], r"line 1: start 'zero' and duration '0.5' must be seconds"),
        (["a 1 0.0 0 hi"], r"line 1: word 'hi' has duration 0.0 s; it must be positive"),
        ([";; nothing"], "holds no words"),
    ],
)
def test_bad_ctms_are_clear_errors(tmp_path, lines, message):
    path = tmp_path / "bad.ctm"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=message):
        read_ctm(path, duration=2.0)
