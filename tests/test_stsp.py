import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

from transformers_spiritlm import cli
from transformers_spiritlm.evaluation import (
    DIRECTIONS,
    SentimentClassifier,
    item_seed,
    predict_stsp,
    read_stsp_manifest,
    score_stsp,
)
from transformers_spiritlm.testing import build_tiny_repo
from transformers_spiritlm.testing.classifiers import build_tiny_speech_classifier, build_tiny_text_classifier
from transformers_spiritlm.testing.processes import run_until_killed


FIXTURES = Path(__file__).parent / "fixtures" / "stsp"
AUDIO = FIXTURES / "audio"
MANIFEST = FIXTURES / "manifest.jsonl"
OFFICIAL = json.loads((FIXTURES / "official_scores.json").read_text())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def check_official_score(recorded: dict, ref: Path, pred: Path) -> None:
    result = score_stsp(ref, pred)
    assert (result["correct"], result["total"]) == (recorded["correct"], recorded["total"])
    assert recorded["printed"].startswith(f"Accuracy: {100 * result['accuracy']:0.2f}% for predictions")
    assert sum(counts["total"] for counts in result["per_class"].values()) == result["total"]
    assert sum(counts["correct"] for counts in result["per_class"].values()) == result["correct"]


def test_scoring_equals_the_official_eval_on_our_manifest_with_mismatches():
    recorded = OFFICIAL["own"]
    ref, pred = FIXTURES / "score_ref.jsonl", FIXTURES / "score_pred.jsonl"
    assert (sha256(ref), sha256(pred)) == (recorded["ref_sha256"], recorded["pred_sha256"])
    assert 0 < recorded["correct"] < recorded["total"] == 60
    check_official_score(recorded, ref, pred)


def test_scoring_equals_the_official_eval_on_the_official_examples():
    source = os.environ.get("SPIRITLM_OFFICIAL_SRC")
    if not source:
        pytest.skip(
            "set SPIRITLM_OFFICIAL_SRC to a checkout of facebookresearch/spiritlm to score its data/examples/ref.jsonl "
            "and pred.jsonl (not redistributed here)"
        )
    examples = Path(source) / "data" / "examples"
    recorded = OFFICIAL["official_examples"]
    ref, pred = examples / "ref.jsonl", examples / "pred.jsonl"
    assert (sha256(ref), sha256(pred)) == (recorded["ref_sha256"], recorded["pred_sha256"]), (
        "the official example files differ from the recorded ones: rerun tests/fixtures/stsp/record_scores.py"
    )
    check_official_score(recorded, ref, pred)


def test_score_counts_per_class_and_maps_emotions(tmp_path):
    ref = write_jsonl(tmp_path / "ref.jsonl", [
        {"id": 1, "sentiment": "positive"}, {"id": 2, "emotion": "sad"}, {"id": "x", "emotion": "default"},
        {"id": 4, "emotion": "amused", "sentiment": "negative"},
    ])  # fmt: skip
    pred = write_jsonl(tmp_path / "pred.jsonl", [
        {"id": "4", "pred": "positive"}, {"id": "x", "pred": "neutral"}, {"id": 1, "pred": "Positive"},
        {"id": 2, "pred": "negative"},
    ])  # fmt: skip
    assert score_stsp(ref, pred) == {
        "accuracy": 0.5,
        "correct": 2,
        "total": 4,
        "per_class": {"negative": {"correct": 1, "total": 2}, "neutral": {"correct": 1, "total": 1},
                      "positive": {"correct": 0, "total": 1}},
    }  # fmt: skip


