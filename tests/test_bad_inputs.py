"""Reliability matrix: bad and unusual inputs at every public entry point (speech tokenizer, feature extractor,
processor, pipeline, vocoder, model loading, CLI, conversion).

Each case either raises a typed error whose message names the problem, or returns a documented result. Results are
checked two ways. Where a value can be computed without the code under test, it is (integer PCM scaling against numpy
and libsndfile, the stereo clip against the official loading recorded in fixtures/style/, unit and frame counts from
the HuBERT frame arithmetic). The other "gives" cases are consistency relations: the same code on an equivalent input
(48 kHz audio vs the same audio resampled first with our resampler, whose parity with torchaudio is tested in
test_speech_tokenizer.py; a 2-channel array vs its mean), so they catch an input path that diverges, not an error the
two sides share; the parity tests against recorded official outputs pin absolute values. Never a crash inside torch,
never silent garbage.
"""

import contextlib
import io
import json
import math
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import soundfile
import torch
from official_vocoder import write_official_vocoder
from transformers import AutoModel, pipeline

from transformers_spiritlm import SpiritLMFeatureExtractor, SpiritLMSpeechTokenizer, SpiritLMVocoder
from transformers_spiritlm.audio import resample
from transformers_spiritlm.cli import main as cli_main
from transformers_spiritlm.conversion.convert_speech_tokenizer import convert_speech_tokenizer
from transformers_spiritlm.conversion.convert_spiritlm_to_hf import convert_spiritlm_to_hf
from transformers_spiritlm.conversion.convert_vocoder import convert_vocoder
from transformers_spiritlm.evaluation import predict_stsp, score_continuations
from transformers_spiritlm.testing import tiny_vocoder
from transformers_spiritlm.testing.speech_tokenizer import tiny_speech_tokenizer
from transformers_spiritlm.units import units_to_string


AUDIO = Path(__file__).parent / "fixtures" / "audio"
RATE = 16000
HOP, RECEPTIVE_FIELD = 640, 720  # samples per HuBERT frame, samples of the first frame (25 Hz conv stack)
CHUNK = 1_600_000  # 100 s: the official code encodes long audio in chunks of this many samples
TRUNCATED_BYTES = 20001  # where the "truncated in its data" WAV is cut (an odd byte count: half a sample at the end)
# The tiny models' max_position_embeddings, and a text prompt that fits it only with a few new tokens: "[Text]" and
# 1000 "hello " make 4003 tokens with BOS.
CONTEXT = 4096
LONG_TEXT = "hello " * 1000


def hubert_frames(samples: int) -> int:
    """HuBERT units of a clip of `samples` 16 kHz samples (one chunk)."""
    return (samples - RECEPTIVE_FIELD) // HOP + 1


class World:
    """Everything the cases use, built on first use and shared by the module (tiny random models, bad files)."""

    def __init__(self, root: Path, repo: Path, official_hubert: Path):
        self.root = root
        self.repo = repo  # the session's tiny BASE repo (conftest), read only: broken_copy() copies it
        self.official_hubert = official_hubert  # the session's official-format HuBERT checkpoints, read only

    @cached_property
    def speech(self) -> np.ndarray:
        return soundfile.read(AUDIO / "speech_2s_16k.wav", dtype="float32")[0]

    @cached_property
    def pcm16(self) -> np.ndarray:
        return np.round(self.speech * 32767).astype(np.int16)

    @cached_property
    def base_st(self) -> SpiritLMSpeechTokenizer:
        return tiny_speech_tokenizer(variant="base")

    @cached_property
    def expressive_st(self) -> SpiritLMSpeechTokenizer:
        return tiny_speech_tokenizer(variant="expressive")

    @cached_property
    def vocoders(self) -> dict[str, SpiritLMVocoder]:
        return {variant: tiny_vocoder(variant) for variant in ("base", "expressive")}

    @cached_property
    def pipe(self):
        return pipeline("spirit-lm", model=str(self.repo))

    @property
    def processor(self):
        return self.pipe.processor

    @cached_property
    def official_vocoder(self) -> Path:
        return write_official_vocoder(self.root / "official" / "hifigan_spiritlm_base", "base")

    def file(self, name: str) -> Path:
        """A bad or unusual input file (or folder) of the given name, written once."""
        path = self.root / "files" / name
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == "folder":
            path.mkdir()
            soundfile.write(path / "inside.wav", self.speech, RATE)
        elif name == "empty-folder":
            path.mkdir()
        elif name == "speech.wav":
            soundfile.write(path, self.pcm16, RATE, subtype="PCM_16")
        elif name.startswith("truncated-"):  # truncated-<bytes>.wav: the first bytes of speech.wav
            path.write_bytes(self.file("speech.wav").read_bytes()[: int(name[len("truncated-") : -len(".wav")])])
        elif name in ("text.wav", "text.mp3"):
            path.write_text("this is a text file, not audio\n" * 20)
        elif name == "zero-bytes.wav":
            path.write_bytes(b"")
        elif name == "one-sample.wav":
            soundfile.write(path, self.speech[:1], RATE)
        elif name == "one-hz.wav":  # 100 samples whose header says 1 Hz: 100 s once at 16 kHz
            soundfile.write(path, self.pcm16[:100], 1, subtype="PCM_16")
        else:
            raise KeyError(name)
        return path

    def broken_copy(self, source: Path, name: str, breakage: Callable[[Path], Any]) -> Path:
        """A copy of the folder `source` at `root/broken/name`, with `breakage(copy)` applied (once)."""
        copy = self.root / "broken" / name
        if not copy.exists():
            shutil.copytree(source, copy)
            breakage(copy)
        return copy

    def repo_with(self, name: str, breakage: Callable[[Path], Any]) -> Path:
        return self.broken_copy(self.repo, name, breakage)

    def units(self, audio, sampling_rate: int = RATE) -> dict[str, list[int]]:
        return self.base_st.encode_units(audio, sampling_rate=sampling_rate)

    def prompt(self, audio, **segment) -> str:
        return self.processor.build_prompt([{"type": "speech", "audio": audio, **segment}])

    def waveform(self, audio) -> torch.Tensor:
        """The float waveform the feature extractor makes of 16 kHz `audio` (what the speech tokenizer encodes)."""
        return SpiritLMFeatureExtractor()(audio, sampling_rate=RATE, return_tensors="pt")["input_values"][0]

    def speech_tokenizer_input(self, audio) -> torch.Tensor:
        """The waveform the processor hands to the speech tokenizer for a 16 kHz speech segment."""
        speech_tokenizer = self.processor.speech_tokenizer
        seen = []

        def encode_string(waveforms, **kwargs):
            seen.extend(waveforms)
            return type(speech_tokenizer).encode_string(speech_tokenizer, waveforms, **kwargs)

        speech_tokenizer.encode_string = encode_string
        try:
            self.prompt(audio, sampling_rate=RATE)
        finally:
            del speech_tokenizer.encode_string
        (waveform,) = seen
        return waveform

    def speech_at(self, rate: int) -> torch.Tensor:
        """The 2 s speech clip as a recording at `rate` Hz."""
        return resample(torch.from_numpy(self.speech), RATE, rate)

    def channels(self, count: int) -> np.ndarray:
        """`(count, samples)` audio whose channels differ (gain and delay)."""
        return np.stack([np.roll(self.speech, 37 * i) * (1 - 0.15 * i) for i in range(count)]).astype(np.float32)

    def cli(self, *args: str) -> tuple[int, str]:
        """Runs `spiritlm ARGS` in-process; returns the exit status and what it printed to stderr."""
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            try:
                status = cli_main(list(args))
            except SystemExit as exit:
                status = exit.code
        return status, stderr.getvalue()


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_base_repo, official_hubert_checkpoints) -> World:
    return World(tmp_path_factory.mktemp("bad-inputs"), tiny_base_repo, official_hubert_checkpoints)


