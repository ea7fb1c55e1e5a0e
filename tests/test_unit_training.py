"""`spiritlm train-units` (speech_tokenizer/unit_training.py): k-means units over a HuBERT layer, as a speech tokenizer."""

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from transformers import Wav2Vec2Config, Wav2Vec2Model

from transformers_spiritlm import (
    SpiritLMConfig,
    SpiritLMProcessor,
    SpiritLMSpeechTokenizer,
    SpiritLMSpeechTokenizerConfig,
    cli,
)
from transformers_spiritlm.speech_tokenizer.unit_training import plan_batches, train_units
from transformers_spiritlm.testing.speech_tokenizer import TINY_HUBERT_CONFIG, write_tiny_hubert_checkpoint
from transformers_spiritlm.training_runs import checkpoint_path


sklearn_cluster = pytest.importorskip("sklearn.cluster", reason="the [train] extra (scikit-learn) is not installed")
AUDIO = Path(__file__).parent / "fixtures" / "audio"
UNITS, LAYER, SEED, BATCH_FRAMES, EPOCHS = 16, 6, 3, 150, 2


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    """24 clips of 0.4 to 1.1 s of espeak-ng speech (the 7 s fixture, 16 kHz), as WAV, in two folders."""
    folder = tmp_path_factory.mktemp("clips")
    speech, rate = soundfile.read(AUDIO / "speech_7s_16k.wav", dtype="float32")
    paths = []
    for index in range(24):
        length = int((0.4 + 0.03 * index) * rate)
        start = (index * 3917) % (len(speech) - length)
        path = folder / f"part{index % 2}" / f"clip_{index:02d}.wav"
        path.parent.mkdir(exist_ok=True)
        soundfile.write(path, speech[start : start + length], rate)
        paths.append(path)
    return sorted(paths)


@pytest.fixture(scope="module")
def hubert_dir(tmp_path_factory) -> Path:
    """A tiny random HuBERT-base-layout checkpoint (11 layers of width 32), as `save_pretrained` writes one."""
    return write_tiny_hubert_checkpoint(tmp_path_factory.mktemp("hubert"))


