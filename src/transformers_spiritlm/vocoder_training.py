"""Training of a [`SpiritLMVocoder`] on the units of any speech tokenizer (`spiritlm train-vocoder`).

The recipe of unit HiFi-GAN (Polyak et al., 2021, "Speech Resynthesis from Discrete Disentangled Self-Supervised
Representations", on HiFi-GAN, Kong et al., 2020): random one-second-scale segments of audio and their frame-rate
units; a multi-period discriminator (periods 2, 3, 5, 7, 11) and a multi-scale discriminator (3 scales, the first
spectrally normalised); least-squares adversarial losses, feature matching (x2) and log-mel L1 (x45) for the
generator; the duration predictor learns `log(1 + frames)` of each deduplicated unit (MSE). AdamW (2e-4, betas 0.8,
0.99), both learning rates decayed by 0.999 per epoch. Everything is seeded, and a checkpoint after every
`checkpoint_every` steps holds the models, optimizers, schedulers and random generators, so a killed run resumes to
the losses of an uninterrupted one.

Not imported by the package: the library's inference path does not need it.
"""

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .audio import find_audio_files, prepare_audio
from .configuration_spiritlm import SPEECH_TOKENIZER_SUBFOLDER, SpiritLMVocoderConfig
from .speech_tokenizer.fcpe import slaney_mel_filter_bank
from .training_runs import load_checkpoint, pack_state, publish, save_checkpoint, training_output, unpack_state
from .vocoder import SpiritLMVocoder


MEL_LOSS_WEIGHT, FEATURE_MATCHING_WEIGHT = 45.0, 2.0
PERIODS = (2, 3, 5, 7, 11)
PERIOD_CHANNELS = (32, 128, 512, 1024, 1024)
# (out channels, kernel, stride, groups) of each scale discriminator layer, the last before the 1-channel output.
SCALE_LAYERS = (
    (128, 15, 1, 1),
    (128, 41, 2, 4),
    (256, 41, 2, 16),
    (512, 41, 4, 16),
    (1024, 41, 4, 16),
    (1024, 41, 1, 16),
    (1024, 5, 1, 1),
)