@dataclass(frozen=True)
class Case:
    run: Callable[[World], Any]
    error: type[BaseException] | None = None
    match: str | None = None
    expected: Callable[[World], Any] | None = None


def fails(entry: str, name: str, run, error: type[BaseException], match: str):
    """`run(world)` raises `error` with a message matching `match`."""
    return pytest.param(Case(run, error=error, match=match), id=f"{entry}: {name}")


def gives(entry: str, name: str, run, expected):
    """`run(world)` returns what `expected(world)` computes (see the module docstring for how independent it is)."""
    return pytest.param(Case(run, expected=expected), id=f"{entry}: {name}")


def exits(entry: str, name: str, args: Callable[[World], list], status: int, match: str):
    """The CLI exits with `status` and prints a line matching `match` (and no traceback) to stderr."""

    def run(world):
        code, stderr = world.cli(*map(str, args(world)))
        assert "Traceback" not in stderr, stderr
        return code, re.search(match, stderr) is not None or stderr

    return pytest.param(Case(run, expected=lambda world: (status, True)), id=f"{entry}: {name}")


def resampled_units(world: World, rate: int) -> dict[str, list[int]]:
    """Units of the clip recorded at `rate`, resampled to 16 kHz first; checks the unit count too."""
    audio = world.speech_at(rate)
    units = world.units(resample(audio, rate, RATE))
    assert len(units["hubert"]) == hubert_frames(math.ceil(len(audio) * RATE / rate))
    return units


def stereo_file_units(world: World) -> dict[str, list[int]]:
    """Official order for multi-channel files: each channel resampled to 16 kHz, then the channels averaged."""
    data, rate = soundfile.read(AUDIO / "speech_stereo_44k.wav", dtype="float32", always_2d=True)
    return world.units(resample(torch.from_numpy(data.T.copy()), rate, RATE).mean(0))


def ten_minute_clip() -> np.ndarray:
    """10 min 50 ms of speech (the 7 s clip repeated, so the 100 s chunks differ)."""
    speech = soundfile.read(AUDIO / "speech_7s_16k.wav", dtype="float32")[0]
    return np.tile(speech, 600 * RATE // len(speech) + 1)[: 600 * RATE + 800]


def ten_minutes(world: World) -> tuple[int, list[int], list[int]]:
    """Number of hubert units, those of the first and of the sixth 100 s chunk."""
    hubert = world.units(ten_minute_clip())["hubert"]
    frames = hubert_frames(CHUNK)
    return len(hubert), hubert[:frames], hubert[5 * frames :]


def ten_minutes_expected(world: World) -> tuple[int, list[int], list[int]]:
    """Six full chunks encoded each on its own; the 50 ms tail, under the 80 ms minimum, is skipped."""
    clip = ten_minute_clip()
    first, sixth = world.units(clip[:CHUNK])["hubert"], world.units(clip[5 * CHUNK : 6 * CHUNK])["hubert"]
    return 6 * hubert_frames(CHUNK), first, sixth


def truncated_wav_expected(world: World) -> dict[str, list[int]]:
    """A WAV cut in its data gives the units of the whole samples still in the file, as libsndfile reads them."""
    full = world.file("speech.wav").stat().st_size
    header = full - 2 * len(world.pcm16)
    present = (TRUNCATED_BYTES - header) // 2
    return world.units(world.pcm16[:present].astype(np.float32) / 2**15)


def expressive_lengths(world: World, audio: np.ndarray) -> dict[str, tuple[int, bool]]:
    units = world.expressive_st.encode_units(audio, sampling_rate=RATE)
    limits = {"hubert": 501, "pitch": 64, "style": 100}
    return {name: (len(values), all(0 <= value < limits[name] for value in values)) for name, values in units.items()}


def set_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def truncate(path: Path, size: int | None = None) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2 if size is None else size])


def pickle_weights(repo: Path) -> None:
    """Replaces the LM's model.safetensors by a pytorch_model.bin pickle that also holds a numpy value, as older
    checkpoints do (which `torch.load(weights_only=True)` refuses)."""
    weights = safetensors.torch.load_file(repo / "model.safetensors")
    torch.save({**weights, "step": np.array(3)}, repo / "pytorch_model.bin")
    (repo / "model.safetensors").unlink()


SQUARE_WAVE = np.sign(np.sin(2 * np.pi * 200 * np.arange(RATE) / RATE)).astype(np.float32)  # clipped at ±1
NAN_AUDIO = np.where(np.arange(4000) == 1234, np.nan, 0.1).astype(np.float32)
INF_AUDIO = np.where(np.arange(4000) == 99, -np.inf, 0.1).astype(np.float32)


