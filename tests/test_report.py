import json
import os
from pathlib import Path

import pytest

from transformers_spiritlm import cli
from transformers_spiritlm.evaluation import error_rates, parse_result_argument, read_published, score_stsp
from transformers_spiritlm.testing.classifiers import build_tiny_asr_model, build_tiny_text_classifier


FIXTURES = Path(__file__).parent / "fixtures"
TASKS = FIXTURES / "few_shot_tasks"
AUDIO = FIXTURES / "stsp" / "audio"
STSP_MANIFEST = FIXTURES / "stsp" / "manifest.jsonl"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_table(path: Path) -> list[dict]:
    """The rows of the report's markdown table, as dicts keyed by its header."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]


@pytest.fixture(scope="module")
def results(tiny_base_repo, tmp_path_factory) -> dict[str, Path]:
    """One result file of each task the report reads, from runs on the tiny BASE model (likelihood files as the
    likelihood tasks write them)."""
    root = tmp_path_factory.mktemp("report")
    common = ["--device", "cpu", "--quiet", "--greedy", "--batch-size", "3"]
    asr = root / "asr.jsonl"
    assert cli.main(["eval", "asr", "--repo", str(tiny_base_repo), "--manifest", str(TASKS / "asr.jsonl"),
                     "--data-root", str(AUDIO), "--max-new-tokens", "6", "-o", str(asr), *common]) == 0  # fmt: skip
    tts = root / "tts-base.jsonl"
    assert cli.main(["eval", "tts", "--repo", str(tiny_base_repo), "--manifest", str(TASKS / "tts.jsonl"),
                     "--asr-model", str(build_tiny_asr_model(root / "asr_model")), "--write-wav", str(root / "wav"),
                     "--max-new-tokens", "30", "-o", str(tts), *common]) == 0  # fmt: skip
    stsp = root / "stsp_pred.jsonl"
    assert cli.main(["eval", "stsp", "--repo", str(tiny_base_repo), "--manifest", str(STSP_MANIFEST),
                     "--input-output", "text_text", "--text-classifier",
                     str(build_tiny_text_classifier(root / "classifier")), "--max-new-tokens", "6", "-o", str(stsp),
                     *common]) == 0  # fmt: skip
    swuggy = write_jsonl(root / "lexical.jsonl", [
        {"id": "a", "score_correct": -3.0, "score_wrong": -4.0, "correct": 1},
        {"id": "b", "score_correct": -5.0, "score_wrong": -5.0, "correct": 0.5},
        {"id": "c", "score_correct": -6.0, "score_wrong": -2.0, "correct": 0},
        {"id": "d", "score_correct": -1.0, "score_wrong": -2.0, "correct": 1},
    ])  # fmt: skip
    salmon = write_jsonl(root / "salmon.jsonl", [
        {"id": "1", "subset": "gender_consistency", "score_correct": -1.0, "score_wrong": -2.0, "correct": 1},
        {"id": "2", "subset": "gender_consistency", "score_correct": -3.0, "score_wrong": -2.0, "correct": 0},
        {"id": "3", "subset": "rir_consistency", "score_correct": -1.0, "score_wrong": -2.0, "correct": 1},
    ])  # fmt: skip
    return {"asr": asr, "tts": tts, "stsp": stsp, "swuggy": swuggy, "salmon": salmon, "root": root}


def test_report_tables_every_metric_beside_the_published_figures(results, capsys):
    output, plot = results["root"] / "report.md", results["root"] / "report.png"
    arguments = [str(results["asr"]), f"tts:librispeech-test-clean={results['tts']}", str(results["stsp"]),
                 f"swuggy={results['swuggy']}", str(results["salmon"])]  # fmt: skip
    command = ["eval", "report", *arguments, "-o", str(output), "--plot", str(plot)]
    assert cli.main([*command, "--stsp-reference", str(STSP_MANIFEST)]) == 0
    assert f"9 metrics of 5 result files into {output} and {plot}" in capsys.readouterr().err
    table = read_table(output)

    def rate(path: Path, unit: str) -> str:
        records = [json.loads(line) for line in path.read_text().splitlines()]
        value = error_rates([r["ref"] for r in records], [r["hyp"] for r in records], unit=unit)["rate"]
        return f"{100 * value:.2f}"

    stsp = f"{100 * score_stsp(STSP_MANIFEST, results['stsp'])['accuracy']:.2f}"
    assert [(row["task"], row["subset"], row["metric"], row["this run (%)"], row["items"]) for row in table] == [
        ("asr", "—", "WER", rate(results["asr"], "word"), "3"),
        ("asr", "—", "CER", rate(results["asr"], "char"), "3"),
        ("tts", "librispeech-test-clean", "WER", rate(results["tts"], "word"), "2"),
        ("tts", "librispeech-test-clean", "CER", rate(results["tts"], "char"), "2"),
        ("stsp", "—", "accuracy", stsp, "4"),
        ("swuggy", "—", "accuracy", "62.50", "4"),  # 1 + 0.5 + 0 + 1 of 4
        ("salmon", "—", "accuracy", "66.67", "3"),
        ("salmon", "gender_consistency", "accuracy", "50.00", "2"),
        ("salmon", "rir_consistency", "accuracy", "100.00", "1"),
    ]
    # The committed figures of the paper, each with its table: Table 5 (TTS CER, LibriSpeech test-clean) and Table 4
    # (sWUGGY, speech, token-normalised); no figure for ASR without a subset, the TTS WER, STSP without a direction
    # or SALMon (not in the paper).
    table5 = "arXiv 2402.05755v2, Table 5 (few-shot; 10-shot, LibriSpeech test-clean), CER of Whisper's transcripts"
    table4 = (
        "arXiv 2402.05755v2, Table 4 (zero-shot; accuracy with log-likelihood normalised by the number of tokens, "
        "i.e. --reduction mean), speech"
    )
    assert read_published()[("tts", "librispeech-test-clean", "CER")] == {
        "base": ("45.5", table5),
        "expressive": ("52.0", table5),
    }
    assert [(row["BASE published (%)"], row["EXPRESSIVE published (%)"], row["source"]) for row in table] == [
        ("—", "—", "—"), ("—", "—", "—"), ("—", "—", "—"), ("45.5", "52.0", table5), ("—", "—", "—"),
        ("69.0", "65.0", table4), ("—", "—", "—"), ("—", "—", "—"), ("—", "—", "—"),
    ]  # fmt: skip
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Nothing is overwritten without --force; with it, the same table comes back.
    before = output.read_text()
    assert cli.main([*command, "--stsp-reference", str(STSP_MANIFEST)]) == 2
    assert f"{output} exists; pass --force to overwrite it" in capsys.readouterr().err
    assert cli.main([*command, "--stsp-reference", str(STSP_MANIFEST), "--force"]) == 0
    assert output.read_text() == before


def test_a_published_figure_is_shown_with_its_source(results, tmp_path):
    published = tmp_path / "published.csv"
    published.write_text(
        "task,subset,metric,variant,value,source\n"
        "swuggy,,accuracy,base,12.3,a made-up test figure\n"
        "swuggy,,accuracy,expressive,,\n"
    )
    output = tmp_path / "report.md"
    assert (
        cli.main(["eval", "report", f"swuggy={results['swuggy']}", "-o", str(output), "--published", str(published)])
        == 0
    )
    (row,) = read_table(output)
    assert (row["this run (%)"], row["BASE published (%)"], row["EXPRESSIVE published (%)"], row["source"]) == (
        "62.50", "12.3", "—", "a made-up test figure",
    )  # fmt: skip


def test_bad_results_are_clear_errors(results, tmp_path, capsys):
    assert parse_result_argument("storycloze:tSC=x.jsonl") == ("storycloze", "tSC", Path("x.jsonl"))
    assert parse_result_argument("out/sblimp-base.jsonl") == ("sblimp", "", Path("out/sblimp-base.jsonl"))
    output = tmp_path / "report.md"
    for argument, message in [
        ("results.jsonl", "cannot tell the task of results.jsonl: give it as TASK=PATH"),
        ("wuggy=x.jsonl", "unknown task 'wuggy' in 'wuggy=x.jsonl'; use one of asr, tts, swuggy"),
        (str(results["stsp"]), f"{results['stsp']}: STSP predictions are scored against their manifest"),
        (f"asr={results['swuggy']}", "line 1: a transcript record needs 'id', 'hyp' and 'ref'"),
        (f"sblimp={results['asr']}", "line 1: 'correct' must be 1, 0.5 or 0, got None"),
        (f"asr={tmp_path / 'gone.jsonl'}", f"results {tmp_path / 'gone.jsonl'} does not exist"),
    ]:
        assert cli.main(["eval", "report", argument, "-o", str(output)]) == 2
        assert message in capsys.readouterr().err
    assert not output.exists()
    assert (
        cli.main(
            ["eval", "report", f"swuggy={results['swuggy']}", "-o", str(output), "--plot", str(tmp_path / "r.xyz")]
        )
        == 2
    )
    assert "Format 'xyz' is not supported" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []
    assert cli.main(["eval", "report", f"swuggy={results['swuggy']}", "-o", str(results["swuggy"]), "--force"]) == 2
    assert "the report would overwrite one of its result files" in capsys.readouterr().err