def test_score_bad_inputs_are_clear_errors(tmp_path):
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"id": 1, "sentiment": "positive"}, {"id": 2, "emotion": "sad"}])
    unknown = write_jsonl(tmp_path / "unknown.jsonl", [{"id": 1, "pred": "positive"}, {"id": 3, "pred": "neutral"}])
    with pytest.raises(ValueError, match=r"1 ids of .*unknown.jsonl are not in .*ref.jsonl: '3' \(line 2\); 1 ids of "
                       r".*ref.jsonl have no prediction: '2' \(line 2\)"):  # fmt: skip
        score_stsp(ref, unknown)
    twice = write_jsonl(tmp_path / "twice.jsonl", [{"id": 1, "pred": "positive"}, {"id": "1", "pred": "neutral"}])
    with pytest.raises(ValueError, match="line 2: id '1' is already predicted on line 1"):
        score_stsp(ref, twice)
    no_pred = write_jsonl(tmp_path / "no_pred.jsonl", [{"id": 1}])
    with pytest.raises(
        ValueError, match=r"no_pred.jsonl, line 1: a prediction needs 'id' and 'pred', got keys \['id'\]"
    ):
        score_stsp(ref, no_pred)
    unlabeled = write_jsonl(tmp_path / "unlabeled.jsonl", [{"id": 1, "sentiment": "positive"}, {"id": 2}])
    with pytest.raises(ValueError, match="unlabeled.jsonl, line 2: no 'sentiment' or 'emotion' field"):
        score_stsp(unlabeled, write_jsonl(tmp_path / "p.jsonl", [{"id": 1, "pred": "a"}, {"id": 2, "pred": "b"}]))
    odd = write_jsonl(tmp_path / "odd.jsonl", [{"id": 1, "emotion": "bored"}])
    with pytest.raises(ValueError, match="odd.jsonl, line 1: emotion 'bored' has no sentiment"):
        score_stsp(odd, write_jsonl(tmp_path / "q.jsonl", [{"id": 1, "pred": "a"}]))


def test_manifest_bad_inputs_name_the_line(tmp_path):
    rows = [{"id": 1, "wav_path": "positive.wav", "asr": "hi"}, {"wav_path": "negative.wav", "asr": "ho"}]
    with pytest.raises(ValueError, match=r"manifest .*m.jsonl, line 2: no 'id' field"):
        read_stsp_manifest(write_jsonl(tmp_path / "m.jsonl", rows))
    rows[1] = {"id": 2, "wav_path": "gone.wav"}
    with pytest.raises(FileNotFoundError, match=r"line 2: audio file .*gone.wav does not exist"):
        read_stsp_manifest(write_jsonl(tmp_path / "m.jsonl", rows), "speech_text", AUDIO)
    with pytest.raises(ValueError, match=r"line 2: no 'asr' transcript"):
        read_stsp_manifest(write_jsonl(tmp_path / "m.jsonl", rows), "text_text", AUDIO)
    rows[1] = {"id": 1, "wav_path": "negative.wav"}
    with pytest.raises(ValueError, match="line 2: id '1' is already on line 1"):
        read_stsp_manifest(write_jsonl(tmp_path / "m.jsonl", rows))
    (tmp_path / "bad.jsonl").write_text('{"id": 1}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl, line 2: not JSON"):
        read_stsp_manifest(tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="unknown direction 'speech'; use one of text_text, text_speech"):
        read_stsp_manifest(MANIFEST, "speech", AUDIO)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("stsp")
    repo = build_tiny_repo(root / "repo", variant="expressive")
    return {
        "repo": repo,
        "text": build_tiny_text_classifier(root / "text_classifier"),
        "speech": build_tiny_speech_classifier(root / "speech_classifier"),
        "root": root,
    }


def test_classifier_labels_must_map_to_sentiments(setup, tmp_path):
    path = build_tiny_text_classifier(tmp_path / "odd", labels=("LABEL_0", "positive", "LABEL_2"))
    with pytest.raises(ValueError, match=r"the text classifier's labels \['LABEL_0', 'LABEL_2'\] map to no sentiment"):
        SentimentClassifier.from_pretrained(path, "text")
    mapped = SentimentClassifier.from_pretrained(path, "text", {"LABEL_0": "negative", "label_2": "Neutral"})
    assert mapped.sentiments == ["negative", "positive", "neutral"]
    speech = SentimentClassifier.from_pretrained(setup["speech"], "speech")
    assert speech.sentiments == ["positive", "negative", "negative", "neutral"]
    with pytest.raises(ValueError, match=r"labels \['happy', 'angry', 'sad', 'default'\] map to no sentiment"):
        SentimentClassifier.from_pretrained(setup["speech"], "speech", label_map={"x": "positive"})


def stsp_command(setup, direction: str, output: Path, *extra: str) -> list[str]:
    target = direction.split("_")[1]
    return ["eval", "stsp", "--repo", str(setup["repo"]), "--manifest", str(MANIFEST), "--data-root", str(AUDIO),
            "--input-output", direction, f"--{target}-classifier", str(setup[target]), "-o", str(output),
            "--max-new-tokens", "60" if target == "speech" else "12", "--batch-size", "2", "--device", "cpu",
            "--quiet", *extra]  # fmt: skip


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_eval_stsp_runs_end_to_end(setup, direction, tmp_path, capsys):
    output = tmp_path / "pred.jsonl"
    wavs = tmp_path / "wav"
    assert cli.main(stsp_command(setup, direction, output, "--write-wav", str(wavs))) == 0
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["id"] for r in records] == ["4792320029370491913", "-5682350483296949563", "neutral_0001",
                                          "1159246029716120600"]  # fmt: skip
    assert all(r["pred"] in ("negative", "neutral", "positive") for r in records)
    if direction.endswith("speech"):
        assert [r["generation"] for r in records] == [str(wavs / f"{r['id']}.wav") for r in records]
        assert all(Path(r["generation"]).stat().st_size > 1000 for r in records)
    else:
        assert all(isinstance(r["generation"], str) for r in records)
    result = score_stsp(MANIFEST, output)
    assert f"accuracy: {100 * result['accuracy']:.2f}% ({result['correct']} of 4)" in capsys.readouterr().out
    # An existing output is not overwritten by accident.
    assert cli.main(stsp_command(setup, direction, output)) == 2
    assert "exists; pass --resume to complete it or --force to overwrite it" in capsys.readouterr().err