SPEECH_TOKENIZER = [
    fails("speech tokenizer", "empty array", lambda w: w.units(np.zeros(0, np.float32)), ValueError,
          r"audio is empty \(shape \(1, 0\)\)"),
    fails("speech tokenizer", "1 sample", lambda w: w.units(w.speech[:1]), ValueError,
          r"audio has 1 samples at 16000 Hz; the speech tokenizer needs at least 1280 \(80 ms\)"),
    fails("speech tokenizer", "79.9 ms", lambda w: w.units(w.speech[:1279]), ValueError,
          r"audio has 1279 samples .* needs at least 1280 \(80 ms\)"),
    gives("speech tokenizer", "exactly 80 ms gives one unit", lambda w: len(w.units(w.speech[:1280])["hubert"]),
          lambda w: hubert_frames(1280)),
    fails("speech tokenizer", "short at 8 kHz (under 80 ms once resampled)", lambda w: w.units(w.speech[:600], 8000),
          ValueError, r"audio has 1200 samples at 16000 Hz; the speech tokenizer needs at least 1280"),
    fails("speech tokenizer", "short item of a batch", lambda w: w.base_st.encode_units([w.speech, w.speech[:100]]),
          ValueError, r"audio input 1 has 100 samples"),
    fails("speech tokenizer", "NaN", lambda w: w.units(NAN_AUDIO), ValueError, r"audio contains NaN or infinite"),
    fails("speech tokenizer", "-Inf", lambda w: w.units(INF_AUDIO), ValueError, r"audio contains NaN or infinite"),
    fails("speech tokenizer", "float64 beyond float32 range", lambda w: w.units(np.full(4000, 1e300)), ValueError,
          r"NaN or infinite samples; clean or clip it"),
    # Units cannot tell a wrong PCM scale (HuBERT normalises its input): these compare the waveform the model gets.
    gives("speech tokenizer", "int16 PCM = float / 2**15", lambda w: w.waveform(w.pcm16),
          lambda w: torch.from_numpy((w.pcm16 / 2**15).astype(np.float32))),
    gives("speech tokenizer", "int32 PCM = float / 2**31", lambda w: w.waveform(w.pcm16.astype(np.int32) << 16),
          lambda w: torch.from_numpy((w.pcm16 / 2**15).astype(np.float32))),
    gives("speech tokenizer", "int16 torch tensor", lambda w: w.waveform(torch.from_numpy(w.pcm16)),
          lambda w: torch.from_numpy((w.pcm16 / 2**15).astype(np.float32))),
    gives("speech tokenizer", "int16 PCM units = float units", lambda w: w.units(w.pcm16),
          lambda w: w.units(w.pcm16.astype(np.float32) / 2**15)),
    gives("speech tokenizer", "float64 = float32", lambda w: w.units(w.speech.astype(np.float64)),
          lambda w: w.units(w.speech)),
    fails("speech tokenizer", "int64 (unknown PCM scale)", lambda w: w.units(w.pcm16.astype(np.int64)), TypeError,
          r"cannot tell the scale of torch.int64 audio; pass float samples in \[-1, 1\] or int16 / int32 PCM"),
    fails("speech tokenizer", "complex samples", lambda w: w.units(w.speech.astype(np.complex64)), TypeError,
          r"audio must hold integer PCM or float samples, got a numpy array of complex64"),
    fails("speech tokenizer", "bool samples", lambda w: w.units(torch.ones(4000, dtype=torch.bool)), TypeError,
          r"cannot tell the scale of torch.bool audio"),
    gives("speech tokenizer", "1 channel (1, samples) = 1-D", lambda w: w.units(w.speech[None]),
          lambda w: w.units(w.speech)),
    gives("speech tokenizer", "2 channels = their mean", lambda w: w.units(w.channels(2)),
          lambda w: w.units(torch.from_numpy(w.channels(2)).mean(0))),
    gives("speech tokenizer", "6 channels = their mean", lambda w: w.units(w.channels(6)),
          lambda w: w.units(torch.from_numpy(w.channels(6)).mean(0))),
    fails("speech tokenizer", "(samples, channels) layout", lambda w: w.units(w.channels(2).T), ValueError,
          r"audio of shape \(32000, 2\) has more channels than samples; pass \(channels, samples\), e.g. array.T"),
    fails("speech tokenizer", "3-D array", lambda w: w.units(w.channels(4).reshape(2, 2, -1)), ValueError,
          r"audio must be 1-D \(samples\) or 2-D \(channels, samples\), got shape \(2, 2, 32000\)"),
    *[
        gives("speech tokenizer", f"{rate / 1000:g} kHz = resampled to 16 kHz",
              lambda w, rate=rate: w.units(w.speech_at(rate), rate), lambda w, rate=rate: resampled_units(w, rate))
        for rate in (8000, 22050, 44100, 48000)
    ],
    gives("speech tokenizer", "stereo 44.1 kHz file: channels resampled, then averaged",
          lambda w: w.base_st.encode_units(AUDIO / "speech_stereo_44k.wav"), stereo_file_units),
    gives("speech tokenizer", "Audio dict at 48 kHz = array at 48 kHz",
          lambda w: w.base_st.encode_units({"array": w.speech_at(48000).numpy(), "sampling_rate": 48000}),
          lambda w: resampled_units(w, 48000)),
    fails("speech tokenizer", "sampling_rate=0", lambda w: w.units(w.speech, 0), ValueError,
          r"sampling_rate of the array audio must be a positive whole number of Hz, got 0"),
    fails("speech tokenizer", "fractional sampling_rate", lambda w: w.units(w.speech, 44100.5), ValueError,
          r"positive whole number of Hz, got 44100.5"),
    fails("speech tokenizer", "WAV whose header says 1 Hz", lambda w: w.base_st.encode_units(w.file("one-hz.wav")),
          ValueError, r"audio file '.*one-hz.wav' has a sampling rate of 1 Hz, outside the 4000 to 384000 Hz of recorded audio; give its true rate"),
    fails("speech tokenizer", "sampling_rate=500 kHz", lambda w: w.units(w.speech, 500_000), ValueError,
          r"the array audio has a sampling rate of 500000 Hz, outside the 4000 to 384000 Hz of recorded audio"),
    fails("speech tokenizer", "sampling_rate as a str", lambda w: w.units(w.speech, "16000"), TypeError,
          r"sampling_rate of the array audio must be an int \(Hz\), got str"),
    fails("speech tokenizer", "Audio dict without sampling_rate",
          lambda w: w.base_st.encode_units({"array": w.speech}), ValueError,
          r"an audio dict with 'array' also needs 'sampling_rate'"),
    fails("speech tokenizer", "Audio dict of garbage bytes", lambda w: w.base_st.encode_units({"bytes": b"garbage"}),
          ValueError, r"could not read audio bytes"),
    fails("speech tokenizer", "None", lambda w: w.base_st.encode_units(None), TypeError,
          r"unsupported audio input of type NoneType; pass a path, a numpy array, a torch tensor or a datasets Audio"),
    gives("speech tokenizer", "10-minute clip: 100 s chunks, tail under 80 ms skipped", ten_minutes,
          ten_minutes_expected),
    fails("speech tokenizer", "a folder instead of a file", lambda w: w.base_st.encode_units(w.file("folder")),
          IsADirectoryError, r"'.*folder' is a folder, not an audio file; pass one file"),
    fails("speech tokenizer", "missing file", lambda w: w.base_st.encode_units(w.root / "missing.wav"),
          FileNotFoundError, r"audio file '.*missing.wav' does not exist"),
    fails("speech tokenizer", "text file named .wav", lambda w: w.base_st.encode_units(w.file("text.wav")),
          ValueError, r"could not read audio file '.*text.wav' \(.*Format not recognised.*\); pass a format "
                      r"libsndfile reads"),
    fails("speech tokenizer", "text file named .mp3", lambda w: w.base_st.encode_units(w.file("text.mp3")),
          ValueError, r"could not read audio file '.*text.mp3': it holds text, not decodable audio; pass a format "
                      r"libsndfile reads"),
    fails("speech tokenizer", "0-byte .wav", lambda w: w.base_st.encode_units(w.file("zero-bytes.wav")), ValueError,
          r"could not read audio file '.*zero-bytes.wav'"),
    fails("speech tokenizer", "WAV truncated in its header",
          lambda w: w.base_st.encode_units(w.file("truncated-20.wav")), ValueError,
          r"could not read audio file '.*truncated-20.wav' \(.*Malformed"),
    fails("speech tokenizer", "WAV truncated after its header (no samples)",
          lambda w: w.base_st.encode_units(w.file("truncated-44.wav")), ValueError, r"audio is empty"),
    gives("speech tokenizer", "WAV truncated in its data = the samples left",
          lambda w: w.base_st.encode_units(w.file(f"truncated-{TRUNCATED_BYTES}.wav")), truncated_wav_expected),
    gives("speech tokenizer", "EXPRESSIVE: 1 s of silence has a unit per frame of each stream",
          lambda w: expressive_lengths(w, np.zeros(RATE, np.float32)),
          lambda w: {"hubert": (24, True), "pitch": (12, True), "style": (1, True)}),
    gives("speech tokenizer", "EXPRESSIVE: clipped square wave",
          lambda w: expressive_lengths(w, SQUARE_WAVE),
          lambda w: {"hubert": (24, True), "pitch": (12, True), "style": (1, True)}),
    fails("speech tokenizer", "EXPRESSIVE: NaN", lambda w: w.expressive_st.encode_units(NAN_AUDIO, sampling_rate=RATE),
          ValueError, r"audio contains NaN or infinite"),
]  # fmt: skip

