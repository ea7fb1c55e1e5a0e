import json
from pathlib import Path

import jiwer
import pytest

from transformers_spiritlm import cli
from transformers_spiritlm.evaluation import error_rates, normalize_transcript, score_transcripts


REFERENCES = ["The cat sat on the mat.", "Don't STOP — it's 3 o’clock!", "well-known   facts", "a b c d"]
HYPOTHESES = ["the cat sat on mat", "dont stop its three o'clock", "well known facts here", ""]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_normalisation_of_case_punctuation_and_whitespace():
    assert normalize_transcript("  Hello,   WORLD!  It’s well-known. ") == "hello world it's well known"
    assert normalize_transcript("Don't STOP — it's 3 o’clock!") == "don't stop it's 3 o'clock"
    assert normalize_transcript("'quoted' (words) [here]; a/b") == "quoted words here a b"
    assert normalize_transcript("Straße ＡＢＣ\tx\ny") == "strasse abc x y"  # NFKC, casefold, any whitespace
    assert normalize_transcript("...!?") == ""


@pytest.mark.parametrize("unit", ["word", "char"])
def test_error_rates_equal_jiwer_on_the_normalised_strings(unit):
    result = error_rates(REFERENCES, HYPOTHESES, ids=["a", "b", "c", "d"], unit=unit)
    references = [normalize_transcript(text) for text in REFERENCES]
    hypotheses = [normalize_transcript(text) for text in HYPOTHESES]
    measure = jiwer.wer if unit == "word" else jiwer.cer
    assert result["rate"] == pytest.approx(measure(references, hypotheses), abs=1e-12)
    for item, reference, hypothesis in zip(result["items"], references, hypotheses):
        assert item["rate"] == pytest.approx(measure(reference, hypothesis), abs=1e-12)
    assert [item["id"] for item in result["items"]] == ["a", "b", "c", "d"]
    if unit == "word":
        # the mat / on mat: 1 deletion; don't/dont, it's/its, 3/three: 3 substitutions; "here": 1 insertion; 4 gone.
        assert [(item["errors"], item["length"]) for item in result["items"]] == [(1, 6), (3, 5), (1, 3), (4, 4)]
        assert (result["substitutions"], result["deletions"], result["insertions"]) == (3, 5, 1)
        assert result["rate"] == 9 / 18


def test_bad_transcripts_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="item '1': the reference is empty after normalisation"):
        error_rates(["a b", "?!"], ["a b", "c"])
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        error_rates(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="unknown unit 'phone'; use 'word' or 'char'"):
        error_rates(["a"], ["a"], unit="phone")
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"id": 1, "text": "a b"}, {"id": 2, "wav_path": "x.wav"}])
    pred = write_jsonl(tmp_path / "pred.jsonl", [{"id": "1", "hyp": "a"}, {"id": 2, "hyp": "b"}])
    with pytest.raises(ValueError, match=r"ref.jsonl, line 2: no 'text' transcript \(a string\)"):
        score_transcripts(ref, pred)
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "1", "hyp": "a"}, {"id": 2, "hyp": None}])
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"id": 1, "text": "a b"}, {"id": 2, "text": "c"}])
    with pytest.raises(ValueError, match=r"bad.jsonl, line 2: 'hyp' is not a string"):
        score_transcripts(ref, bad)


def test_eval_wer_prints_corpus_and_per_item_rates_and_refuses_id_mismatches(tmp_path, capsys):
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"id": f"u{n}", "text": text} for n, text in enumerate(REFERENCES)])
    pred = write_jsonl(tmp_path / "pred.jsonl", [
        {"id": f"u{n}", "hyp": text, "ref": "ignored"} for n, text in reversed(list(enumerate(HYPOTHESES)))
    ])  # fmt: skip
    assert cli.main(["eval", "wer", "--ref", str(ref), "--pred", str(pred), "--per-item"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "u0\t16.67%\t1 of 6",
        "u1\t60.00%\t3 of 5",
        "u2\t33.33%\t1 of 3",
        "u3\t100.00%\t4 of 4",
        "WER: 50.00% (9 errors in 18 reference words: 3 substitutions, 5 deletions, 1 insertions; 4 items)",
    ]
    assert cli.main(["eval", "wer", "--ref", str(ref), "--pred", str(pred), "--cer", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["unit"] == "char" and result["rate"] == pytest.approx(
        jiwer.cer([normalize_transcript(t) for t in REFERENCES], [normalize_transcript(t) for t in HYPOTHESES])
    )
    unknown = write_jsonl(tmp_path / "unknown.jsonl", [{"id": "u0", "hyp": "x"}, {"id": "u9", "hyp": "y"}])
    assert cli.main(["eval", "wer", "--ref", str(ref), "--pred", str(unknown)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spiritlm eval: error: 1 ids of ") and "unknown.jsonl are not in " in err
    assert (
        "'u9' (line 2); 3 ids of " in err and "have no prediction: 'u1' (line 2), 'u2' (line 3), 'u3' (line 4)" in err
    )
    no_hyp = write_jsonl(tmp_path / "no_hyp.jsonl", [{"id": "u0", "pred": "x"}])
    assert cli.main(["eval", "wer", "--ref", str(ref), "--pred", str(no_hyp)]) == 2
    assert (
        "no_hyp.jsonl, line 1: a prediction needs 'id' and 'hyp', got keys ['id', 'pred']" in capsys.readouterr().err
    )