def test_every_id_gets_its_own_wav_file(setup, tmp_path):
    """Ids that are no safe file name (`a/b` beside `a_b`, capitals, 300 characters) get distinct names: the safe
    part, `+` and 16 hex digits of the id's SHA-256."""
    ids = ["a/b", "a_b", "A_b", "x" * 300]
    rows = [{"id": item_id, "sentiment": "neutral", "asr": f"utterance {n}"} for n, item_id in enumerate(ids)]
    manifest = write_jsonl(tmp_path / "manifest.jsonl", rows)
    output, wavs = tmp_path / "pred.jsonl", tmp_path / "wav"
    command = stsp_command(setup, "text_speech", output, "--write-wav", str(wavs), "--batch-size", "4")
    command[command.index("--manifest") + 1] = str(manifest)
    assert cli.main(command) == 0
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [record["id"] for record in records] == ids

    def hashed(item_id: str) -> str:
        return hashlib.sha256(item_id.encode()).hexdigest()[:16]

    names = [f"a_b+{hashed('a/b')}.wav", "a_b.wav", f"a_b+{hashed('A_b')}.wav", f"{'x' * 100}+{hashed('x' * 300)}.wav"]
    assert [record["generation"] for record in records] == [str(wavs / name) for name in names]
    assert sorted(os.listdir(wavs)) == sorted(names)
    assert len({sha256(wavs / name) for name in names}) == 4