FEATURE_EXTRACTOR = [
    fails("feature extractor", "empty list", lambda w: SpiritLMFeatureExtractor()([]), ValueError,
          r"no audio given: pass one audio input or a non-empty list of them"),
    fails("feature extractor", "Audio dict at 1 kHz",
          lambda w: SpiritLMFeatureExtractor()({"array": w.speech, "sampling_rate": 1000}), ValueError,
          r"the audio dict has a sampling rate of 1000 Hz, outside the 4000 to 384000 Hz"),
    fails("feature extractor", "a folder", lambda w: SpiritLMFeatureExtractor()(w.file("folder")), IsADirectoryError,
          r"is a folder, not an audio file"),
    gives("feature extractor", "48 kHz stereo -> 16 kHz mono of the right length",
          lambda w: SpiritLMFeatureExtractor()(np.stack([w.speech_at(48000).numpy()] * 2), sampling_rate=48000,
                                               return_tensors="pt")["input_values"][0],
          lambda w: resample(w.speech_at(48000), 48000, RATE)),
]  # fmt: skip

PROCESSOR = [
    fails("processor", "missing file in segment 1",
          lambda w: w.processor.build_prompt(
              [{"type": "text", "text": "hi"}, {"type": "speech", "audio": "nope.wav"}]),
          FileNotFoundError, r"prompt 0, segment 1: audio file 'nope.wav' does not exist"),
    fails("processor", "a folder", lambda w: w.prompt(w.file("folder")), IsADirectoryError,
          r"prompt 0, segment 0: '.*folder' is a folder, not an audio file"),
    fails("processor", "text file named .wav", lambda w: w.prompt(w.file("text.wav")), ValueError,
          r"prompt 0, segment 0: could not read audio file '.*text.wav'"),
    fails("processor", "empty audio", lambda w: w.prompt(np.zeros(0, np.float32), sampling_rate=RATE), ValueError,
          r"prompt 0, segment 0: audio is empty"),
    fails("processor", "audio under 80 ms names its segment",
          lambda w: w.processor.build_prompts(
              [[{"type": "speech", "audio": w.speech, "sampling_rate": RATE}],
               [{"type": "text", "text": "a"}, {"type": "speech", "audio": w.speech[:100], "sampling_rate": RATE}]]),
          ValueError, r"prompt 1, segment 1: audio has 100 samples at 16000 Hz; the speech tokenizer needs at least "
                      r"1280 \(80 ms\)"),
    fails("processor", "NaN audio", lambda w: w.prompt(NAN_AUDIO, sampling_rate=RATE), ValueError,
          r"prompt 0, segment 0: audio contains NaN or infinite samples"),
    fails("processor", "segment sampling_rate=0", lambda w: w.prompt(w.speech, sampling_rate=0), ValueError,
          r"prompt 0, segment 0: sampling_rate of the array audio must be a positive whole number of Hz, got 0"),
    gives("processor", "int16 segment = float segment", lambda w: w.prompt(w.pcm16, sampling_rate=RATE),
          lambda w: w.prompt(w.pcm16.astype(np.float32) / 2**15, sampling_rate=RATE)),
    gives("processor", "int16 segment reaches the speech tokenizer as pcm / 2**15",
          lambda w: w.speech_tokenizer_input(w.pcm16), lambda w: torch.from_numpy((w.pcm16 / 2**15).astype(np.float32))),
    gives("processor", "48 kHz segment = its units at 16 kHz",
          lambda w: w.prompt(w.speech_at(48000), sampling_rate=48000),
          lambda w: "[Speech]" + units_to_string(resampled_units(w, 48000))),
    gives("processor", "2-channel segment = units of the mean", lambda w: w.prompt(w.channels(2), sampling_rate=RATE),
          lambda w: "[Speech]" + units_to_string(w.units(torch.from_numpy(w.channels(2)).mean(0)))),
    fails("processor", "(samples, channels) segment", lambda w: w.prompt(w.channels(2).T, sampling_rate=RATE),
          ValueError, r"prompt 0, segment 0: audio of shape \(32000, 2\) has more channels than samples"),
    fails("processor", "units that are text", lambda w: w.processor([{"type": "speech", "units": "hello"}]),
          ValueError, r"segment 0: malformed unit string at character 0: 'hello'; expected only '\[HuN\]'"),
    fails("processor", "malformed unit token", lambda w: w.processor([{"type": "speech", "units": "[Hu12][Hu 3]"}]),
          ValueError, r"segment 0: malformed unit string at character 6: '\[Hu 3\]'"),
    fails("processor", "out-of-range unit", lambda w: w.processor([{"type": "speech", "units": "[Hu5][Hu501]"}]),
          ValueError, r"segment 0: unit '\[Hu501\]' at character 5 is out of range: hubert units go from 0 to 500"),
    fails("processor", "empty units", lambda w: w.processor([{"type": "speech", "units": ""}]), ValueError,
          r"segment 0: 'units' must be a non-empty unit string such as '\[Hu12\]\[Hu7\]'"),
    fails("processor", "negative id to decode (official pad_token_id=-1)",
          lambda w: w.processor.post_process_generation(torch.tensor([[1, 7, 390, -1]]), torch.ones(1, 2)), ValueError,
          r"row 0 of sequences holds -1, not a token id .*generate with "
          r"pad_token_id=processor.tokenizer.pad_token_id"),
    gives("processor", "-1 padding after the end of sequence is ignored",
          lambda w: w.processor.post_process_generation(
              torch.tensor([[1, 7, 390, w.processor.tokenizer.eos_token_id, -1, -1]]), torch.ones(1, 2)),
          lambda w: w.processor.post_process_generation(torch.tensor([[1, 7, 390]]), torch.ones(1, 2))),
]  # fmt: skip

