"""`spiritlm eval asr` and `eval tts` against the official `Spiritlm.generate` (greedy) on the official few-shot layout,
recorded by tests/fixtures/few_shot_tasks/record_few_shot_tasks.py on the BASE checkpoint tree of
tests/fixtures/end_to_end (our official-format writers, seed 0), which this module converts; sharding and resuming on
the session's tiny BASE repo."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jiwer
import official_lm
import pytest
from official_hubert import write_official_hubert_checkpoints
from official_vocoder import write_official_vocoders

from transformers_spiritlm import cli
from transformers_spiritlm.conversion.convert_spiritlm_to_hf import convert_spiritlm_to_hf
from transformers_spiritlm.evaluation import (
    few_shot_prefix,
    first_line,
    normalize_transcript,
    read_few_shot_rows,
    read_manifest,
    select_few_shot_rows,
)
from transformers_spiritlm.testing.classifiers import build_tiny_asr_model, build_tiny_text_classifier
from transformers_spiritlm.testing.processes import run_until_killed


FIXTURES = Path(__file__).parent / "fixtures"
TASKS = FIXTURES / "few_shot_tasks"
AUDIO = FIXTURES / "stsp" / "audio"
RECORDED = json.loads((TASKS / "official_few_shot_tasks.json").read_text(encoding="utf-8"))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def official_repo(tmp_path_factory) -> Path:
    """The BASE repo converted from the recording's checkpoint tree (the LM in float32)."""
    checkpoints = tmp_path_factory.mktemp("official-few-shot")
    write_official_hubert_checkpoints(checkpoints, seed=0)
    write_official_vocoders(checkpoints, seed=0)
    official_lm.write_official_lm(
        checkpoints,
        "base",
        seed=0,
        sentencepiece_model=(FIXTURES / "tokenizer" / "text_sentencepiece.model").read_bytes(),
        vocab_size=official_lm.TINY_TEXT_VOCAB_SIZE + len(official_lm.official_unit_tokens("base")),
    )
    output = tmp_path_factory.mktemp("converted-few-shot") / "base"
    return convert_spiritlm_to_hf(checkpoints, "base", output, dtype="float32", log=lambda message: None)


@pytest.fixture(scope="module")
def asr_model(tmp_path_factory) -> Path:
    return build_tiny_asr_model(tmp_path_factory.mktemp("asr-model"))


def asr_command(repo: Path, output: Path, *extra: str, manifest: Path = TASKS / "asr.jsonl") -> list[str]:
    return ["eval", "asr", "--repo", str(repo), "--manifest", str(manifest), "--data-root", str(AUDIO),
            "--few-shot-manifest", str(TASKS / "few_shot.jsonl"), "--shots", "2", "-o", str(output),
            "--device", "cpu", "--quiet", *extra]  # fmt: skip


def tts_command(repo: Path, asr_model: Path, output: Path, *extra: str) -> list[str]:
    return ["eval", "tts", "--repo", str(repo), "--manifest", str(TASKS / "tts.jsonl"), "--asr-model", str(asr_model),
            "--write-wav", str(output.parent / "wav"), "--few-shot-manifest", str(TASKS / "few_shot.jsonl"),
            "--few-shot-data-root", str(AUDIO), "--shots", "2", "-o", str(output), "--device", "cpu", "--quiet",
            *extra]  # fmt: skip


def test_our_few_shot_prompts_are_the_official_ones(official_repo):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(official_repo)
    examples = read_few_shot_rows(TASKS / "few_shot.jsonl", RECORDED["shots"], AUDIO)
    asr_rows = read_manifest(TASKS / "asr.jsonl", ("wav_path", "text"), AUDIO)
    prefix = few_shot_prefix(processor, examples, "speech_text")
    queries = processor.build_prompts([[{"type": "speech", "audio": row["_audio"]}] for row in asr_rows], "text")
    assert [prefix + query for query in queries] == [run["prompt"] for run in RECORDED["tasks"]["asr"]["queries"]]
    prefix = few_shot_prefix(processor, examples, "text_speech")
    tts_rows = read_manifest(TASKS / "tts.jsonl", ("text",))
    queries = processor.build_prompts([[{"type": "text", "text": row["text"]}] for row in tts_rows], "speech")
    assert [prefix + query for query in queries] == [run["prompt"] for run in RECORDED["tasks"]["tts"]["queries"]]


