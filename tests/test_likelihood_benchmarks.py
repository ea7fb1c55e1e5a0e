"""The minimal-pair benchmarks in their published layouts (sWUGGY, sBLIMP, StoryCloze, SALMon): scores equal to the
official code's on the sample folders of examples/eval/, pairing by name, batching, sharding, resuming, bad input."""

import csv
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import official_lm
import pytest
import torch
from official_hubert import weights_digest, write_official_hubert_checkpoints
from official_vocoder import write_official_vocoders
from transformers import AutoModelForCausalLM, AutoProcessor

from transformers_spiritlm import cli
from transformers_spiritlm.conversion.convert_spiritlm_to_hf import convert_spiritlm_to_hf
from transformers_spiritlm.evaluation import (
    read_salmon,
    read_sblimp,
    read_storycloze,
    read_swuggy,
    score_pairs,
)
from transformers_spiritlm.testing.processes import run_until_killed


ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "eval"
FIXTURES = ROOT / "tests" / "fixtures"
RECORDED = json.loads((FIXTURES / "likelihood" / "official_likelihood.json").read_text())
READERS = {
    "swuggy": lambda: read_swuggy(EXAMPLES / "swuggy"),
    "sblimp": lambda: read_sblimp(EXAMPLES / "sblimp"),
    "storycloze/spoken": lambda: read_storycloze(EXAMPLES / "storycloze" / "spoken"),
    "salmon": lambda: read_salmon(EXAMPLES / "salmon"),
    **{
        f"storycloze/cross_modal/{prompt}_{continuation}": (
            lambda prompt=prompt, continuation=continuation: read_storycloze(
                EXAMPLES / "storycloze" / "cross_modal", prompt, continuation
            )
        )
        for prompt in ("text", "speech")
        for continuation in ("text", "speech")
    },
}


@pytest.fixture(scope="module")
def official_repo(tmp_path_factory) -> Path:
    """The BASE repo converted from the tiny official-format checkpoints the recording used (seed 0)."""
    checkpoints = tmp_path_factory.mktemp("official-likelihood")
    write_official_hubert_checkpoints(checkpoints, seed=0)
    write_official_vocoders(checkpoints, seed=0)
    lm_dir = official_lm.write_official_lm(
        checkpoints,
        "base",
        seed=0,
        sentencepiece_model=(FIXTURES / "tokenizer" / "text_sentencepiece.model").read_bytes(),
        vocab_size=official_lm.TINY_TEXT_VOCAB_SIZE + len(official_lm.official_unit_tokens("base")),
    )
    state = torch.load(Path(lm_dir) / "pytorch_model.bin", weights_only=True)
    assert weights_digest(state) == RECORDED["lm_weights_sha256"]
    output = tmp_path_factory.mktemp("converted-likelihood") / "base"
    return convert_spiritlm_to_hf(checkpoints, "base", output, dtype="float32", log=lambda message: None)


@pytest.fixture(scope="module")
def loaded(official_repo):
    return AutoModelForCausalLM.from_pretrained(official_repo).eval(), AutoProcessor.from_pretrained(official_repo)


@pytest.mark.parametrize("layout", list(READERS))
def test_pair_scores_equal_the_official_log_likelihoods(loaded, layout):
    model, processor = loaded
    pairs = READERS[layout]()
    expected = RECORDED["benchmarks"][layout]
    assert [pair["id"] for pair in pairs] == [entry["id"] for entry in expected]
    for reduction in ("sum", "mean"):
        records = list(score_pairs(model, processor, pairs, batch_size=3, reduction=reduction))
        scores = torch.tensor([[record["score_correct"], record["score_wrong"]] for record in records])
        torch.testing.assert_close(scores, torch.tensor([entry[reduction] for entry in expected]), rtol=0, atol=1e-4)
        assert [record["correct"] for record in records] == [
            1 if correct > wrong else 0 for correct, wrong in (entry[reduction] for entry in expected)
        ]


def test_batched_scores_equal_one_pair_at_a_time(loaded):
    model, processor = loaded
    pairs = READERS["storycloze/cross_modal/speech_text"]() + READERS["salmon"]() + READERS["swuggy"]()
    one = list(score_pairs(model, processor, pairs, batch_size=1))
    batched = list(score_pairs(model, processor, pairs, batch_size=16))
    for single, together in zip(one, batched):
        assert single["id"] == together["id"] and single["correct"] == together["correct"]
        for key in ("score_correct", "score_wrong"):
            assert together[key] == pytest.approx(single[key], rel=1e-5, abs=1e-5)


