import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import soundfile
import torch

from transformers_spiritlm import SpiritLMSpeechTokenizer, SpiritLMVocoder, evaluation
from transformers_spiritlm.cli import eval as cli_eval
from transformers_spiritlm.cli import find_audio_files, main
from transformers_spiritlm.units import units_to_string


AUDIO = Path(__file__).parent / "fixtures" / "audio"


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


def test_find_audio_files_errors():
    with pytest.raises(FileNotFoundError, match="neither an audio file nor a folder"):
        find_audio_files(["missing-folder"])
    with pytest.raises(ValueError, match="no audio files"):
        find_audio_files([Path(__file__).parent / "fixtures" / "processing"])


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