PIPELINE = [
    fails("pipeline", "a folder as speech", lambda w: w.pipe(w.file("folder"), max_new_tokens=2), IsADirectoryError,
          r"prompt 0, segment 0: '.*folder' is a folder, not an audio file"),
    fails("pipeline", "text file named .wav", lambda w: w.pipe(w.file("text.wav"), max_new_tokens=2), ValueError,
          r"prompt 0, segment 0: could not read audio file"),
    fails("pipeline", "audio under 80 ms", lambda w: w.pipe(w.speech[:100], sampling_rate=RATE, max_new_tokens=2),
          ValueError, r"prompt 0, segment 0: audio has 100 samples at 16000 Hz; the speech tokenizer needs at least"),
    fails("pipeline", "Inf in an Audio dict",
          lambda w: w.pipe({"array": INF_AUDIO, "sampling_rate": RATE}, max_new_tokens=2), ValueError,
          r"prompt 0, segment 0: audio contains NaN or infinite samples"),
    fails("pipeline", "WAV whose header says 1 Hz", lambda w: w.pipe(w.file("one-hz.wav"), max_new_tokens=2),
          ValueError, r"prompt 0, segment 0: audio file '.*one-hz.wav' has a sampling rate of 1 Hz, outside the 4000 to 384000 Hz of recorded audio; give its true rate"),
    fails("pipeline", "prompt + max_new_tokens past the context", lambda w: w.pipe(LONG_TEXT, max_new_tokens=94),
          ValueError, r"^the prompt has 4003 tokens and max_new_tokens is 94: 4097 positions, more than the 4096 the "
                      r"model was trained on \(max_position_embeddings\); lower max_new_tokens to 93 or shorten the "
                      r"prompt \(less audio or text\)$"),
    fails("pipeline", "prompt past the context with the default 200 new tokens", lambda w: w.pipe(LONG_TEXT),
          ValueError, r"^the prompt has 4003 tokens and max_new_tokens is 200: 4203 positions"),
    fails("pipeline", "prompt alone past the context", lambda w: w.pipe(LONG_TEXT * 2, max_new_tokens=1),
          ValueError, r"^the prompt has 8003 tokens and max_new_tokens is 1: 8004 positions, more than the 4096 the "
                      r"model was trained on \(max_position_embeddings\); shorten the prompt \(less audio or text\)$"),
    fails("pipeline", "max_length past the context", lambda w: w.pipe("hi", max_length=5000), ValueError,
          r"^the prompt has \d+ tokens and max_new_tokens is \d+: 5000 positions, more than the 4096"),
    fails("pipeline", "stream: prompt past the context, before the generation thread starts",
          lambda w: w.pipe.stream(LONG_TEXT), ValueError, r"^the prompt has 4003 tokens and max_new_tokens is 200"),
    gives("pipeline", "prompt + max_new_tokens exactly the context",
          lambda w: len(w.pipe(LONG_TEXT, max_new_tokens=93, min_new_tokens=93, return_prompt=True)["prompt"]),
          lambda w: len("[Text]" + LONG_TEXT)),
    fails("pipeline", "out-of-range units", lambda w: w.pipe([{"type": "speech", "units": "[Hu999]"}],
                                                             max_new_tokens=2),
          ValueError, r"unit '\[Hu999\]' at character 0 is out of range"),
    fails("pipeline", "unknown speaker", lambda w: w.pipe("hi", output_modality="speech", speaker_id=99,
                                                          max_new_tokens=2),
          ValueError, r"speaker_id 99"),
    gives("pipeline", "48 kHz Audio dict: prompt of the resampled units",
          lambda w: w.pipe({"array": w.speech_at(48000).numpy(), "sampling_rate": 48000}, output_modality="text",
                           max_new_tokens=1, return_prompt=True)["prompt"],
          lambda w: "[Speech]" + units_to_string(resampled_units(w, 48000)) + "[Text]"),
    fails("pipeline", "corrupt LM safetensors",
          lambda w: pipeline("spirit-lm", model=str(w.repo_with("lm-truncated", lambda r: truncate(
              r / "model.safetensors")))),
          ValueError, r"cannot load SpiritLMForCausalLM from .*lm-truncated: a safetensors weights file is truncated"),
    fails("pipeline", "vocoder/ holding the speech tokenizer",
          lambda w: pipeline("spirit-lm", model=str(w.repo_with("swapped-vocoder", lambda r: (
              shutil.rmtree(r / "vocoder"), shutil.copytree(r / "speech_tokenizer", r / "vocoder"))))),
          ValueError, r"model_type 'spiritlm_speech_tokenizer', not 'spiritlm_vocoder': it belongs to another model"),
]  # fmt: skip

BASE_VOCODER = "expressive string into a BASE vocoder = its hubert units"