def test_few_shot_run_and_cli_errors(setup, tmp_path, capsys):
    few_shot = write_jsonl(tmp_path / "t2t.jsonl", [
        {"prompt": "so sad", "generation": " i cried", "sentiment": "negative"},
        {"prompt": "it is noon", "generation": " time for lunch", "sentiment": "neutral"},
        {"prompt": "great news", "generation": " we won", "sentiment": "positive"},
    ])  # fmt: skip
    output = tmp_path / "pred.jsonl"
    command = stsp_command(setup, "text_text", output, "--few-shot", "3", "--few-shot-manifest", str(few_shot))
    assert cli.main(command) == 0
    assert len(output.read_text().splitlines()) == 4
    no_classifier = stsp_command(setup, "speech_text", tmp_path / "y.jsonl")
    index = no_classifier.index("--text-classifier")
    del no_classifier[index : index + 2]
    assert cli.main(no_classifier) == 2
    assert "speech_text outputs text: give --text-classifier" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        command = stsp_command(setup, "speech_text", tmp_path / "z.jsonl")
        cli.main([arg if arg != "speech_text" else "speech_to_text" for arg in command])
    assert "invalid choice: 'speech_to_text'" in capsys.readouterr().err
    odd = build_tiny_text_classifier(tmp_path / "odd", labels=("LABEL_0", "LABEL_1", "LABEL_2"))
    command = stsp_command(setup, "text_text", tmp_path / "w.jsonl")
    command[command.index("--text-classifier") + 1] = str(odd)
    assert cli.main(command) == 2
    assert "labels ['LABEL_0', 'LABEL_1', 'LABEL_2'] map to no sentiment" in capsys.readouterr().err
    assert cli.main([*command, "--label-map", "LABEL_0=negative,LABEL_1=neutral,LABEL_2=positive"]) == 0
    # Refused before anything loads: the manifest as the output (even with --force), an output another job writes.
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_bytes(MANIFEST.read_bytes())
    command = stsp_command(setup, "text_text", manifest, "--force")
    command[command.index("--manifest") + 1] = str(manifest)
    assert cli.main(command) == 2
    assert f"error: the output {manifest} is one of the inputs; give another output file" in capsys.readouterr().err
    assert manifest.read_bytes() == MANIFEST.read_bytes()
    with FileLock(tmp_path / "v.jsonl.lock"):
        assert cli.main(stsp_command(setup, "text_text", tmp_path / "v.jsonl")) == 2
    assert f"spiritlm eval: error: another job is writing {tmp_path / 'v.jsonl'}" in capsys.readouterr().err
    assert not (tmp_path / "v.jsonl").exists() and not list(tmp_path.glob("v.jsonl.*-of-*"))