def copy_layout(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination)
    return destination


def test_the_correct_item_comes_from_names_and_gold_files_never_from_order(tmp_path):
    folder = copy_layout(EXAMPLES / "swuggy", tmp_path / "swuggy")
    with open(folder / "gold.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    words = {row["word"]: row["filename"] for row in rows}
    pairs = {pair["id"]: pair for pair in read_swuggy(folder)}
    assert pairs["1/en-us"]["correct"]["audio"].name == f"{words['table']}.wav"
    assert pairs["1/en-us"]["wrong"]["audio"].name == f"{words['tadle']}.wav"
    assert pairs["1/en-us"]["subset"] == ">100" and pairs["3/en-us"]["subset"] == "oov"
    # Renaming the files so that the wrong one lists first changes nothing: the gold file says which is which.
    for row in rows:
        new = ("a_" if row["correct"] == "0" else "z_") + row["filename"]
        (folder / f"{row['filename']}.wav").rename(folder / f"{new}.wav")
        row["filename"] = new
    with open(folder / "gold.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert read_swuggy(folder)[0]["correct"]["audio"].name.startswith("z_")
    sblimp = {pair["id"]: pair for pair in read_sblimp(EXAMPLES / "sblimp")}
    assert set(sblimp) == {"morphology/noun_verb_agreement/1/en-us", "syntax/argument_structure/2/en-us"}
    salmon = read_salmon(EXAMPLES / "salmon")
    assert [(p["id"], p["correct"]["audio"].name, p["wrong"]["audio"].name, p["subset"]) for p in salmon[:2]] == [
        ("gender_consistency/0", "sample_0_0.wav", "sample_0_1.wav", "gender_consistency"),
        ("gender_consistency/1", "sample_1_0.wav", "sample_1_1.wav", "gender_consistency"),
    ]
    cross = read_storycloze(EXAMPLES / "storycloze" / "cross_modal", "text", "text")
    assert cross[0]["prompt"] == {"type": "text", "text": "Tom was hungry."}
    assert cross[0]["correct"] == {"type": "text", "text": " He ate a sandwich."}
    assert cross[0]["wrong"] == {"type": "text", "text": " He painted the sky."}
    speech_text = read_storycloze(EXAMPLES / "storycloze" / "cross_modal", "speech", "text")
    assert speech_text[1]["prompt"]["audio"].name == "1_mutual.wav"
    assert speech_text[1]["correct"] == {"type": "text", "text": "She looked under the bed."}


def test_eval_commands_write_per_pair_records_and_accuracy_per_subset(official_repo, tmp_path, capsys):
    output = tmp_path / "salmon.jsonl"
    command = ["eval", "salmon", str(EXAMPLES / "salmon"), "--repo", str(official_repo), "-o", str(output)]
    assert cli.main([*command, "--device", "cpu", "--quiet"]) == 0
    expected = RECORDED["benchmarks"]["salmon"]
    outcomes = [1 if entry["sum"][0] > entry["sum"][1] else 0 for entry in expected]
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(r["id"], r["correct"], r["subset"]) for r in records] == [
        (entry["id"], outcome, entry["id"].split("/")[0]) for entry, outcome in zip(expected, outcomes)
    ]
    assert list(records[0]) == ["id", "score_correct", "score_wrong", "correct", "subset"]
    gender, speaker = sum(outcomes[:2]), sum(outcomes[2:])
    assert capsys.readouterr().out == (
        f"accuracy: {100 * (gender + speaker) / 4:.2f}% ({gender + speaker} of 4 pairs) (per pair: {output})\n"
        f"  gender_consistency: {100 * gender / 2:.2f}% ({gender} of 2)\n"
        f"  speaker_consistency: {100 * speaker / 2:.2f}% ({speaker} of 2)\n"
    )
    assert cli.main([*command, "--device", "cpu", "--quiet"]) == 2
    assert "exists; pass --resume to complete it or --force to overwrite it" in capsys.readouterr().err


def write_string_pairs(path: Path, count: int) -> Path:
    words = ["cat", "dog", "sun", "tree", "blue", "river", "stone", "light"]
    lines = [
        {"id": f"p{index}", "prompt": "[Text]the " + words[index % 8], "correct": " sat " * (1 + index % 3),
         "wrong": "[Speech]" + "".join(f"[Hu{(index * 7 + k) % 500}]" for k in range(2 + index % 5))}
        for index in range(count)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def pairs_command(repo: Path, pairs: Path, output: Path, *extra: str) -> list[str]:
    return ["eval", "pairs", "--repo", str(repo), "--pairs", str(pairs), "-o", str(output), "--device", "cpu",
            "--quiet", *extra]  # fmt: skip


def test_two_processes_write_the_file_of_one(tiny_base_repo, tmp_path):
    pairs = write_string_pairs(tmp_path / "pairs.jsonl", 7)
    single = tmp_path / "single.jsonl"
    assert cli.main(pairs_command(tiny_base_repo, pairs, single, "--batch-size", "2")) == 0
    sharded = tmp_path / "sharded" / "scores.jsonl"
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    command = [*launcher, "-m", "transformers_spiritlm.cli", *pairs_command(tiny_base_repo, pairs, sharded)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run([*command, "--batch-size", "2"], capture_output=True, text=True, timeout=600,
                         env=environment, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert sharded.read_text() == single.read_text()
    assert len(single.read_text().splitlines()) == 7
    assert os.listdir(sharded.parent) == ["scores.jsonl"]


def test_a_killed_run_resumes_into_the_uninterrupted_file(tiny_base_repo, tmp_path):
    pairs = write_string_pairs(tmp_path / "pairs.jsonl", 60)
    whole = tmp_path / "whole.jsonl"
    assert cli.main(pairs_command(tiny_base_repo, pairs, whole, "--batch-size", "2")) == 0
    output = tmp_path / "killed" / "scores.jsonl"
    part = output.with_name("scores.jsonl.part-0-of-1")
    command = [sys.executable, "-m", "transformers_spiritlm.cli", *pairs_command(tiny_base_repo, pairs, output)]
    written = run_until_killed([*command, "--batch-size", "2"], part, lines=3)
    assert 3 <= written < 60 and not output.exists()
    assert cli.main([*pairs_command(tiny_base_repo, pairs, output, "--batch-size", "2"), "--resume"]) == 0
    assert output.read_text() == whole.read_text()
    assert os.listdir(output.parent) == ["scores.jsonl"]


def break_gold(folder: Path, keep: int | None = None, drop_column: str | None = None) -> None:
    with open(folder / "gold.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    rows = rows if keep is None else [row for row in rows if not (row["id"] == "1" and row["correct"] == "0")]
    columns = [column for column in rows[0] if column != drop_column]
    with open(folder / "gold.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def bad_layouts(tmp_path: Path) -> list[tuple[list[str], str]]:
    cases = []
    empty = tmp_path / "empty"
    empty.mkdir(parents=True)
    cases.append((["swuggy", str(empty)], f"swuggy: {empty} has no gold.csv"))
    cases.append((["swuggy", str(tmp_path / "gone")], f"swuggy: data folder {tmp_path / 'gone'} does not exist"))
    no_column = copy_layout(EXAMPLES / "swuggy", tmp_path / "no_column")
    break_gold(no_column, drop_column="voice")
    cases.append((["swuggy", str(no_column)], "gold.csv: no 'voice' column(s)"))
    unpaired = copy_layout(EXAMPLES / "swuggy", tmp_path / "unpaired")
    break_gold(unpaired, keep=1)
    cases.append(
        (["swuggy", str(unpaired)], "pair 1/en-us has no wrong item (a row with correct=0): the file is unpaired")
    )
    missing_wav = copy_layout(EXAMPLES / "sblimp", tmp_path / "missing_wav")
    gone = sorted(missing_wav.glob("*.wav"))[0]
    gone.unlink()
    cases.append((["sblimp", str(missing_wav)], f"{gone} does not exist"))
    stories = copy_layout(EXAMPLES / "storycloze" / "spoken", tmp_path / "stories")
    (stories / "1_incorrect.wav").unlink()
    cases.append(
        (["storycloze", str(stories)], "1_correct.wav has no 1_incorrect.wav beside it: the folder is unpaired")
    )
    cases.append((["storycloze", str(empty)], f"storycloze: {empty} has no <n>_correct.wav file"))
    cases.append(
        (["storycloze", str(EXAMPLES / "storycloze" / "spoken"), "--prompt-modality", "text"],
         "give both --prompt-modality and --continuation-modality")
    )  # fmt: skip
    cases.append(
        (["storycloze", str(EXAMPLES / "storycloze" / "spoken"), "--prompt-modality", "text",
          "--continuation-modality", "speech"], "0_correct.wav has no 0_mutual.txt beside it")
    )  # fmt: skip
    cases.append((["salmon", str(empty)], f"salmon: {empty} holds none of the SALMon part folders"))
    salmon = copy_layout(EXAMPLES / "salmon", tmp_path / "salmon")
    (salmon / "speaker_consistency" / "sample_1_1.wav").unlink()
    cases.append((["salmon", str(salmon)], "sample 1 of speaker_consistency has sample_1_0.wav; a sample is exactly"))
    cases.append((["salmon", str(EXAMPLES / "salmon"), "--parts", "pitch"], "salmon: unknown part 'pitch'"))
    stray = copy_layout(EXAMPLES / "salmon", tmp_path / "stray")
    shutil.copy(stray / "gender_consistency" / "sample_0_0.wav", stray / "gender_consistency" / "clip.wav")
    cases.append((["salmon", str(stray)], "clip.wav is not named sample_<n>_<0 or 1>.wav"))
    return cases


def test_bad_layouts_are_one_clear_error_and_write_nothing(tiny_base_repo, tmp_path, capsys):
    outputs = tmp_path / "outputs"
    for index, (arguments, message) in enumerate(bad_layouts(tmp_path / "layouts")):
        output = outputs / f"{index}.jsonl"
        status = cli.main(["eval", *arguments, "--repo", str(tiny_base_repo), "-o", str(output), "--device", "cpu"])
        err = capsys.readouterr().err
        assert status == 2, arguments
        assert err.startswith("spiritlm eval: error: ") and err.count("\n") == 1, err
        assert message in err, (message, err)
    assert not outputs.exists()
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(2 * (json.dumps({"id": "a", "correct": "[Text]x", "wrong": "[Text]y"}) + "\n"))
    assert (
        cli.main(["eval", "pairs", "--repo", str(tiny_base_repo), "--pairs", str(pairs), "-o", str(outputs / "p")])
        == 2
    )
    assert "pair id 'a' appears twice; ids must be unique" in capsys.readouterr().err
    command = ["eval", "salmon", str(EXAMPLES / "salmon"), "--repo", str(tiny_base_repo), "--device", "cpu"]
    assert cli.main([*command, "-o", "-"]) == 2
    assert "give -o FILE, not '-'" in capsys.readouterr().err
    assert cli.main([*command, "-o", str(outputs / "s.jsonl"), "--batch-size", "0"]) == 2
    assert "batch_size=0 must be at least 1" in capsys.readouterr().err
    assert not outputs.exists()


def test_the_readme_commands_run_on_the_sample_folders(tiny_base_repo, tmp_path, monkeypatch, capsys):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Minimal-pair benchmarks") :]
    block = section[section.index("```bash\n") + 8 : section.index("```\n", section.index("```bash\n") + 8)]
    commands = [shlex.split(line.split("#")[0]) for line in block.replace("\\\n", "").splitlines()]
    commands = [command for command in commands if command[:2] == ["spiritlm", "eval"]]
    assert [command[2] for command in commands] == ["swuggy", "sblimp", "storycloze", "storycloze", "salmon"]
    monkeypatch.chdir(ROOT)
    for command in commands:
        arguments = command[1:]
        arguments[arguments.index("--repo") + 1] = str(tiny_base_repo)
        arguments[arguments.index("-o") + 1] = str(tmp_path / arguments[arguments.index("-o") + 1])
        assert cli.main([*arguments, "--device", "cpu", "--quiet"]) == 0, capsys.readouterr().err
        assert capsys.readouterr().out.startswith("accuracy: ")
    assert len((tmp_path / "salmon.jsonl").read_text().splitlines()) == 4