VOCODER = [
    gives("vocoder", BASE_VOCODER, lambda w: w.vocoders["base"].decode_string("[St7][Pi3][Hu5][Pi9][Hu7][Hu7]"),
          lambda w: w.vocoders["base"].decode_string("[Hu5][Hu7][Hu7]")),
    fails("vocoder", "hubert-only string into an EXPRESSIVE vocoder",
          lambda w: w.vocoders["expressive"].decode_string("[Hu5][Hu7]"), ValueError,
          r"unit string has no pitch units \('\[PiN\]'\), which this EXPRESSIVE vocoder needs; decode hubert-only "
          r"strings with a BASE vocoder"),
    fails("vocoder", "text instead of units", lambda w: w.vocoders["base"].decode_string("hello world"), ValueError,
          r"unit string has no hubert units \('\[HuN\]'\): nothing to synthesise"),
    fails("vocoder", "empty string", lambda w: w.vocoders["base"].decode_string(""), ValueError,
          r"has no hubert units"),
    fails("vocoder", "garbage inside a unit", lambda w: w.vocoders["base"].decode_string("[Hu1x]"), ValueError,
          r"malformed hubert unit in the unit string .*'1x'.*; units look like '\[Hu12\]'"),
    gives("vocoder", "unclosed last unit is read as officially (last character dropped)",
          lambda w: w.vocoders["base"].decode_string("[Hu12][Hu13"),
          lambda w: w.vocoders["base"].decode_string("[Hu12][Hu1]")),
    fails("vocoder", "[Hu501]", lambda w: w.vocoders["base"].decode_string("[Hu4][Hu501]"), ValueError,
          r"hubert unit 501 at position 1 is out of range: this vocoder has 501 hubert units \(0 to 500\)"),
    fails("vocoder", "unit id beyond int64", lambda w: w.vocoders["base"].decode_string("[Hu99999999999999999999]"),
          ValueError, r"hubert unit 99999999999999999999 at position 0 is out of range"),
    fails("vocoder", "[Pi64]", lambda w: w.vocoders["expressive"].decode_string("[St1][Pi64][Hu5]"), ValueError,
          r"pitch unit 64 at position 0 is out of range: this vocoder has 64 pitch units \(0 to 63\)"),
    fails("vocoder", "[St100]", lambda w: w.vocoders["expressive"].decode_string("[St100][Pi6][Hu5]"), ValueError,
          r"style unit 100 at position 0 is out of range"),
    fails("vocoder", "negative unit id", lambda w: w.vocoders["base"].decode_units(torch.tensor([3, -1])), ValueError,
          r"hubert unit -1 at position 1 is out of range"),
    fails("vocoder", "float unit ids", lambda w: w.vocoders["base"].decode_units(torch.tensor([1.0, 2.0])), TypeError,
          r"hubert must hold integer unit ids, got dtype torch.float32"),
    fails("vocoder", "no units", lambda w: w.vocoders["base"].decode_units([]), ValueError,
          r"hubert is empty: pass at least one unit"),
    fails("vocoder", "3-D units", lambda w: w.vocoders["base"].decode_units(torch.zeros(1, 1, 3, dtype=torch.long)), ValueError,
          r"hubert must be 1-D \(one sequence\) or 2-D \(a batch\); got shape \(1, 1, 3\)"),
    fails("vocoder", "speaker out of range", lambda w: w.vocoders["base"].decode_units([1, 2], speaker_id=4), ValueError,
          r"speaker_id=4 is out of range: this vocoder has 4 speakers \(0 to 3\)"),
    fails("vocoder", "unknown speaker name", lambda w: w.vocoders["base"].decode_units([1, 2], speaker_id="nobody"), ValueError,
          r"unknown speaker_id 'nobody'; known speakers: 'ex01'"),
    fails("vocoder", "style_id into an EXPRESSIVE vocoder",
          lambda w: w.vocoders["expressive"].decode_units([1, 2], [3, 3], [4, 4], style_id=2), ValueError,
          r"style_id=2: this vocoder has no global style \(BASE only\)"),
    fails("vocoder", "pitch into a BASE vocoder", lambda w: w.vocoders["base"].decode_units([1, 2], pitch=[3, 3]), ValueError,
          r"this vocoder takes no pitch units; drop `pitch`"),
    fails("vocoder", "decode_string(None)", lambda w: w.vocoders["base"].decode_string(None), TypeError,
          r"decode_string expects a unit string or a non-empty list of unit strings, got NoneType"),
]  # fmt: skip

LOADING = [
    fails("loading", "vocoder: truncated model.safetensors",
          lambda w: SpiritLMVocoder.from_pretrained(w.repo_with("voc-truncated", lambda r: truncate(
              r / "vocoder" / "model.safetensors")), subfolder="vocoder"),
          OSError, r"cannot load SpiritLMVocoder from .*voc-truncated/vocoder: a safetensors weights file is "
                   r"truncated or corrupt \(.*\); download or convert it again"),
    fails("loading", "speech tokenizer: text file as model.safetensors",
          lambda w: AutoModel.from_pretrained(w.repo_with("st-text", lambda r: (
              r / "speech_tokenizer" / "model.safetensors").write_text("not weights")), subfolder="speech_tokenizer"),
          OSError, r"cannot load SpiritLMSpeechTokenizer from .*st-text/speech_tokenizer: a safetensors weights file"),
    fails("loading", "processor: empty speech tokenizer weights",
          lambda w: type(w.processor).from_pretrained(w.repo_with("st-empty", lambda r: (
              r / "speech_tokenizer" / "model.safetensors").write_bytes(b""))),
          OSError, r"speech_tokenizer: a safetensors weights file is truncated or corrupt"),
    fails("loading", "vocoder from the speech tokenizer folder",
          lambda w: SpiritLMVocoder.from_pretrained(w.repo, subfolder="speech_tokenizer"), ValueError,
          r"this config has model_type 'spiritlm_speech_tokenizer', not 'spiritlm_vocoder'.*\(pass subfolder=...\)"),
    fails("loading", "speech tokenizer from the repo root (LM config)",
          lambda w: SpiritLMSpeechTokenizer.from_pretrained(w.repo), ValueError,
          r"model_type 'spiritlm', not 'spiritlm_speech_tokenizer'"),
    fails("loading", "vocoder config failing its checks",
          lambda w: SpiritLMVocoder.from_pretrained(w.repo_with("voc-bad-config", lambda r: set_json(
              r / "vocoder" / "config.json", upsample_rates=[5, 4])), subfolder="vocoder"),
          ValueError, r"invalid SpiritLMVocoderConfig: upsample_rates \[5, 4\] and upsample_kernel_sizes "
                      r"\[11, 8, 8, 8, 4\] must have the same length"),
    fails("loading", "speech tokenizer config with a wrongly typed field",
          lambda w: SpiritLMSpeechTokenizer.from_pretrained(w.repo_with("st-bad-field", lambda r: set_json(
              r / "speech_tokenizer" / "config.json", min_chunk_samples="80ms")), subfolder="speech_tokenizer"),
          ValueError, r"invalid SpiritLMSpeechTokenizerConfig: Field 'min_chunk_samples' expected int, got str"),
    fails("loading", "config.json that is not JSON",
          lambda w: SpiritLMVocoder.from_pretrained(w.repo_with("voc-not-json", lambda r: (
              r / "vocoder" / "config.json").write_text("{not json")), subfolder="vocoder"),
          OSError, r"config file at '.*voc-not-json/vocoder/config.json' is not a valid JSON file"),
]  # fmt: skip