def test_two_processes_give_the_file_of_one(setup, tmp_path):
    single, wavs = tmp_path / "single.jsonl", tmp_path / "wav"
    assert cli.main(stsp_command(setup, "speech_speech", single, "--write-wav", str(wavs))) == 0
    sharded = tmp_path / "sharded" / "pred.jsonl"
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    command = [*launcher, "-m", "transformers_spiritlm.cli", *stsp_command(setup, "speech_speech", sharded)]
    command += ["--write-wav", str(wavs)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "predicted 2 items into" in run.stderr and "(process 1 of 2)" in run.stderr
    assert sharded.read_text() == single.read_text()
    assert os.listdir(sharded.parent) == ["pred.jsonl"]


def test_a_killed_run_resumes_into_the_uninterrupted_file(setup, tmp_path):
    rows = [{"id": index, "sentiment": ("negative", "neutral", "positive")[index % 3], "asr": f"utterance {index}"}
            for index in range(24)]  # fmt: skip
    manifest = write_jsonl(tmp_path / "manifest.jsonl", rows)

    def command(output: Path) -> list[str]:
        base = stsp_command(setup, "text_text", output, "--batch-size", "1", "--max-new-tokens", "30")
        base[base.index("--manifest") + 1] = str(manifest)
        return base

    whole = tmp_path / "whole.jsonl"
    assert cli.main(command(whole)) == 0
    output = tmp_path / "killed" / "pred.jsonl"
    part = output.with_name("pred.jsonl.part-0-of-1")
    written = run_until_killed([sys.executable, "-m", "transformers_spiritlm.cli", *command(output)], part, lines=3)
    assert 3 <= written < 24 and not output.exists()
    kept = part.read_text().splitlines()[:3]
    assert cli.main(command(output)) == 2  # partial results are not thrown away without --force
    assert part.read_text().splitlines()[:3] == kept
    assert cli.main([*command(output), "--resume"]) == 0
    assert output.read_text() == whole.read_text()
    assert os.listdir(output.parent) == ["pred.jsonl"]


def test_per_item_seeds_make_outputs_independent_of_batching(setup):
    from transformers import AutoModelForCausalLM, AutoProcessor

    processor = AutoProcessor.from_pretrained(setup["repo"])
    model = AutoModelForCausalLM.from_pretrained(setup["repo"]).eval()
    classifier = SentimentClassifier.from_pretrained(setup["text"], "text")
    rows = read_stsp_manifest(MANIFEST, "speech_text", AUDIO)
    batched = list(predict_stsp(model, processor, rows, "speech_text", classifier, batch_size=4, max_new_tokens=12))
    alone = [next(predict_stsp(model, processor, [row], "speech_text", classifier, max_new_tokens=12)) for row in rows]
    assert batched == alone
    other_seed = list(predict_stsp(model, processor, rows, "speech_text", classifier, seed=1, max_new_tokens=12))
    assert [r["generation"] for r in other_seed] != [r["generation"] for r in batched]
    assert item_seed(0, "a", 0) != item_seed(0, "a", 1) != item_seed(1, "a", 0)


def test_a_failing_item_keeps_what_was_predicted_for_resume(setup, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for clip in AUDIO.glob("*.wav"):
        (data / clip.name).write_bytes(clip.read_bytes())
    (data / "neutral.wav").write_text("not audio")
    output = tmp_path / "pred.jsonl"
    command = stsp_command(setup, "speech_text", output, "--batch-size", "1")
    command[command.index("--data-root") + 1] = str(data)
    assert cli.main(command) == 2
    assert re.search(
        r"manifest line\(s\) 3 \(prompts numbered from 0 in this batch\): prompt 0, segment 0: could not read audio file '\S+neutral.wav'",
        capsys.readouterr().err,
    )
    part = output.with_name("pred.jsonl.part-0-of-1")
    kept = part.read_text()
    assert [json.loads(line)["id"] for line in kept.splitlines()] == ["4792320029370491913", "-5682350483296949563"]
    (data / "neutral.wav").write_bytes((AUDIO / "neutral.wav").read_bytes())
    assert cli.main([*command, "--resume"]) == 0
    lines = output.read_text()
    assert lines.startswith(kept) and len(lines.splitlines()) == 4


def test_items_without_output_are_retried_then_predicted_null(setup, caplog):
    from transformers import AutoModel, AutoModelForCausalLM, AutoProcessor

    processor = AutoProcessor.from_pretrained(setup["repo"])
    model = AutoModelForCausalLM.from_pretrained(setup["repo"]).eval()
    vocoder = AutoModel.from_pretrained(setup["repo"], subfolder="vocoder").eval()
    classifier = SentimentClassifier.from_pretrained(setup["speech"], "speech")
    rows = read_stsp_manifest(MANIFEST, "speech_speech", AUDIO)[:2]
    calls = []
    generate = model.generate
    model.generate = lambda **kwargs: calls.append(kwargs["input_ids"].shape[0]) or generate(**kwargs)
    # One new unit is never enough for the EXPRESSIVE vocoder (it needs hubert and pitch units): no audio comes out.
    records = list(predict_stsp(model, processor, rows, "speech_speech", classifier, vocoder=vocoder,
                                max_new_tokens=1, num_attempts=2))  # fmt: skip
    assert records == [{"id": "4792320029370491913", "pred": None}, {"id": "-5682350483296949563", "pred": None}]
    assert calls == [2, 2]  # the batch, then both items again with their next seeds
    assert "item 4792320029370491913: no speech output after 2 attempt(s); pred is null" in caplog.text
    with pytest.raises(ValueError, match="speech_speech classifies generated speech: pass the vocoder"):
        next(predict_stsp(model, processor, rows, "speech_speech", classifier))
    with pytest.raises(ValueError, match="speech_text needs a text classifier, got a speech one"):
        next(predict_stsp(model, processor, rows, "speech_text", classifier))