class LogMelSpectrogram(nn.Module):
    """HiFi-GAN's log-mel spectrogram: `(batch, samples)` -> `(batch, num_mel_bins, samples // hop_length)`, a
    reflect-padded Hann STFT, Slaney mel filters (librosa's), `log(max(mel, 1e-5))`."""

    def __init__(
        self,
        sampling_rate: int = 16000,
        n_fft: int = 1024,
        hop_length: int = 256,
        num_mel_bins: int = 80,
        fmin: float = 0.0,
        fmax: float = 8000.0,
    ):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        filters = slaney_mel_filter_bank(sampling_rate, n_fft, num_mel_bins, fmin, fmax)
        self.register_buffer("mel_filters", torch.from_numpy(filters), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        padding = (self.n_fft - self.hop_length) // 2
        padded = nn.functional.pad(waveform[:, None], (padding, padding), mode="reflect")[:, 0]
        spectrum = torch.stft(
            padded, self.n_fft, self.hop_length, window=self.window, center=False, return_complex=True
        )
        magnitude = torch.sqrt(spectrum.real.pow(2) + spectrum.imag.pow(2) + 1e-9)
        return torch.log(torch.clamp(self.mel_filters @ magnitude, min=1e-5))


def _width(channels: int, scale: float) -> int:
    return max(1, round(channels * scale))


def _scores_and_features(
    convs: nn.ModuleList, conv_post: nn.Module, hidden: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A HiFi-GAN discriminator's layers on `hidden`: its scores, flattened per item, and every layer's feature map."""
    features = []
    for conv in convs:
        hidden = nn.functional.leaky_relu(conv(hidden), 0.1)
        features.append(hidden)
    hidden = conv_post(hidden)
    features.append(hidden)
    return hidden.flatten(1), features


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN discriminator of one period: the waveform folded into `(samples / period, period)`, 2-D convolutions
    along time."""

    def __init__(self, period: int, scale: float = 1.0):
        super().__init__()
        self.period = period
        norm = nn.utils.parametrizations.weight_norm
        channels = [1, *(_width(width, scale) for width in PERIOD_CHANNELS)]
        self.convs = nn.ModuleList(
            norm(nn.Conv2d(fan_in, fan_out, (5, 1), (3 if index < 4 else 1, 1), padding=(2, 0)))
            for index, (fan_in, fan_out) in enumerate(zip(channels[:-1], channels[1:]))
        )
        self.conv_post = norm(nn.Conv2d(channels[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """`(batch, samples)` -> `(batch, scores)` and the feature maps of every layer."""
        samples = waveform.shape[-1]
        padding = (-samples) % self.period
        hidden = nn.functional.pad(waveform[:, None], (0, padding), mode="reflect")
        return _scores_and_features(self.convs, self.conv_post, hidden.view(hidden.shape[0], 1, -1, self.period))


class ScaleDiscriminator(nn.Module):
    """HiFi-GAN discriminator of one scale: grouped 1-D convolutions over the (average-pooled) waveform."""

    def __init__(self, spectral_norm: bool = False, scale: float = 1.0):
        super().__init__()
        norm = nn.utils.parametrizations.spectral_norm if spectral_norm else nn.utils.parametrizations.weight_norm
        convs, fan_in = [], 1
        for channels, kernel, stride, groups in SCALE_LAYERS:
            fan_out = _width(channels, scale)
            groups = math.gcd(groups, fan_in, fan_out)
            convs.append(norm(nn.Conv1d(fan_in, fan_out, kernel, stride, padding=(kernel - 1) // 2, groups=groups)))
            fan_in = fan_out
        self.convs = nn.ModuleList(convs)
        self.conv_post = norm(nn.Conv1d(fan_in, 1, 3, padding=1))

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """`(batch, samples)` -> `(batch, scores)` and the feature maps of every layer."""
        return _scores_and_features(self.convs, self.conv_post, waveform[:, None])


class HifiGanDiscriminator(nn.Module):
    """The multi-period and multi-scale discriminators of HiFi-GAN together; `scale` multiplies every width (1 is
    the original size)."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.periods = nn.ModuleList(PeriodDiscriminator(period, scale) for period in PERIODS)
        self.scales = nn.ModuleList(ScaleDiscriminator(index == 0, scale) for index in range(3))
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, waveform: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        """Scores and feature maps of each of the 8 discriminators."""
        outputs = [discriminator(waveform) for discriminator in self.periods]
        for index, discriminator in enumerate(self.scales):
            if index:
                waveform = self.pool(waveform[:, None])[:, 0]
            outputs.append(discriminator(waveform))
        return outputs


def discriminator_loss(real: Sequence, fake: Sequence) -> torch.Tensor:
    """Least-squares GAN loss of the discriminators: real scores toward 1, generated ones toward 0."""
    return sum(
        torch.mean((1 - real_score) ** 2) + torch.mean(fake_score**2)
        for (real_score, _), (fake_score, _) in zip(real, fake)
    )


def adversarial_loss(fake: Sequence) -> torch.Tensor:
    """Least-squares GAN loss of the generator: generated scores toward 1."""
    return sum(torch.mean((1 - score) ** 2) for score, _ in fake)


def feature_matching_loss(real: Sequence, fake: Sequence) -> torch.Tensor:
    """L1 between the discriminators' feature maps of real and generated audio, summed over layers."""
    return sum(
        torch.mean(torch.abs(real_map.detach() - fake_map))
        for (_, real_maps), (_, fake_maps) in zip(real, fake)
        for real_map, fake_map in zip(real_maps, fake_maps)
    )


def duration_loss(vocoder: SpiritLMVocoder, units: torch.LongTensor) -> torch.Tensor:
    """MSE of the duration predictor's log durations against `log(1 + frames)` of each run of equal units in each
    row of `(batch, frames)` frame-rate units."""
    losses = []
    for row in units:
        deduplicated, frames = torch.unique_consecutive(row, return_counts=True)
        predicted = vocoder.duration_predictor(vocoder.hubert_embedding(deduplicated))
        losses.append(nn.functional.mse_loss(predicted, torch.log1p(frames.float())))
    return torch.stack(losses).mean()


@dataclass
class UnitAudio:
    """One training file: its 16 kHz waveform, its frame-rate units and its speaker index (`None`: single speaker)."""

    waveform: torch.Tensor
    units: torch.LongTensor
    speaker: int | None = None


def load_unit_audio(
    files: Sequence[str | os.PathLike], speech_tokenizer, speakers: Sequence[int | None] | None = None
) -> list[UnitAudio]:
    """Loads each file at the speech tokenizer's rate with its hubert units (`encode_units`), waveform cut to the
    units' span (`frames * hop_length` samples)."""
    hop = speech_tokenizer.config.hop_length
    items = []
    for index, path in enumerate(files):
        waveform = prepare_audio([str(path)], None, speech_tokenizer.config.sampling_rate)[0]
        units = torch.tensor(speech_tokenizer.encode_units(waveform, speech_tokenizer.config.sampling_rate)["hubert"])
        waveform = nn.functional.pad(waveform, (0, max(0, len(units) * hop - len(waveform))))
        speaker = None if speakers is None else speakers[index]
        items.append(UnitAudio(waveform[: len(units) * hop], units, speaker))
    return items


@torch.no_grad()
def mel_l1(vocoder: SpiritLMVocoder, items: Sequence[UnitAudio], mel: LogMelSpectrogram | None = None) -> float:
    """Mean log-mel L1 between each item's audio and the vocoder's synthesis of its frame-rate units (the measure
    of the mel loss, on whole clips)."""
    mel = mel or LogMelSpectrogram(vocoder.config.sampling_rate).to(vocoder.device)
    was_training = vocoder.training
    vocoder.eval()
    total = 0.0
    for item in items:
        speaker = 0 if item.speaker is None else item.speaker
        audio = vocoder(item.units[None].to(vocoder.device), speaker_id=speaker, dur_pred=False).waveform
        total += float(torch.mean(torch.abs(mel(audio.float()) - mel(item.waveform[None].to(vocoder.device)))))
    vocoder.train(was_training)
    return total / len(items)


@dataclass
class VocoderTrainingResult:
    """What `train_vocoder` did: the losses of every step, `{"mel", "adversarial", "feature_matching", "duration",
    "discriminator"}` lists (a resumed run's include the steps before its checkpoint), `[step, mel L1]` on the
    validation files at each checkpoint and at the end (see [`mel_l1`]), and the step it resumed from (0 for a fresh
    run)."""

    losses: dict[str, list[float]] = field(default_factory=dict)
    validation: list[list[float]] = field(default_factory=list)
    resumed_from: int = 0


def _speakers(files: Sequence[Path], audio_dir: Path) -> tuple[list[str], list[int]]:
    """Speaker names (the first-level sub-folders of `audio_dir`) and each file's speaker index."""
    names = [
        path.relative_to(audio_dir).parts[0] if len(path.relative_to(audio_dir).parts) > 1 else "" for path in files
    ]
    if "" in names:
        raise ValueError(f"speaker_folders: {files[names.index('')]} is not inside a speaker folder of {audio_dir}")
    speakers = sorted(set(names))
    return speakers, [speakers.index(name) for name in names]


def train_vocoder(
    audio_dir: str | os.PathLike,
    speech_tokenizer: str | os.PathLike,
    output: str | os.PathLike,
    steps: int,
    batch_size: int = 16,
    segment_frames: int = 14,
    learning_rate: float = 2e-4,
    seed: int = 0,
    vocoder_config: dict | None = None,
    discriminator_scale: float = 1.0,
    speaker_folders: bool = False,
    checkpoint_every: int = 100,
    validation_files: Sequence[str | os.PathLike] = (),
    device: str | torch.device = "cpu",
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
) -> VocoderTrainingResult:
    """
    Trains a unit HiFi-GAN with a duration predictor on the audio under `audio_dir` and writes the
    [`SpiritLMVocoder`] to `output` (`save_pretrained`; put it in a repo's `vocoder/` folder).

    Args:
        audio_dir: folder searched recursively for wav / flac / ogg / mp3 files.
        speech_tokenizer: a speech tokenizer folder, or a repo with one in `speech_tokenizer/`: its hubert units are
            what the vocoder learns to speak (`num_hubert_units` and the hop are taken from it).
        steps: generator / discriminator updates in all.
        batch_size, segment_frames: random segments per step and their length in units (14 = 0.56 s at 25 Hz).
        vocoder_config: [`SpiritLMVocoderConfig`] fields (generator shape, embedding width, ...) over the defaults.
        discriminator_scale: multiplies the discriminators' widths (1 = HiFi-GAN's).
        speaker_folders: one speaker per first-level sub-folder of `audio_dir` (a speaker embedding, named after the
            folders); otherwise a single-speaker vocoder.
        checkpoint_every: steps between checkpoints (`<output>.checkpoint.safetensors`); a killed run resumes from
            the last one.
        validation_files: held-out audio files whose mel L1 ([`mel_l1`]) is measured at each checkpoint and at the
            end (`VocoderTrainingResult.validation`).
        resume, force: continue an earlier run's checkpoint; replace an existing `output` (and discard a checkpoint).
    """
    from .speech_tokenizer.modeling_speech_tokenizer import SpiritLMSpeechTokenizer

    if steps < 1 or batch_size < 1 or segment_frames < 1 or checkpoint_every < 1:
        raise ValueError("steps, batch_size, segment_frames and checkpoint_every must be positive")
    audio_dir, output = Path(audio_dir), Path(output)
    files = find_audio_files([audio_dir])
    tokenizer_dir = Path(speech_tokenizer)
    if (tokenizer_dir / SPEECH_TOKENIZER_SUBFOLDER / "config.json").is_file():
        tokenizer_dir = tokenizer_dir / SPEECH_TOKENIZER_SUBFOLDER
    tokenizer = SpiritLMSpeechTokenizer.from_pretrained(tokenizer_dir).eval()
    speaker_names, speakers = _speakers(files, audio_dir) if speaker_folders else (None, None)
    config = SpiritLMVocoderConfig(
        **{
            "num_hubert_units": tokenizer.config.num_hubert_units,
            "hubert_hop_size": tokenizer.config.hop_length,
            "sampling_rate": tokenizer.config.sampling_rate,
            "num_speakers": None if speaker_names is None else len(speaker_names),
            "speakers": speaker_names,
            **(vocoder_config or {}),
        }
    )
    if config.hop_length != tokenizer.config.hop_length:
        raise ValueError(
            f"the vocoder's upsample_rates {list(config.upsample_rates)} make {config.hop_length} samples per unit, "
            f"but the speech tokenizer gives one unit per {tokenizer.config.hop_length} samples"
        )
    if config.duration_predictor_hidden_size is None:
        raise ValueError("train_vocoder trains the duration predictor: keep duration_predictor_hidden_size set")
    settings = {
        "audio": [str(path) for path in files],
        "speech_tokenizer": str(tokenizer_dir.resolve()),
        "steps": steps,
        "batch_size": batch_size,
        "segment_frames": segment_frames,
        "learning_rate": learning_rate,
        "seed": seed,
        "vocoder_config": config.to_dict(),
        "discriminator_scale": discriminator_scale,
        "speaker_folders": speaker_folders,
        "validation_files": [str(path) for path in validation_files],
    }
    settings["vocoder_config"].pop("transformers_version", None)

    with training_output(output, resume=resume, force=force) as checkpoint:
        with torch.inference_mode():
            items = [item for item in load_unit_audio(files, tokenizer, speakers) if len(item.units) >= segment_frames]
            held_out = load_unit_audio(validation_files, tokenizer)
        if not items:
            raise ValueError(
                f"no audio file in {audio_dir} is {segment_frames} units ({segment_frames / tokenizer.config.frame_rate:g} "
                "s) long; give longer audio or a smaller segment_frames"
            )
        torch.manual_seed(seed)
        vocoder = SpiritLMVocoder(config).to(device).train()
        discriminator = HifiGanDiscriminator(discriminator_scale).to(device).train()
        mel = LogMelSpectrogram(config.sampling_rate).to(device)
        optimizer_g = torch.optim.AdamW(vocoder.parameters(), learning_rate, betas=(0.8, 0.99))
        optimizer_d = torch.optim.AdamW(discriminator.parameters(), learning_rate, betas=(0.8, 0.99))
        scheduler_g = torch.optim.lr_scheduler.ExponentialLR(optimizer_g, gamma=0.999)
        scheduler_d = torch.optim.lr_scheduler.ExponentialLR(optimizer_d, gamma=0.999)
        sampler = torch.Generator().manual_seed(seed)
        steps_per_epoch = max(1, len(items) // batch_size)
        losses: dict[str, list[float]] = {
            name: [] for name in ("mel", "adversarial", "feature_matching", "duration", "discriminator")
        }
        modules = {
            "vocoder": vocoder,
            "discriminator": discriminator,
            "optimizer_g": optimizer_g,
            "optimizer_d": optimizer_d,
            "scheduler_g": scheduler_g,
            "scheduler_d": scheduler_d,
        }
        start, validation = 0, []
        loaded = load_checkpoint(checkpoint, settings)
        if loaded is not None:
            tensors, state = loaded
            restored = unpack_state(state["tree"], tensors)
            for name, module in modules.items():
                module.load_state_dict(restored[name])
            sampler.set_state(restored["sampler"])
            torch.set_rng_state(restored["torch_rng"])
            start, losses, validation = state["step"], state["losses"], state["validation"]

        hop = config.hop_length
        for step in tqdm(range(start, steps), initial=start, total=steps, desc="vocoder", disable=not progress):
            picks = torch.randint(len(items), (batch_size,), generator=sampler).tolist()
            units, audio, voices = [], [], []
            for index in picks:
                item = items[index]
                offset = int(torch.randint(len(item.units) - segment_frames + 1, (1,), generator=sampler))
                units.append(item.units[offset : offset + segment_frames])
                audio.append(item.waveform[offset * hop : (offset + segment_frames) * hop])
                voices.append(0 if item.speaker is None else item.speaker)
            units, audio = torch.stack(units).to(device), torch.stack(audio).to(device)
            generated = vocoder(units, speaker_id=torch.tensor(voices), dur_pred=False).waveform

            optimizer_d.zero_grad()
            loss_d = discriminator_loss(discriminator(audio), discriminator(generated.detach()))
            loss_d.backward()
            optimizer_d.step()

            optimizer_g.zero_grad()
            real, fake = discriminator(audio), discriminator(generated)
            loss_mel = nn.functional.l1_loss(mel(generated), mel(audio))
            loss_adv, loss_fm = adversarial_loss(fake), feature_matching_loss(real, fake)
            loss_dur = duration_loss(vocoder, units)
            loss_g = loss_adv + FEATURE_MATCHING_WEIGHT * loss_fm + MEL_LOSS_WEIGHT * loss_mel + loss_dur
            loss_g.backward()
            optimizer_g.step()
            if (step + 1) % steps_per_epoch == 0:
                scheduler_g.step()
                scheduler_d.step()

            for name, value in (
                ("mel", loss_mel),
                ("adversarial", loss_adv),
                ("feature_matching", loss_fm),
                ("duration", loss_dur),
                ("discriminator", loss_d),
            ):
                losses[name].append(float(value.detach()))
            if held_out and ((step + 1) % checkpoint_every == 0 or step + 1 == steps):
                validation.append([step + 1, mel_l1(vocoder, held_out, mel)])
            if (step + 1) % checkpoint_every == 0 and step + 1 < steps:
                state = {name: module.state_dict() for name, module in modules.items()}
                state.update(sampler=sampler.get_state(), torch_rng=torch.get_rng_state())
                tree, tensors = pack_state(state)
                save_checkpoint(
                    checkpoint,
                    tensors,
                    {"settings": settings, "step": step + 1, "losses": losses, "validation": validation, "tree": tree},
                )

        vocoder.eval()
        publish(output, lambda folder: vocoder.cpu().save_pretrained(folder))
        checkpoint.unlink(missing_ok=True)
    return VocoderTrainingResult(losses, validation, resumed_from=start)


__all__ = [
    "HifiGanDiscriminator",
    "LogMelSpectrogram",
    "PeriodDiscriminator",
    "ScaleDiscriminator",
    "UnitAudio",
    "VocoderTrainingResult",
    "adversarial_loss",
    "discriminator_loss",
    "duration_loss",
    "feature_matching_loss",
    "load_unit_audio",
    "mel_l1",
    "train_vocoder",
]
