import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from transformers import AutoModelForCausalLM, AutoProcessor, pipeline
from transformers.utils import logging

import transformers_spiritlm
from transformers_spiritlm import SpiritLMForCausalLM, SpiritLMSpeechTokenizer, SpiritLMVocoder, audio, evaluation
from transformers_spiritlm.cli import eval as cli_eval
from transformers_spiritlm.cli import main
from transformers_spiritlm.cli import tokenize as cli_tokenize
from transformers_spiritlm.cli.common import is_local_path
from transformers_spiritlm.units import units_to_string


AUDIO = Path(__file__).parent / "fixtures" / "audio"


@pytest.fixture(autouse=True)
def restore_transformers_verbosity():
    """`main` sets transformers' verbosity and progress bars for the process; put them back for other tests."""
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    yield
    logging.set_verbosity(verbosity)
    (logging.enable_progress_bar if bars else logging.disable_progress_bar)()


def test_module_help_lists_the_commands():
    command = [sys.executable, "-m", "transformers_spiritlm.cli", "--help"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    for command in ("demo", "tokenize", "resynthesize", "generate", "convert"):
        assert command in result.stdout
    assert "spiritlm demo" in result.stdout


def test_eval_choices_are_the_library_ones():
    # Written out in cli/eval.py so that building the parser does not import the evaluation package.
    assert cli_eval.DIRECTIONS == evaluation.DIRECTIONS
    assert cli_eval.REDUCTIONS == evaluation.REDUCTIONS
    assert cli_tokenize.AUDIO_EXTENSIONS == audio.AUDIO_EXTENSIONS


def test_library_functions_that_left_the_cli_warn_and_still_work():
    import transformers_spiritlm.cli as cli
    from transformers_spiritlm.speech_tokenizer import files

    with pytest.warns(FutureWarning, match="moved to transformers_spiritlm.audio.find_audio_files"):
        assert cli.find_audio_files is audio.find_audio_files
    with pytest.warns(FutureWarning, match="speech_tokenizer.files.tokenize_files"):
        assert cli.tokenize_files is files.tokenize_files
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = cli.nothing


def test_demo_writes_a_playable_wav_and_reuses_its_cache(tmp_path, capsys):
    output = tmp_path / "out.wav"
    args = [
        "demo",
        "-o",
        str(output),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--max-new-tokens",
        "40",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "Building a tiny random-weight SPIRIT LM" in printed
    assert "as SPIRIT LM tokens: [Speech][St" in printed  # EXPRESSIVE units: style, pitch and hubert
    assert "1) speech -> speech" in printed and "2) speech -> text" in printed and "text:" in printed
    audio, rate = soundfile.read(output)
    assert rate == 16000 and audio.ndim == 1 and len(audio) > 0 and abs(audio).max() > 0
    assert main(args) == 0
    assert "Using the cached tiny checkpoint" in capsys.readouterr().out


def test_tokenize_writes_units_of_each_file_and_reports_unreadable_ones(tiny_repo, tmp_path, capsys):
    folder = tmp_path / "clips"
    (folder / "nested").mkdir(parents=True)
    shutil.copy(AUDIO / "speech_2s_16k.wav", folder / "a.wav")
    shutil.copy(AUDIO / "speech_stereo_44k.wav", folder / "nested" / "b.WAV")
    (folder / "broken.wav").write_bytes(b"not audio")
    (folder / "notes.txt").write_text("ignored: not an audio extension")
    output = tmp_path / "units.jsonl"
    code = main(["tokenize", str(folder), "-o", str(output), "--repo", str(tiny_repo), "--quiet", "--device", "cpu"])
    assert code == 1
    assert "skipped" in capsys.readouterr().err
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [Path(record["audio"]).name for record in records] == ["a.wav", "b.WAV"]
    speech_tokenizer = SpiritLMSpeechTokenizer.from_pretrained(tiny_repo, subfolder="speech_tokenizer")
    for record in records:
        units = speech_tokenizer.encode_units(record["audio"])
        assert {key: record[key] for key in units} == units
        assert record["string"] == units_to_string(units)


def test_tokenize_keeps_an_existing_output_unless_forced(tiny_repo, tmp_path, capsys):
    output = tmp_path / "units.jsonl"
    output.write_text('{"audio": "earlier.wav"}\n')
    args = ["tokenize", str(AUDIO / "speech_2s_16k.wav"), "-o", str(output), "--repo", str(tiny_repo), "--quiet",
            "--device", "cpu"]  # fmt: skip
    assert main(args) == 2
    assert capsys.readouterr().err == (
        f"spiritlm tokenize: error: {output} exists; pass --resume to complete it or --force to overwrite it\n"
    )
    assert output.read_text() == '{"audio": "earlier.wav"}\n'
    assert os.listdir(tmp_path) == ["units.jsonl"]
    assert main([*args, "--force"]) == 0
    assert [json.loads(line)["audio"] for line in output.read_text().splitlines()] == [
        str(AUDIO / "speech_2s_16k.wav")
    ]
    assert os.listdir(tmp_path) == ["units.jsonl"]


@pytest.mark.parametrize(
    "variant, through_string", [("base", False), ("base", True), ("expressive", False), ("expressive", True)]
)
def test_resynthesize_round_trips_through_units(tiny_base_repo, tiny_repo, tmp_path, capsys, variant, through_string):
    tiny_repo = tiny_base_repo if variant == "base" else tiny_repo
    output = tmp_path / "resynth.wav"
    args = ["resynthesize", str(AUDIO / "speech_2s_16k.wav"), "--repo", str(tiny_repo), "-o", str(output)]
    assert main(args + ["--device", "cpu"] + (["--through-string"] if through_string else [])) == 0
    speech_tokenizer = SpiritLMSpeechTokenizer.from_pretrained(tiny_repo, subfolder="speech_tokenizer")
    vocoder = SpiritLMVocoder.from_pretrained(tiny_repo, subfolder="vocoder")
    units = speech_tokenizer.encode_units(AUDIO / "speech_2s_16k.wav")
    assert capsys.readouterr().out.strip() == units_to_string(units)
    assert set(units) == ({"hubert"} if variant == "base" else {"hubert", "pitch", "style"})
    audio, rate = soundfile.read(output, dtype="float32")
    if through_string:
        expected = vocoder.decode_string(units_to_string(units))
    else:
        expected = vocoder.decode_units(**units, dur_pred=False)
        assert len(audio) == len(units["hubert"]) * vocoder.config.hop_length  # frame-rate units keep the timing
    torch.testing.assert_close(torch.from_numpy(audio), expected, atol=1 / 2**15, rtol=0)  # 16-bit WAV


def test_generate_builds_the_prompt_in_argument_order(tiny_repo, tmp_path, capsys):
    output = tmp_path / "gen.wav"
    args = ["generate", "--repo", str(tiny_repo), "--text", "hi", "--units", "[Hu1][Hu2]", "--text", " and"]
    args += ["--output-modality", "speech", "--max-new-tokens", "20", "--seed", "0", "-o", str(output)]
    assert main(args + ["--print-prompt", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "prompt: [Text]hi[Speech][Hu1][Hu2][Text] and[Speech]" in printed
    assert f"-> {output}" in printed
    assert soundfile.info(output).samplerate == 16000


def test_generate_bad_input_is_a_clear_error(tiny_repo, capsys):
    args = ["generate", "--repo", str(tiny_repo), "--speech", "missing.wav", "--device", "cpu"]
    assert main(args) == 2
    assert (
        "spiritlm generate: error: prompt 0, segment 0: audio file 'missing.wav' does not exist"
        in capsys.readouterr().err
    )
    assert main(["generate", "--repo", str(tiny_repo)]) == 2
    assert "spiritlm generate: error: give the prompt with --text, --speech and/or --units" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "--repo", str(tiny_repo), "--text", "x", "--output-modality", "speach"])
    assert "invalid choice: 'speach'" in capsys.readouterr().err


def test_convert_passes_its_arguments_to_the_conversion_script(monkeypatch):
    calls = []
    module = types.ModuleType("transformers_spiritlm.conversion.convert_spiritlm_to_hf")
    module.main = lambda argv: calls.append(argv) or 3
    monkeypatch.setitem(sys.modules, module.__name__, module)
    assert main(["convert", "--checkpoints-dir", "ckpt", "--variant", "base", "--output-dir", "out", "--help"]) == 3
    assert calls == [["--checkpoints-dir", "ckpt", "--variant", "base", "--output-dir", "out", "--help"]]


def test_convert_help_is_the_conversion_script_help():
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", "--help"])
    assert exit_info.value.code == 0


def test_help_and_argument_errors_load_neither_torch_nor_transformers(tiny_repo):
    """The installed `spiritlm` console script answers --help and argument errors before torch and transformers load
    (seconds, a minute on a busy machine); a command then registers SPIRIT LM with transformers and runs."""
    (entry_point,) = importlib.metadata.entry_points(group="console_scripts", name="spiritlm")
    module, name = entry_point.value.split(":")
    code = f"""
import sys
from {module} import {name} as main
for argv in (["--help"], ["generate", "--help"], ["generate", "--bogus"], ["eval", "stsp", "--input-output", "up"]):
    try:
        main(argv)
    except SystemExit as exit:
        print("exit", exit.code)
print("loaded:", sorted({{name.partition(".")[0] for name in sys.modules}} & {{"torch", "transformers"}}))
args = ["--repo", {str(tiny_repo)!r}, "--text", "hi", "--output-modality", "text", "--max-new-tokens", "2"]
sys.exit(main(["generate", *args, "--device", "cpu"]))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line for line in lines if line.startswith(("exit ", "loaded: "))] == [
        "exit 0",
        "exit 0",
        "exit 2",
        "exit 2",
        "loaded: []",
    ]
    assert lines[-1].startswith("text:   ")


@pytest.mark.parametrize("repo", ["spiritlm-tny", "models/spiritlm-tny", "spiritlm-tny/"])
def test_repo_that_is_no_folder_is_never_looked_up_on_the_hub(repo, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    assert main(["generate", "--repo", repo, "--text", "hi", "--device", "cpu"]) == 2
    assert capsys.readouterr().err == (
        f"spiritlm generate: error: --repo {repo} is not a folder (nor a Hub repo id such as 'owner/name')\n"
    )
    assert not is_local_path("facebook/spiritlm-expressive")  # there is no ./facebook: a Hub id


def test_lora_adapter_as_repo_names_the_merge(tiny_repo, tmp_path, capsys):
    from peft import LoraConfig, get_peft_model

    adapter = tmp_path / "adapter"
    model = AutoModelForCausalLM.from_pretrained(tiny_repo)
    get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=2, target_modules=["q_proj"])).save_pretrained(adapter)
    AutoProcessor.from_pretrained(tiny_repo).save_pretrained(
        adapter
    )  # what examples/finetune_spiritlm.py --lora saves
    args = ["generate", "--repo", str(adapter), "--text", "hi", "-o", str(tmp_path / "answer.wav"), "--device", "cpu"]
    capsys.readouterr()
    assert main(args) == 2
    assert capsys.readouterr().err == (
        f"spiritlm generate: error: --repo {adapter} is a LoRA adapter (adapter_config.json), not a SPIRIT LM "
        "checkpoint: pass the merged model that examples/finetune_spiritlm.py writes with --merged-output-dir, or "
        f"merge it yourself: PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({str(tiny_repo)!r}), "
        f"{str(adapter)!r}).merge_and_unload().save_pretrained(DIR)\n"
    )


def test_text_file_named_mp3_is_one_error_line_before_loading(tiny_repo, tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("question.mp3").write_text("this is a text file, not audio\n" * 20)
    assert main(["generate", "--repo", str(tiny_repo), "--speech", "question.mp3", "--device", "cpu"]) == 2
    # capfd: libsndfile's MP3 decoder would print to the process's stderr, past sys.stderr.
    assert capfd.readouterr().err == (
        "spiritlm generate: error: prompt 0, segment 0: could not read audio file 'question.mp3': it holds text, not "
        "decodable audio; pass a format libsndfile reads (wav, flac, ogg, mp3) or an array\n"
    )


def test_text_output_leaves_the_default_output_alone(tiny_repo, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("generated.wav").write_bytes(b"mine")  # the default -o, e.g. from an earlier spoken answer
    args = ["generate", "--repo", str(tiny_repo), "--text", "hi", "--output-modality", "text"]
    for stream in ([], ["--stream"]):
        assert main([*args, "--max-new-tokens", "2", *stream, "--device", "cpu"]) == 0
        assert capsys.readouterr().out.startswith("text:   ")
    assert Path("generated.wav").read_bytes() == b"mine"


@pytest.mark.parametrize("stream", [[], ["--stream"]])
def test_speech_without_audio_writes_no_file_and_says_so(stream, tiny_repo, tmp_path, capsys):
    # One unit cannot be vocoded by the EXPRESSIVE vocoder, which needs hubert and pitch units: speech without audio.
    output = tmp_path / "answer.wav"
    args = ["generate", "--repo", str(tiny_repo), "--text", "hi", "--output-modality", "speech", "-o", str(output)]
    assert main([*args, "--max-new-tokens", "1", "--seed", "0", *stream, "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    no_audio = r"speech: no audio from units \[(Hu|Pi|St)\d+\]\n"
    assert re.fullmatch(no_audio + re.escape(f"no speech came: nothing written to {output}\n"), printed), printed
    assert not output.exists()


def test_tiny_repo_writes_a_loadable_repo_and_never_overwrites(tmp_path, capsys):
    repo = tmp_path / "tiny-base"
    assert main(["tiny-repo", str(repo), "--variant", "base"]) == 0
    assert capsys.readouterr().out == f"wrote a tiny random-weight SPIRIT LM (base) to {repo}\n"
    model = AutoModelForCausalLM.from_pretrained(repo)
    assert type(model) is SpiritLMForCausalLM and model.config.variant == "base"
    assert (repo / "speech_tokenizer" / "model.safetensors").is_file() and (repo / "vocoder" / "config.json").is_file()
    assert (repo / "spiritlm_remote.py").is_file()
    before = (repo / "config.json").stat().st_mtime_ns
    assert main(["tiny-repo", str(repo)]) == 2
    assert capsys.readouterr().err == f"spiritlm tiny-repo: error: {repo} already exists; pass --force to replace it\n"
    assert (repo / "config.json").stat().st_mtime_ns == before
    assert main(["tiny-repo", str(repo), "--force"]) == 0
    assert AutoModelForCausalLM.from_pretrained(repo).config.variant == "expressive"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["tiny-base"]  # no staging folder left


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without a usable CUDA device")
@pytest.mark.parametrize("command", ["demo", "generate --text hi", "tokenize clips", "resynthesize in.wav"])
def test_unusable_device_is_one_line_before_loading(command, tmp_path, capsys):
    # --repo is an empty folder: anything that loaded first would fail on it with another message.
    name, *rest = command.split()
    assert main([name, *rest, "--repo", str(tmp_path), "--device", "cuda"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"spiritlm {name}: error: --device cuda: this torch {torch.__version__} cannot use CUDA")
    assert error.endswith("; use --device cpu\n") and error.count("\n") == 1


def test_bad_device_name(tmp_path, capsys):
    assert main(["demo", "--repo", str(tmp_path), "--device", "gpu0"]) == 2
    assert capsys.readouterr().err == (
        "spiritlm demo: error: --device 'gpu0' is not a device: use cpu, cuda, cuda:N or mps\n"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["resynthesize", "missing.wav"], "spiritlm resynthesize: error: audio file 'missing.wav' does not exist"),
        (["resynthesize", "."], "spiritlm resynthesize: error: '.' is a folder, not an audio file"),
        (
            ["generate", "--text", "hi", "--speech", "missing.wav"],
            "spiritlm generate: error: prompt 0, segment 1: audio file 'missing.wav' does not exist",
        ),
        (["generate", "--units", "[Hu1]x"], "spiritlm generate: error: prompt 0, segment 0: malformed unit string"),
        (["tokenize", "missing-folder"], "spiritlm tokenize: error: missing-folder is neither an audio file nor a"),
    ],
)
def test_inputs_are_checked_before_any_model_loads(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "repo").mkdir()  # not a converted repo: loading it would fail with another error
    assert main([*args, "--repo", "repo", "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(message) and error.count("\n") == 1, error


def test_generate_keeps_an_existing_output_unless_forced(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "repo").mkdir()  # not a converted repo: the refusal must come before any loading
    (tmp_path / "answer.wav").write_bytes(b"mine")
    args = ["generate", "--repo", "repo", "--text", "hi", "-o", "answer.wav", "--device", "cpu"]
    for stream in ([], ["--stream"]):
        assert main(args + stream) == 2
        error = capsys.readouterr().err
        assert (
            error
            == "spiritlm generate: error: answer.wav exists; choose another --output or pass --force to overwrite it\n"
        )
    assert (tmp_path / "answer.wav").read_bytes() == b"mine"
    assert main(args + ["--force"]) == 2  # past the check: now loading the empty folder fails
    assert "answer.wav exists" not in capsys.readouterr().err


def test_quiet_by_default_verbose_on_request(tmp_path, capfd):
    assert main(["tiny-repo", str(tmp_path / "r")]) == 0
    assert capfd.readouterr().err == ""
    assert main(["tiny-repo", str(tmp_path / "r"), "--force", "--verbose"]) == 0
    assert "Writing model shards" in capfd.readouterr().err


def test_demo_no_cache_leaves_no_temporary_folder(tmp_path, monkeypatch, capsys):
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR
    output = tmp_path / "out.wav"
    assert main(["demo", "--no-cache", "-o", str(output), "--max-new-tokens", "4", "--device", "cpu"]) == 0
    assert "removed at the end" in capsys.readouterr().out
    assert output.is_file()
    assert list(temp.iterdir()) == []


def test_convert_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", "--help"])
    assert exit_info.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "[--dtype {bfloat16,float16,float32}]" in help_text
    assert "float16 for GPUs without bfloat16 (T4, V100)" in help_text
    assert "(default: bfloat16)" in help_text and "(default: 5GB)" in help_text


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """`spiritlm ARGS` in this process: exit status, stdout, stderr."""
    try:
        code = main([str(arg) for arg in args])
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_version(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"transformers-spiritlm {transformers_spiritlm.__version__}"


def test_cli_tokenize_to_stdout(tiny_base_repo, capsys):
    code, out, err = run_cli(capsys, "tokenize", AUDIO / "speech_2s_16k.wav", "--repo", tiny_base_repo, "--quiet",
                             "--device", "cpu")  # fmt: skip
    assert code == 0, err
    (line,) = out.splitlines()
    expected = SpiritLMSpeechTokenizer.from_pretrained(tiny_base_repo, subfolder="speech_tokenizer").encode_units(
        AUDIO / "speech_2s_16k.wav"
    )
    assert json.loads(line) == {
        "audio": str(AUDIO / "speech_2s_16k.wav"),
        **expected,
        "string": units_to_string(expected),
    }


def test_cli_generate_sampling_flags_reach_generate(tiny_base_repo, tmp_path, capsys):
    args = ["generate", "--repo", tiny_base_repo, "--text", "one two", "--output-modality", "text"]
    args += ["--max-new-tokens", "8", "--temperature", "0.7", "--top-p", "0.9", "--seed", "4", "--device", "cpu"]
    first, second = run_cli(capsys, *args, "-o", tmp_path / "a.wav"), run_cli(capsys, *args, "-o", tmp_path / "b.wav")
    assert first[0] == 0, first[2]
    piped = pipeline("spirit-lm", model=str(tiny_base_repo))
    (expected,) = piped("one two", output_modality="text", max_new_tokens=8, do_sample=True, temperature=0.7,
                        top_p=0.9, seed=4)  # fmt: skip
    assert first[1] == second[1] == f"text:   {expected['text']!r}\n"
    greedy = run_cli(capsys, *args[:9], "--greedy", "--device", "cpu", "-o", tmp_path / "c.wav")
    (expected_greedy,) = piped("one two", output_modality="text", max_new_tokens=8, do_sample=False)
    assert greedy[0] == 0, greedy[2]
    assert greedy[1] == f"text:   {expected_greedy['text']!r}\n" and expected_greedy != expected


def test_cli_resynthesize_speaker_id(tiny_base_repo, tmp_path, capsys):
    import soundfile

    for speaker in (0, 3):
        code, _, err = run_cli(capsys, "resynthesize", AUDIO / "speech_2s_16k.wav", "--repo", tiny_base_repo,
                               "--speaker-id", speaker, "-o", tmp_path / f"speaker{speaker}.wav")  # fmt: skip
        assert code == 0, err
    speech_tokenizer = SpiritLMSpeechTokenizer.from_pretrained(tiny_base_repo, subfolder="speech_tokenizer")
    vocoder = SpiritLMVocoder.from_pretrained(tiny_base_repo, subfolder="vocoder")
    units = speech_tokenizer.encode_units(AUDIO / "speech_2s_16k.wav")
    for speaker in (0, 3):
        audio, rate = soundfile.read(tmp_path / f"speaker{speaker}.wav", dtype="float32")
        # Frame-rate units as they are (no duration prediction), the command's default.
        expected = vocoder.decode_units(**units, speaker_id=speaker, dur_pred=False).numpy()
        assert rate == 16000
        np.testing.assert_allclose(audio, expected, atol=1 / 2**15)