CLI = [
    exits("cli", "tokenize a missing path", lambda w: ["tokenize", w.root / "nope", "--repo", w.repo, "-o",
                                                       w.root / "u.jsonl"],
          2, r"spiritlm tokenize: error: .*nope is neither an audio file nor a folder"),
    exits("cli", "tokenize an empty folder", lambda w: ["tokenize", w.file("empty-folder"), "--repo", w.repo, "-o",
                                                        w.root / "u.jsonl"],
          2, r"spiritlm tokenize: error: no audio files \(.wav, .flac, .ogg, .mp3\) found in .*empty-folder"),
    exits("cli", "tokenize skips a text file named .wav",
          lambda w: ["tokenize", w.file("speech.wav"), w.file("text.wav"), "--repo", w.repo, "-o", w.root / "u.jsonl",
                     "--quiet", "--device", "cpu"],
          1, r"skipped .*text.wav: could not read audio file (.|\n)*tokenized 1 of 2 files"),
    exits("cli", "resynthesize a folder", lambda w: ["resynthesize", w.file("folder"), "--repo", w.repo, "-o",
                                                     w.root / "o.wav", "--device", "cpu"],
          2, r"spiritlm resynthesize: error: '.*folder' is a folder, not an audio file"),
    exits("cli", "resynthesize 1 sample", lambda w: ["resynthesize", w.file("one-sample.wav"), "--repo", w.repo, "-o",
                                                     w.root / "o.wav", "--device", "cpu"],
          2, r"spiritlm resynthesize: error: audio has 1 samples at 16000 Hz; the speech tokenizer needs at least "
             r"1280"),
    exits("cli", "resynthesize with corrupt vocoder weights",
          lambda w: ["resynthesize", w.file("speech.wav"), "--repo", w.repo_with("cli-voc", lambda r: truncate(
              r / "vocoder" / "model.safetensors", 100)), "-o", w.root / "o.wav", "--device", "cpu"],
          2, r"spiritlm resynthesize: error: .*cli-voc/vocoder/model.safetensors is truncated or corrupt: the file "
             r"has 100 bytes, its header describes \d+; download or convert it again"),
    exits("cli", "resynthesize with an invalid vocoder config",
          lambda w: ["resynthesize", w.file("speech.wav"), "--repo", w.repo_with("cli-config", lambda r: set_json(
              r / "vocoder" / "config.json", upsample_rates=[5, 4])), "-o", w.root / "o.wav", "--device", "cpu"],
          2, r"spiritlm resynthesize: error: invalid SpiritLMVocoderConfig: upsample_rates \[5, 4\]"),
    exits("cli", "resynthesize with a missing --repo folder",
          lambda w: ["resynthesize", w.file("speech.wav"), "--repo", w.root / "no-repo", "-o", w.root / "o.wav"],
          2, r"spiritlm resynthesize: error: --repo .*no-repo is not a folder \(nor a Hub repo id"),
    exits("cli", "generate with a relative --repo that does not exist",
          lambda w: ["generate", "--repo", "./no-such-repo", "--text", "hi"],
          2, r"spiritlm generate: error: --repo ./no-such-repo is not a folder"),
    exits("cli", "generate from out-of-range units",
          lambda w: ["generate", "--repo", w.repo, "--units", "[Hu1][Hu700]", "--device", "cpu"],
          2, r"spiritlm generate: error: prompt 0, segment 0: unit '\[Hu700\]' at character 5 is out of range"),
    exits("cli", "generate from a text file named .wav",
          lambda w: ["generate", "--repo", w.repo, "--text", "hi", "--speech", w.file("text.wav"), "--device", "cpu"],
          2, r"spiritlm generate: error: prompt 0, segment 1: could not read audio file"),
    exits("cli", "generate with a truncated model.safetensors",
          lambda w: ["generate", "--repo", w.repo_with("cli-lm", lambda r: truncate(r / "model.safetensors")),
                     "--text", "hi", "--device", "cpu"],
          2, r"spiritlm generate: error: .*cli-lm/model.safetensors is truncated or corrupt: the file "
             r"has \d+ bytes, its header describes \d+; download or convert it again"),
    exits("cli", "generate from weights only in a pickle",
          lambda w: ["generate", "--repo", w.repo_with("cli-pickle", pickle_weights), "--text", "hi", "--device",
                     "cpu"],
          2, r"spiritlm generate: error: .*cli-pickle/pytorch_model.bin holds pickled weights, which the spiritlm "
             r"commands do not load \(a converted repo holds safetensors\): convert the official checkpoints with "
             r"`spiritlm convert`"),
    exits("cli", "generate from a repo without tokenizer.json",
          lambda w: ["generate", "--repo", w.repo_with("cli-no-tokenizer", lambda r: (r / "tokenizer.json").unlink()),
                     "--text", "hi", "--device", "cpu"],
          2, r"spiritlm generate: error: --repo .*cli-no-tokenizer has a language model but no tokenizer.json \(the "
             r"text tokenizer with the unit tokens\)"),
    exits("cli", "generate past the model's context", lambda w: ["generate", "--repo", w.repo, "--text", LONG_TEXT,
                                                              "--device", "cpu"],
          2, r"spiritlm generate: error: the prompt has 4003 tokens and max_new_tokens is 200: 4203 positions, more "
             r"than the 4096 the model was trained on \(max_position_embeddings\); lower max_new_tokens to 93"),
    exits("cli", "convert a missing checkpoints folder",
          lambda w: ["convert", "--checkpoints-dir", w.root / "nope", "--variant", "base", "--output-dir",
                     w.root / "out"],
          2, r"spiritlm convert: error: --checkpoints-dir .*nope is not a folder"),
    exits("cli", "convert an unknown variant",
          lambda w: ["convert", "--checkpoints-dir", w.root, "--variant", "large", "--output-dir", w.root / "out"],
          2, r"argument --variant: invalid choice: 'large' \(choose from '?base'?, '?expressive'?\)"),
]  # fmt: skip