@pytest.fixture(scope="module")
def trained(clips, hubert_dir, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("runs") / "units16"
    command = ["train-units", str(clips[0].parent.parent), "--hubert", str(hubert_dir), "--layer", str(LAYER)]
    command += ["--units", str(UNITS), "-o", str(output), "--seed", str(SEED), "--epochs", str(EPOCHS)]
    assert cli.main([*command, "--batch-frames", str(BATCH_FRAMES), "--device", "cpu", "--quiet"]) == 0
    return output


def test_units_are_those_of_scikit_learn_on_the_same_features(trained, clips):
    speech_tokenizer = SpiritLMSpeechTokenizer.from_pretrained(trained)
    config = speech_tokenizer.config
    assert (config.quantizer_type, config.num_hubert_units, config.blank_unit) == ("kmeans", UNITS, None)
    assert config.hubert_config.num_hidden_layers == LAYER

    # The reference: scikit-learn on the saved tokenizer's own layer-6 features, in the same batches of files.
    features = []
    with torch.no_grad():
        for path in clips:
            waveform = torch.from_numpy(soundfile.read(path, dtype="float32")[0])
            features.append(speech_tokenizer(waveform).hubert_features[0].double().numpy())
    kmeans = sklearn_cluster.MiniBatchKMeans(n_clusters=UNITS, random_state=SEED, batch_size=BATCH_FRAMES, n_init=1)
    for epoch in range(EPOCHS):
        estimates = [soundfile.info(path).frames / 640 for path in clips]
        for batch in plan_batches(estimates, SEED, epoch, BATCH_FRAMES):
            kmeans.partial_fit(np.concatenate([features[index] for index in batch]))
    assert kmeans.n_steps_ == 6  # 864 frames, 3 steps of >= 150 frames per epoch
    np.testing.assert_allclose(speech_tokenizer.quantizer.centroids.numpy(), kmeans.cluster_centers_, rtol=1e-6)

    units = speech_tokenizer.encode_units([str(path) for path in clips])
    for item, clip_features in zip(units, features):
        assert item["hubert"] == kmeans.predict(clip_features).tolist()
    assert len({unit for item in units for unit in item["hubert"]}) >= UNITS // 2


def test_the_processor_reads_speech_through_the_trained_units(trained, clips, tiny_base_repo):
    speech_tokenizer = SpiritLMSpeechTokenizer.from_pretrained(trained)
    processor = SpiritLMProcessor.from_pretrained(tiny_base_repo, speech_tokenizer=speech_tokenizer)
    string = speech_tokenizer.encode_string(str(clips[3]))
    assert string.startswith("[Hu") and max(int(unit) for unit in string[3:-1].split("][Hu")) < UNITS
    ids = processor([{"type": "speech", "audio": str(clips[3])}], output_modality="speech")["input_ids"][0].tolist()
    offset = SpiritLMConfig.from_pretrained(tiny_base_repo).hubert_token_offset
    units = [token - offset for token in ids if offset <= token < offset + 501]
    assert "".join(f"[Hu{unit}]" for unit in units) == string


def test_a_killed_run_resumes_to_the_centroids_of_an_uninterrupted_one(clips, hubert_dir, tmp_path):
    audio_dir = clips[0].parent.parent
    arguments = dict(seed=1, batch_frames=100, epochs=2, progress=False)
    whole = train_units(audio_dir, hubert_dir, 4, 8, tmp_path / "whole", **arguments)
    assert whole.finished and whole.steps == 8  # 432 frames, 4 steps of >= 100 (estimated) frames per epoch

    output = tmp_path / "resumed"
    stopped = train_units(audio_dir, hubert_dir, 4, 8, output, max_steps=5, **arguments)
    assert (stopped.steps, stopped.finished) == (5, False)  # stopped in the second epoch
    assert checkpoint_path(output).is_file() and not output.exists()
    with pytest.raises(FileExistsError, match=r"holds an unfinished run; pass --resume to continue it or --force"):
        train_units(audio_dir, hubert_dir, 4, 8, output, **arguments)
    with pytest.raises(ValueError, match=r"checkpoint of a run with other settings \(num_units differ\)"):
        train_units(audio_dir, hubert_dir, 4, 9, output, resume=True, **arguments)
    resumed = train_units(audio_dir, hubert_dir, 4, 8, output, resume=True, **arguments)
    assert (resumed.resumed_from, resumed.steps, resumed.frames, resumed.finished) == (5, 8, whole.frames, True)
    assert not checkpoint_path(output).exists()
    centroids = [
        SpiritLMSpeechTokenizer.from_pretrained(path).quantizer.centroids for path in (tmp_path / "whole", output)
    ]
    assert torch.equal(*centroids)
    with pytest.raises(FileExistsError, match=r"resumed exists; pass --force to replace it"):
        train_units(audio_dir, hubert_dir, 4, 8, output, **arguments)


def _error(capsys, *arguments: str) -> str:
    assert cli.main(["train-units", *arguments, "--quiet", "--device", "cpu"]) == 2
    return capsys.readouterr().err.strip()


def test_bad_input_is_one_clear_error(clips, hubert_dir, tmp_path, capsys):
    audio, hubert, out = str(clips[0].parent), str(hubert_dir), str(tmp_path / "out")
    (tmp_path / "empty").mkdir()
    assert _error(capsys, str(tmp_path / "empty"), "--hubert", hubert, "--layer", "3", "--units", "4", "-o", out) == (
        f"spiritlm train-units: error: no audio files (.wav, .flac, .ogg, .mp3) found in {tmp_path / 'empty'}"
    )
    assert _error(capsys, audio, "--hubert", hubert, "--layer", "3", "--units", "1", "-o", out) == (
        "spiritlm train-units: error: --units 1: k-means needs at least 2 units"
    )
    for layer in ("0", "12"):
        assert _error(capsys, audio, "--hubert", hubert, "--layer", layer, "--units", "4", "-o", out) == (
            f"spiritlm train-units: error: --layer {layer} is out of range: {hubert} has layers 1 to 11"
        )
    wav2vec2 = tmp_path / "wav2vec2"
    Wav2Vec2Model(Wav2Vec2Config(**TINY_HUBERT_CONFIG)).save_pretrained(wav2vec2)
    assert _error(capsys, audio, "--hubert", str(wav2vec2), "--layer", "3", "--units", "4", "-o", out) == (
        f"spiritlm train-units: error: --hubert {wav2vec2} is a 'wav2vec2' checkpoint, not HuBERT; give a "
        "transformers HubertModel checkpoint folder (e.g. a save_pretrained of facebook/hubert-base-ls960)"
    )
    large = write_tiny_hubert_checkpoint(
        tmp_path / "hubert-large", feat_extract_norm="layer", do_stable_layer_norm=True
    )
    assert _error(capsys, audio, "--hubert", str(large), "--layer", "3", "--units", "4", "-o", out).startswith(
        "spiritlm train-units: error: invalid SpiritLMSpeechTokenizerConfig: hubert_config must be a HuBERT-base layout"
    )
    assert _error(capsys, audio, "--hubert", str(tmp_path), "--layer", "3", "--units", "4", "-o", out) == (
        f"spiritlm train-units: error: --hubert {tmp_path} is not a transformers checkpoint folder (no config.json)"
    )
    # 4 clips of 0.4 to 0.5 s hold 46 frames: too few for 500 units.
    few = tmp_path / "few"
    few.mkdir()
    for path in clips[:4]:
        (few / path.name).write_bytes(path.read_bytes())
    assert _error(capsys, str(few), "--hubert", hubert, "--layer", "3", "--units", "500", "-o", out) == (
        "spiritlm train-units: error: the first k-means step has 46 HuBERT frames (4 files), fewer than the 500 "
        "units it starts them from: give more audio or fewer units"
    )
    assert not (tmp_path / "out").exists()


def test_the_config_names_the_quantizer_and_refuses_an_unknown_one():
    assert SpiritLMSpeechTokenizerConfig().blank_unit == 500
    assert SpiritLMSpeechTokenizerConfig(quantizer_type="kmeans", num_hubert_units=16).blank_unit is None
    with pytest.raises(ValueError, match=r"unknown quantizer_type 'k-means'; use one of 'linear', 'kmeans'"):
        SpiritLMSpeechTokenizerConfig.from_dict({"quantizer_type": "k-means"})
    with pytest.raises(ValueError, match=r"num_hubert_units=1: the quantizer needs at least 2 centroids"):
        SpiritLMSpeechTokenizerConfig.from_dict({"quantizer_type": "kmeans", "num_hubert_units": 1})