@pytest.mark.parametrize("batch_size", ["1", "3"])
def test_greedy_asr_equals_the_official_generate(official_repo, batch_size, tmp_path, capsys):
    recorded = RECORDED["tasks"]["asr"]
    output = tmp_path / "asr.jsonl"
    command = asr_command(official_repo, output, "--greedy", "--max-new-tokens", str(recorded["max_new_tokens"]),
                          "--batch-size", batch_size)  # fmt: skip
    assert cli.main([arg for arg in command if arg != "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"transcribed 3 items into {output}" in err and "ASR: 100%" in err and "3/3" in err  # the progress bar
    references = {row["id"]: row["text"] for row in read_records(TASKS / "asr.jsonl")}
    expected = [
        {"id": run["id"], "hyp": first_line(run["outputs"][0]), "ref": references[run["id"]]}
        for run in recorded["queries"]
    ]
    assert read_records(output) == expected
    assert all(record["hyp"] for record in expected)
    # Its WER, as `eval wer` prints it, is jiwer's on the normalised strings.
    assert cli.main(["eval", "wer", "--ref", str(TASKS / "asr.jsonl"), "--pred", str(output), "--json"]) == 0
    rate = jiwer.wer(
        [normalize_transcript(r["ref"]) for r in expected], [normalize_transcript(r["hyp"]) for r in expected]
    )
    assert json.loads(capsys.readouterr().out)["rate"] == pytest.approx(rate)


def test_tts_units_equal_the_official_generate_and_are_transcribed(official_repo, asr_model, tmp_path, capsys):
    recorded = RECORDED["tasks"]["tts"]
    output = tmp_path / "tts.jsonl"
    command = tts_command(official_repo, asr_model, output, "--greedy", "--max-new-tokens",
                          str(recorded["max_new_tokens"]), "--batch-size", "2")  # fmt: skip
    assert cli.main(command) == 0
    records = read_records(output)
    assert [record["id"] for record in records] == ["meeting", "morning"]
    assert [[record["units"]] for record in records] == [run["units"] for run in recorded["queries"]]
    assert [record["wav"] for record in records] == [str(tmp_path / "wav" / f"{r['id']}.wav") for r in records]
    assert all(Path(record["wav"]).stat().st_size > 1000 for record in records)
    # The tiny random recognizer writes letters (and <unk>), which `eval wer --cer` scores against the texts.
    assert all(isinstance(record["hyp"], str) and len(record["hyp"]) > 10 for record in records)
    assert [record["ref"] for record in records] == ["The meeting starts at three.", "Good morning, how are you?"]
    capsys.readouterr()
    assert cli.main(["eval", "wer", "--ref", str(TASKS / "tts.jsonl"), "--pred", str(output), "--cer", "--json"]) == 0
    rate = jiwer.cer(
        [normalize_transcript(r["ref"]) for r in records], [normalize_transcript(r["hyp"]) for r in records]
    )
    assert json.loads(capsys.readouterr().out)["rate"] == pytest.approx(rate) and rate > 0


def test_bad_inputs_are_one_clear_error_and_write_nothing(tiny_base_repo, asr_model, tmp_path, capsys):
    classifier = build_tiny_text_classifier(tmp_path / "classifier")
    output = tmp_path / "out" / "tts.jsonl"
    for model, message in [
        (classifier, f"--asr-model {classifier} is a 'roberta' model, not a speech recognition one"),
        (tiny_base_repo, f"--asr-model {tiny_base_repo} is a 'spiritlm' model, not a speech recognition one"),
    ]:
        assert cli.main(tts_command(tiny_base_repo, model, output)) == 2
        assert (
            f"spiritlm eval: error: {message}: give an automatic-speech-recognition model" in capsys.readouterr().err
        )
    assert not (tmp_path / "out").exists()
    no_text = write_jsonl(tmp_path / "no_text.jsonl", [{"id": "a", "text": "hi"}, {"id": "b", "wav_path": "x.wav"}])
    assert cli.main(asr_command(tiny_base_repo, output, manifest=no_text)) == 2
    assert (
        f"spiritlm eval: error: manifest {no_text}, line 1: no 'wav_path' field; every row needs 'id', 'wav_path', "
        "'text'" in capsys.readouterr().err
    )
    command = tts_command(tiny_base_repo, asr_model, output)
    command[command.index("--manifest") + 1] = str(write_jsonl(tmp_path / "ids.jsonl", [{"text": "hi"}]))
    assert cli.main(command) == 2
    assert "ids.jsonl, line 1: no 'id' field; every row needs 'id', 'text'" in capsys.readouterr().err
    missing_clip = write_jsonl(tmp_path / "few.jsonl", [{"id": 1, "wav_path": "gone.wav", "text": "a"}])
    command = asr_command(tiny_base_repo, output)
    command[command.index("--few-shot-manifest") + 1] = str(missing_clip)
    assert cli.main(command) == 2
    assert f"few-shot manifest {missing_clip}, line 1: audio file {AUDIO / 'gone.wav'} does not exist" in (
        capsys.readouterr().err
    )
    command = asr_command(tiny_base_repo, output)
    command[command.index("--shots") + 1] = "4"
    assert cli.main(command) == 2
    assert "cannot take 4 few-shot examples from a manifest of 3 rows" in capsys.readouterr().err
    assert cli.main([arg for arg in asr_command(tiny_base_repo, output) if arg not in ("--shots", "2")]) == 2
    assert "give --shots N (N > 0) together with --few-shot-manifest" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_few_shot_rows_are_the_first_or_a_seeded_draw():
    rows = [{"id": n} for n in range(10)]
    assert select_few_shot_rows(rows, 3) == rows[:3]
    drawn = select_few_shot_rows(rows, 3, seed=7)
    assert drawn == select_few_shot_rows(rows, 3, seed=7) and len({row["id"] for row in drawn}) == 3
    assert drawn != rows[:3] and drawn != select_few_shot_rows(rows, 3, seed=8)


def test_two_processes_give_the_file_of_one(tiny_base_repo, tmp_path):
    single = tmp_path / "single.jsonl"
    assert cli.main(asr_command(tiny_base_repo, single, "--max-new-tokens", "8", "--batch-size", "2")) == 0
    sharded = tmp_path / "sharded" / "asr.jsonl"
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    command = [*launcher, "-m", "transformers_spiritlm.cli"]
    command += asr_command(tiny_base_repo, sharded, "--max-new-tokens", "8", "--batch-size", "2")
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "transcribed 2 items into" in run.stderr and "transcribed 1 items into" in run.stderr
    assert sharded.read_text() == single.read_text()
    assert os.listdir(sharded.parent) == ["asr.jsonl"]


def test_a_killed_run_resumes_into_the_uninterrupted_file(tiny_base_repo, tmp_path):
    clips = ["positive.wav", "negative.wav", "neutral.wav", "sad.wav"]
    rows = [{"id": f"utt{n}", "wav_path": clips[n % 4], "text": f"utterance {n}"} for n in range(16)]
    manifest = write_jsonl(tmp_path / "manifest.jsonl", rows)

    def command(output: Path) -> list[str]:
        return asr_command(tiny_base_repo, output, "--batch-size", "1", "--max-new-tokens", "8", manifest=manifest)

    whole = tmp_path / "whole.jsonl"
    assert cli.main(command(whole)) == 0
    output = tmp_path / "killed" / "asr.jsonl"
    part = output.with_name("asr.jsonl.part-0-of-1")
    written = run_until_killed([sys.executable, "-m", "transformers_spiritlm.cli", *command(output)], part, lines=3)
    assert 3 <= written < 16 and not output.exists()
    assert cli.main(command(output)) == 2  # partial results are not thrown away without --force
    assert cli.main([*command(output), "--resume"]) == 0
    assert output.read_text() == whole.read_text()
    assert os.listdir(output.parent) == ["asr.jsonl"]


def test_tts_in_two_processes_gives_the_files_of_one(tiny_base_repo, asr_model, tmp_path):
    """Byte-identical WAVs too: both runs are single-threaded processes (thread counts change the vocoder's float
    rounding, by 1 in a few 16-bit samples)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    outputs = {}
    for name, launcher in [
        ("single", []),
        ("sharded", ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]),
    ]:
        outputs[name] = tmp_path / name / "tts.jsonl"
        outputs[name].parent.mkdir()
        command = [sys.executable, *launcher, "-m", "transformers_spiritlm.cli"]
        command += tts_command(tiny_base_repo, asr_model, outputs[name], "--max-new-tokens", "30")
        run = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment, check=False)
        assert run.returncode == 0, run.stderr[-3000:]
        assert run.stderr.count("synthesised") == (2 if launcher else 1)
    single, sharded = outputs["single"], outputs["sharded"]
    assert sharded.read_text() == single.read_text().replace(str(single.parent), str(sharded.parent))
    assert sorted(os.listdir(sharded.parent / "wav")) == ["meeting.wav", "morning.wav"]
    for name in ("meeting.wav", "morning.wav"):
        assert (sharded.parent / "wav" / name).read_bytes() == (single.parent / "wav" / name).read_bytes()
    assert sorted(os.listdir(sharded.parent)) == ["tts.jsonl", "wav"]