CONVERSION = [
    fails("conversion", "vocoder: text file as generator.pt",
          lambda w: convert_vocoder(w.broken_copy(w.official_vocoder, "gen-text", lambda d: (
              d / "generator.pt").write_text("not a checkpoint")), w.root / "out-voc"),
          ValueError, r"generator.pt is not a readable PyTorch checkpoint"),
    fails("conversion", "vocoder: truncated generator.pt",
          lambda w: convert_vocoder(w.broken_copy(w.official_vocoder, "gen-truncated", lambda d: truncate(
              d / "generator.pt")), w.root / "out-voc"),
          ValueError, r"generator.pt is not a readable PyTorch checkpoint"),
    fails("conversion", "vocoder: missing generator.pt",
          lambda w: convert_vocoder(w.broken_copy(w.official_vocoder, "gen-missing", lambda d: (
              d / "generator.pt").unlink()), w.root / "out-voc"),
          FileNotFoundError, r"official vocoder file not found: .*gen-missing/generator.pt"),
    fails("conversion", "vocoder: config.json without upsample_rates",
          lambda w: convert_vocoder(w.broken_copy(w.official_vocoder, "config-key", lambda d: d.joinpath(
              "config.json").write_text(json.dumps({k: v for k, v in json.loads(d.joinpath(
                  "config.json").read_text()).items() if k != "upsample_rates"}))), w.root / "out-voc"),
          ValueError, r"vocoder config.json lacks 'upsample_rates'"),
    fails("conversion", "vocoder: config.json that is not JSON",
          lambda w: convert_vocoder(w.broken_copy(w.official_vocoder, "config-json", lambda d: (
              d / "config.json").write_text("{")), w.root / "out-voc"),
          ValueError, r"config.json is not valid JSON"),
    fails("conversion", "vocoder: weights that do not fit config.json",
          lambda w: convert_vocoder(w.broken_copy(w.official_vocoder, "config-dim", lambda d: set_json(
              d / "config.json", upsample_initial_channel=64)), w.root / "out-voc"),
          ValueError, r"generator.pt: .* has shape .*, config.json implies"),
    fails("conversion", "speech tokenizer: truncated quantizer",
          lambda w: convert_speech_tokenizer(w.broken_copy(w.official_hubert, "quantizer-truncated", lambda d: (
              truncate(d / "speech_tokenizer" / "hubert_25hz" / "L11_quantizer_500.pt")))),
          ValueError, r"cannot read .*L11_quantizer_500.pt as a torch checkpoint \(weights only\)"),
    fails("conversion", "speech tokenizer: quantizer file in place of HuBERT",
          lambda w: convert_speech_tokenizer(w.broken_copy(w.official_hubert, "hubert-swapped", lambda d: shutil.copy(
              d / "speech_tokenizer" / "hubert_25hz" / "L11_quantizer_500.pt",
              d / "speech_tokenizer" / "hubert_25hz" / "mhubert_base_25hz.pt"))),
          ValueError, r"mhubert_base_25hz.pt is not an official HuBERT checkpoint: expected keys"),
    fails("conversion", "speech tokenizer: missing folder", lambda w: convert_speech_tokenizer(w.root / "nope"),
          FileNotFoundError, r"official checkpoints folder .*nope does not exist"),
    fails("conversion", "unknown variant",
          lambda w: convert_spiritlm_to_hf(w.root, "large", w.root / "out"), ValueError,
          r"unknown variant 'large'; use one of 'base', 'expressive'"),
    fails("conversion", "unknown dtype",
          lambda w: convert_spiritlm_to_hf(w.root, "base", w.root / "out", dtype="int8"), ValueError,
          r"unknown dtype 'int8'; use one of"),
]  # fmt: skip

EVALUATION = [
    fails("evaluation", "scoring a prompt and continuation past the context",
          lambda w: score_continuations(w.pipe.model, w.processor, ["[Text]" + LONG_TEXT], [" world" * 40]), ValueError,
          r"^prompt #0 with its continuation has 4163 tokens, more than the 4096 positions the model was trained on "
          r"\(max_position_embeddings\); shorten it$"),
    fails("evaluation", "STSP prompt past the context (the classifier is never reached)",
          lambda w: next(predict_stsp(w.pipe.model, w.processor, [{"id": "a", "asr": LONG_TEXT, "_line": 3}],
                                      "text_text", classifier=None, max_new_tokens=100)),
          ValueError, r"^the prompt of item a has 400\d tokens and max_new_tokens is 100: 41\d\d positions, more than "
                      r"the 4096 the model was trained on"),
]  # fmt: skip

CASES = SPEECH_TOKENIZER + FEATURE_EXTRACTOR + PROCESSOR + PIPELINE + VOCODER + LOADING + CLI + CONVERSION + EVALUATION


@pytest.mark.parametrize("case", CASES)
def test_bad_input(world, case):
    if case.error is not None:
        with pytest.raises(case.error, match=case.match):
            case.run(world)
        return
    result, expected = case.run(world), case.expected(world)
    if isinstance(expected, torch.Tensor):
        torch.testing.assert_close(result, expected, rtol=0, atol=0)
    else:
        assert result == expected


@pytest.mark.parametrize("flags", [[], ["--force"], ["--resume"]])
def test_tokenize_into_one_of_its_inputs_or_a_folder_is_refused_before_any_work(world, tmp_path, flags):
    """Refused before a model loads (this --repo holds none), whatever the flags, and nothing is created or changed."""
    clip, folder, no_model = tmp_path / "clip.wav", tmp_path / "folder", tmp_path / "no-model"
    shutil.copy(world.file("speech.wav"), clip)
    folder.mkdir()
    no_model.mkdir()
    for output, message in [
        (clip, f"the output {clip} is one of the inputs; give another output file"),
        (folder, f"the output {folder} is a folder; give the path of a file (e.g. inside it)"),
    ]:
        status = world.cli("tokenize", str(tmp_path), "--repo", str(no_model), "-o", str(output), *flags)
        assert status == (2, f"spiritlm tokenize: error: {message}\n")
    assert clip.read_bytes() == world.file("speech.wav").read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["clip.wav", "folder", "no-model"] and os.listdir(folder) == []
