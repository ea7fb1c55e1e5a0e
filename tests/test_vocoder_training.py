"""`spiritlm train-vocoder` (vocoder_training.py): unit HiFi-GAN training on a speech tokenizer's units."""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile
import torch
from safetensors import safe_open
from transformers import pipeline

from transformers_spiritlm import (
    SpiritLMFeatureExtractor,
    SpiritLMForCausalLM,
    SpiritLMProcessor,
    SpiritLMSpeechTokenizer,
    SpiritLMVocoder,
    SpiritLMVocoderConfig,
    cli,
)
from transformers_spiritlm.testing import tiny_lm_config, tiny_spiritlm_tokenizer
from transformers_spiritlm.testing.speech_tokenizer import write_tiny_hubert_checkpoint
from transformers_spiritlm.training_runs import checkpoint_path
from transformers_spiritlm.vocoder_training import (
    HifiGanDiscriminator,
    LogMelSpectrogram,
    load_unit_audio,
    mel_l1,
    train_vocoder,
)


pytest.importorskip("sklearn.cluster", reason="the [train] extra (scikit-learn) is not installed")
AUDIO = Path(__file__).parent / "fixtures" / "audio"
UNITS = 32
HELD_OUT = AUDIO / "speech_2s_16k.wav"  # another sentence of the same espeak-ng voice
# A small generator (32 channels, one residual block per stage) and discriminators at 1/16 of HiFi-GAN's widths.
TINY_VOCODER = {
    "upsample_initial_channel": 32,
    "resblock_kernel_sizes": [3],
    "resblock_dilation_sizes": [[1, 3]],
    "embedding_dim": 32,
    "duration_predictor_hidden_size": 32,
}
RUN = {
    "steps": 80,
    "batch_size": 4,
    "segment_frames": 8,
    "learning_rate": 2e-3,
    "seed": 0,
    "vocoder_config": TINY_VOCODER,
    "discriminator_scale": 1 / 16,
    "checkpoint_every": 20,
    "validation_files": [str(HELD_OUT)],
    "progress": False,
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Runs this module's training on one thread: the tiny models gain nothing from two, and on a busy machine
    OpenMP's spinning threads made 10 steps take 100 CPU-seconds instead of 4."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    """12 overlapping 1.5 s clips of one espeak-ng voice (the 7 s fixture) and a speech tokenizer of 32 k-means units
    on a tiny random HuBERT's layer 6."""
    from transformers_spiritlm.speech_tokenizer.unit_training import train_units

    root = tmp_path_factory.mktemp("vocoder-data")
    speech, rate = soundfile.read(AUDIO / "speech_7s_16k.wav", dtype="float32")
    (root / "clips").mkdir()
    for index in range(12):
        soundfile.write(
            root / "clips" / f"clip_{index:02d}.wav", speech[index * rate // 2 : (index + 3) * rate // 2], rate
        )
    hubert = write_tiny_hubert_checkpoint(root / "hubert")
    train_units(root / "clips", hubert, 6, UNITS, root / "speech_tokenizer", batch_frames=200, progress=False)
    return root / "clips", root / "speech_tokenizer"


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    clips, speech_tokenizer = data
    output = tmp_path_factory.mktemp("vocoder-run") / "vocoder"
    return output, train_vocoder(clips, speech_tokenizer, output, **RUN)


def test_training_lowers_the_mel_loss_on_held_out_speech(data, trained):
    _, speech_tokenizer = data
    output, result = trained
    held_out = load_unit_audio([HELD_OUT], SpiritLMSpeechTokenizer.from_pretrained(speech_tokenizer))
    torch.manual_seed(0)  # the initial weights of the run
    untrained = SpiritLMVocoder(SpiritLMVocoderConfig(num_hubert_units=UNITS, **TINY_VOCODER))
    vocoder = SpiritLMVocoder.from_pretrained(output)
    before, after = mel_l1(untrained, held_out), mel_l1(vocoder, held_out)
    # Measured: 6.47 -> 2.05 (3.2x) in 80 steps (about 40 s of one CPU core).
    assert after < before / 2.5, (before, after)
    assert [step for step, _ in result.validation] == [20, 40, 60, 80]
    assert result.validation[-1][1] == pytest.approx(after, rel=1e-6)
    assert len(result.losses["mel"]) == 80 and all(len(values) == 80 for values in result.losses.values())
    assert sum(result.losses["duration"][-10:]) < sum(result.losses["duration"][:10])
    assert (vocoder.config.num_hubert_units, vocoder.config.hop_length, vocoder.config.num_speakers) == (
        UNITS,
        640,
        None,
    )
    assert not checkpoint_path(output).exists()


def test_the_trained_vocoder_speaks_in_the_pipeline(data, trained):
    _, speech_tokenizer = data
    output, _ = trained
    config = tiny_lm_config("base", num_hubert_units=UNITS)
    processor = SpiritLMProcessor(
        SpiritLMFeatureExtractor(),
        tiny_spiritlm_tokenizer(config),
        speech_tokenizer=SpiritLMSpeechTokenizer.from_pretrained(speech_tokenizer),
    )
    torch.manual_seed(0)
    pipe = pipeline("spirit-lm", model=SpiritLMForCausalLM(config), processor=processor, vocoder=str(output))
    prompt = [{"type": "speech", "audio": str(HELD_OUT)}]
    (segment,) = pipe(prompt, output_modality="speech", max_new_tokens=12, do_sample=False)
    expected = SpiritLMVocoder.from_pretrained(output).decode_string(segment["units"])
    assert "[Hu" in segment["units"] and len(segment["audio"]) == len(expected) > 0
    torch.testing.assert_close(torch.as_tensor(segment["audio"]), expected)


KILLED_RUN = """
import json, sys
from transformers_spiritlm.vocoder_training import train_vocoder
clips, speech_tokenizer, output, run = sys.argv[1:]
train_vocoder(clips, speech_tokenizer, output, **json.loads(run))
"""


def test_a_killed_run_resumes_to_the_losses_of_an_uninterrupted_one(data, trained, tmp_path):
    clips, speech_tokenizer = data
    whole_output, whole = trained
    output = tmp_path / "vocoder"
    checkpoint = checkpoint_path(output)
    command = [sys.executable, "-c", KILLED_RUN, str(clips), str(speech_tokenizer), str(output), json.dumps(RUN)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment)
    while not checkpoint.exists() and process.poll() is None:
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert checkpoint.exists() and not output.exists(), process.stderr.read().decode()

    with pytest.raises(FileExistsError, match=r"holds an unfinished run; pass --resume to continue it or --force"):
        train_vocoder(clips, speech_tokenizer, output, **RUN)
    with pytest.raises(ValueError, match=r"checkpoint of a run with other settings \(learning_rate differ\)"):
        train_vocoder(clips, speech_tokenizer, output, **{**RUN, "learning_rate": 1e-3}, resume=True)
    with safe_open(checkpoint, framework="pt") as file:
        killed_at = json.loads(file.metadata()["state"])["step"]
    resumed = train_vocoder(clips, speech_tokenizer, output, **RUN, resume=True)
    assert killed_at in (20, 40, 60) and resumed.resumed_from == killed_at
    assert (resumed.losses, resumed.validation) == (whole.losses, whole.validation)
    for (name, value), (_, expected) in zip(
        SpiritLMVocoder.from_pretrained(output).state_dict().items(),
        SpiritLMVocoder.from_pretrained(whole_output).state_dict().items(),
    ):
        assert torch.equal(value, expected), name


def test_the_discriminators_and_mel_have_the_hifi_gan_shapes():
    discriminator = HifiGanDiscriminator()
    outputs = discriminator(torch.zeros(2, 8960))
    assert len(outputs) == 8  # periods 2, 3, 5, 7, 11 and 3 scales
    assert [len(feature_maps) for _, feature_maps in outputs] == [6] * 5 + [8] * 3
    # Each period folds the 8960 samples into ceil(8960 / period) rows, which four stride-3 layers divide by 81.
    expected = [(2, math.ceil(math.ceil(8960 / period) / 81) * period) for period in (2, 3, 5, 7, 11)]
    assert [tuple(score.shape) for score, _ in outputs[:5]] == expected
    # HiFi-GAN's sizes (weight-normalised: a norm per output channel besides each weight): 41.1M and 29.6M.
    assert sum(parameter.numel() for parameter in discriminator.periods.parameters()) == 41_105_770
    assert sum(parameter.numel() for parameter in discriminator.scales.parameters()) == 29_618_821
    mel = LogMelSpectrogram()
    assert tuple(mel(torch.zeros(1, 8960)).shape) == (1, 80, 35)
    torch.testing.assert_close(
        mel(torch.zeros(1, 8960)), torch.full((1, 80, 35), torch.log(torch.tensor(1e-5)).item())
    )


def test_bad_input_is_one_clear_error(data, tmp_path, capsys):
    clips, speech_tokenizer = data
    (tmp_path / "empty").mkdir()
    base = ["--speech-tokenizer", str(speech_tokenizer), "-o", str(tmp_path / "out"), "--quiet", "--device", "cpu"]
    assert cli.main(["train-vocoder", str(tmp_path / "empty"), *base, "--steps", "2"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"spiritlm train-vocoder: error: no audio files (.wav, .flac, .ogg, .mp3) found in {tmp_path / 'empty'}"
    )
    assert cli.main(["train-vocoder", str(clips), *base, "--steps", "2", "--segment-frames", "1000"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"spiritlm train-vocoder: error: no audio file in {clips} is 1000 units (40 s) long; give longer audio or "
        "a smaller segment_frames"
    )
    assert cli.main(["train-vocoder", str(clips), *base, "--steps", "0"]) == 2
    assert "steps, batch_size, segment_frames and checkpoint_every must be positive" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_speaker_folders_give_a_named_speaker_embedding(data, tmp_path):
    clips, speech_tokenizer = data
    for index, path in enumerate(sorted(clips.glob("*.wav"))[:4]):
        folder = tmp_path / "audio" / ("ann" if index % 2 else "bob")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / path.name).write_bytes(path.read_bytes())
    run = {**RUN, "steps": 1}
    train_vocoder(tmp_path / "audio", speech_tokenizer, tmp_path / "vocoder", **run, speaker_folders=True)
    config = SpiritLMVocoder.from_pretrained(tmp_path / "vocoder").config
    assert (config.num_speakers, config.speakers) == (2, ["ann", "bob"])
    (tmp_path / "audio" / "loose.wav").write_bytes((clips / "clip_00.wav").read_bytes())
    with pytest.raises(ValueError, match=r"speaker_folders: .*loose.wav is not inside a speaker folder of "):
        train_vocoder(tmp_path / "audio", speech_tokenizer, tmp_path / "other", **run, speaker_folders=True)
