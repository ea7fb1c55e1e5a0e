import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import soundfile

from transformers_spiritlm import cli
from transformers_spiritlm.sharding import (
    distributed_state,
    finished_records,
    process_shard,
    shard_range,
    sharded_output,
)
from transformers_spiritlm.testing import build_tiny_repo
from transformers_spiritlm.testing.processes import run_until_killed, stopped_midway


AUDIO = Path(__file__).resolve().parent / "fixtures" / "audio"


@pytest.mark.parametrize("num_items, count", [(20, 2), (7, 3), (2, 4), (0, 2), (5, 1)])
def test_shards_are_contiguous_near_equal_and_cover_everything(num_items, count):
    shards = [shard_range(num_items, index, count) for index in range(count)]
    assert [i for shard in shards for i in shard] == list(range(num_items))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    with pytest.raises(ValueError, match=f"shard index {count} is out of range for {count} shards"):
        shard_range(num_items, count, count)


def test_single_process_writes_the_output_directly(tmp_path):
    state = distributed_state()
    assert state.num_processes == 1
    assert process_shard(["a", "b", "c"], state) == ["a", "b", "c"]
    output = tmp_path / "out" / "units.jsonl"
    with sharded_output(output, state) as file:
        file.write('{"a": 1}\n')
        assert not output.exists()
        with pytest.raises(BlockingIOError, match=rf"another job is writing {re.escape(str(output))} \(it holds "):
            with sharded_output(output, state, force=True):
                pass
    assert output.read_text() == '{"a": 1}\n'
    assert sorted(os.listdir(output.parent)) == ["units.jsonl"]
    with pytest.raises(RuntimeError), sharded_output(tmp_path / "failed.jsonl", state) as file:
        raise RuntimeError("boom")
    assert not list(tmp_path.glob("failed.jsonl*"))


def write_clips(folder: Path, count: int = 20) -> None:
    """`count` clips of 0.5 to 1.6 s cut from the espeak-ng fixtures, in nested folders, as WAV and FLAC."""
    speech, rate = soundfile.read(AUDIO / "speech_7s_16k.wav", dtype="float32")
    for index in range(count):
        length = int((0.5 + 0.06 * index) * rate)
        start = (index * 2711) % (len(speech) - length)
        path = folder / f"part{index % 3}" / f"clip_{index:02d}.{'flac' if index % 4 == 0 else 'wav'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, speech[start : start + length], rate)


def run_tokenize(command_prefix: list[str], clips: Path, repo: Path, output: Path) -> subprocess.CompletedProcess:
    command = [*command_prefix, "-m", "transformers_spiritlm.cli", "tokenize", str(clips), "--repo", str(repo)]
    command += ["--output", str(output), "--batch-size", "4", "--device", "cpu"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment, check=False)


def test_two_processes_under_accelerate_give_the_units_of_one(tmp_path, tiny_base_repo):
    clips, repo = tmp_path / "clips", tiny_base_repo
    write_clips(clips)
    single = ["tokenize", str(clips), "--repo", str(repo), "-o", str(tmp_path / "single.jsonl"), "--device", "cpu"]
    assert cli.main([*single, "--batch-size", "4", "--quiet"]) == 0
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    sharded = run_tokenize(launcher, clips, repo, tmp_path / "sharded" / "units.jsonl")
    assert sharded.returncode == 0, sharded.stderr
    for index in (0, 1):
        assert re.search(rf"tokenized 10 of 10 files into \S+units.jsonl \(process {index} of 2\)", sharded.stderr)
    assert "started this one alone" not in sharded.stderr

    lines = (tmp_path / "single.jsonl").read_text().splitlines()
    assert len(lines) == 20 and '"hubert": [' in lines[0]
    assert (tmp_path / "sharded" / "units.jsonl").read_text().splitlines() == lines
    assert os.listdir(tmp_path / "sharded") == ["units.jsonl"]
    shutil.rmtree(clips)


def test_accelerate_asked_for_two_processes_without_gpus_warns_that_it_started_one(tmp_path, tiny_base_repo):
    """`accelerate launch --num_processes 2` without `--multi_gpu` runs one process on a machine without GPUs: the
    run still tokenizes every file, and says how to get two processes."""
    clips = tmp_path / "clips"
    write_clips(clips, count=3)
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2"]
    run = run_tokenize(launcher, clips, tiny_base_repo, tmp_path / "units.jsonl")
    assert run.returncode == 0, run.stderr
    assert "accelerate launch was asked for several processes but started this one alone" in run.stderr
    assert "accelerate launch --multi_gpu --num_processes N" in run.stderr
    assert re.search(r"tokenized 3 of 3 files into \S+units.jsonl", run.stderr)
    assert len((tmp_path / "units.jsonl").read_text().splitlines()) == 3


def test_a_plain_single_process_does_not_warn(monkeypatch):
    for name in ("ACCELERATE_USE_CPU", "MASTER_ADDR", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert distributed_state().num_processes == 1
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # set by the user for something else: no accelerate launch
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        distributed_state()


def test_a_killed_tokenize_run_resumes_into_the_uninterrupted_file(tmp_path):
    clips, repo = tmp_path / "clips", build_tiny_repo(tmp_path / "repo", variant="base", vocoder=False)
    write_clips(clips, count=40)
    base = ["tokenize", str(clips), "--repo", str(repo), "--batch-size", "1", "--device", "cpu", "--quiet"]
    assert cli.main([*base, "-o", str(tmp_path / "whole.jsonl")]) == 0
    output = tmp_path / "killed" / "units.jsonl"
    command = [sys.executable, "-m", "transformers_spiritlm.cli", *base, "-o", str(output)]
    written = run_until_killed(command, output.with_name("units.jsonl.part-0-of-1"), lines=5)
    assert 5 <= written < 40 and not output.exists()
    assert output.with_name("units.jsonl.lock").exists()  # left by the killed run; it must not block the next one
    assert cli.main([*base, "-o", str(output), "--resume"]) == 0
    assert output.read_text() == (tmp_path / "whole.jsonl").read_text()
    assert os.listdir(output.parent) == ["units.jsonl"]
    # Resuming a finished run changes nothing.
    assert cli.main([*base, "-o", str(output), "--resume"]) == 0
    assert output.read_text() == (tmp_path / "whole.jsonl").read_text()


def test_a_second_job_on_the_same_output_stops_at_once_and_the_first_completes(tmp_path, tiny_base_repo, capsys):
    """Two independent `spiritlm tokenize` jobs on one output, the first (a subprocess) stopped midway so that they
    overlap for sure: the second (this process) refuses with the lock error and touches nothing; the first, continued,
    writes every record."""
    clips = tmp_path / "clips"
    write_clips(clips, count=6)
    output = tmp_path / "out" / "units.jsonl"
    part = output.with_name("units.jsonl.part-0-of-1")
    args = ["tokenize", str(clips), "--repo", str(tiny_base_repo), "-o", str(output), "--batch-size", "1",
            "--device", "cpu", "--quiet"]  # fmt: skip
    with stopped_midway([sys.executable, "-m", "transformers_spiritlm.cli", *args], part, lines=2):
        written = part.read_text()
        assert cli.main(args) == 2
        assert capsys.readouterr().err == (
            f"spiritlm tokenize: error: another job is writing {output} (it holds {output}.lock; `lsof {output}.lock` "
            "names its process): wait for it to end or choose another output\n"
        )
        assert part.read_text() == written and not output.exists()
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [record["audio"] for record in records] == [str(path) for path in cli.find_audio_files([clips])]
    assert os.listdir(output.parent) == ["units.jsonl"]


def test_resume_merges_parts_of_another_process_count_in_input_order(tmp_path):
    output = tmp_path / "out.jsonl"
    output.with_name("out.jsonl.part-0-of-2").write_text('{"id": "a", "v": 1}\n{"id": "b", "v": 2}\n')
    output.with_name("out.jsonl.part-1-of-2").write_text('{"id": "d", "v": 4}\n{"id": "e", "v"')
    state = distributed_state()
    done = finished_records(output, "id")
    assert sorted(done) == ["a", "b", "d"]
    with sharded_output(output, state, key="id", order=["a", "b", "c", "d", "e"], resume=True) as file:
        for key in ("c", "e"):
            file.write(f'{{"id": "{key}", "v": 0}}\n')
    assert [line[:10] for line in output.read_text().splitlines()] == [f'{{"id": "{k}"' for k in "abcde"]
    assert os.listdir(tmp_path) == ["out.jsonl"]
    with pytest.raises(ValueError, match="resuming needs keyed records"), sharded_output(output, state, resume=True):
        pass
    output.with_name("out.jsonl.part-0-of-1").write_text('{"other": 1}\n')
    with pytest.raises(ValueError, match=r"out.jsonl.part-0-of-1, line 1: a record without 'id'"):
        finished_records(output, "id")
