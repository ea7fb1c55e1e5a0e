"""Pitch units of the expressive speech tokenizer: 16 kHz audio → F0 (FCPE or YAAPT) → F0 VQ-VAE → 64 codes at 12.5 Hz.

Same computation as the official `F0Tokenizer`: an F0 track with one value per 80 samples (`samples // 80 + 1`
values) and its voicing flags, the mean pitch of the voiced frames subtracted when the VQ-VAE was trained on
normalised F0 (per utterance; the official code has no speaker statistics for SPIRIT LM), then the convolutional
encoder of the VQ-VAE (level 0, which downsamples by 16) and a nearest-codeword lookup. Only what encoding needs is
kept: the VQ-VAE decoder and its other levels are dropped at conversion.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from ..configuration_spiritlm import F0_EXTRACTORS, PitchUnitEncoderConfig
from ..extras import install_hint
from .fcpe import SpiritLMFCPEF0Extractor, check_waveforms


YAAPT_INSTALL_HINT = (
    f"the 'yaapt' pitch extractor needs the amfm-decompy package: {install_hint('yaapt')}, or pip install "
    "amfm-decompy; or use f0_extractor='fcpe'"
)


@dataclass
class PitchUnitEncoderOutput(ModelOutput):
    """
    units (`torch.LongTensor` of shape `(batch, units)`): pitch units in `[0, l_bins)`, -1 past `unit_lengths`.
    unit_lengths (`torch.LongTensor` of shape `(batch,)`): `f0_lengths // 16` (the VQ-VAE downsampling).
    f0 (`torch.FloatTensor` of shape `(batch, frames)`): F0 in Hz fed to the VQ-VAE, before normalisation.
    voiced (`torch.BoolTensor` of shape `(batch, frames)`): voicing of each F0 frame.
    f0_lengths (`torch.LongTensor` of shape `(batch,)`): `samples // hop_length + 1`.
    """

    units: torch.LongTensor | None = None
    unit_lengths: torch.LongTensor | None = None
    f0: torch.FloatTensor | None = None
    voiced: torch.BoolTensor | None = None
    f0_lengths: torch.LongTensor | None = None


def _mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    return (torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None])[:, None, :]


class SpiritLMF0ResidualBlock(nn.Module):
    """ReLU → dilated kernel-3 conv → ReLU → 1x1 conv, added back (scaled) to the input."""

    def __init__(self, channels: int, hidden_channels: int, dilation: int, scale: float):
        super().__init__()
        self.conv = nn.Conv1d(channels, hidden_channels, 3, padding=dilation, dilation=dilation)
        self.proj = nn.Conv1d(hidden_channels, channels, 1)
        self.scale = scale

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        residual = self.proj(F.relu(self.conv(F.relu(hidden_states) * mask)))
        return hidden_states + self.scale * residual


class SpiritLMF0DownsamplingBlock(nn.Module):
    """A strided convolution followed by a stack of dilated residual blocks."""

    def __init__(self, config: PitchUnitEncoderConfig, in_channels: int, stride: int, int_form: bool):
        super().__init__()
        # The official encoder sizes kernels differently for list-valued and int-valued strides.
        if int_form or stride % 2 == 0:
            kernel_size, padding = 2 * stride, stride // 2
        else:
            kernel_size, padding = 2 * stride + 1, stride // 2 + 1
        self.conv = nn.Conv1d(in_channels, config.width, kernel_size, stride, padding)
        hidden = int(config.m_conv * config.width)
        scale = 1.0 / math.sqrt(config.depth) if config.res_scale else 1.0
        cycle = config.dilation_cycle
        self.res_blocks = nn.ModuleList(
            SpiritLMF0ResidualBlock(
                config.width, hidden, config.dilation_growth_rate ** (i % cycle if cycle else i), scale
            )
            for i in range(config.depth)
        )

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        return (lengths + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1

    def forward(self, hidden_states: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden_states = self.conv(hidden_states * _mask(lengths, hidden_states.shape[-1]))
        lengths = self.output_lengths(lengths).clamp(min=0)
        mask = _mask(lengths, hidden_states.shape[-1])
        for block in self.res_blocks:
            hidden_states = block(hidden_states, mask)
        return hidden_states, lengths


class SpiritLMF0VQVAEEncoder(nn.Module):
    """Level-0 encoder of the F0 VQ-VAE: `(batch, 2, frames)` (F0, voicing) → `(batch, output_emb_width, frames//16)`.

    Every convolution sees zeros past each sequence's length, so a padded batch equals one sequence at a time.
    """

    def __init__(self, config: PitchUnitEncoderConfig):
        super().__init__()
        blocks, in_channels = [], config.input_emb_width
        int_form = not isinstance(config.stride_t, list)
        for stride, count in config.strided_convolutions_spec():
            for _ in range(count):
                blocks.append(SpiritLMF0DownsamplingBlock(config, in_channels, stride, int_form))
                in_channels = config.width
        self.down_blocks = nn.ModuleList(blocks)
        # The official int-valued form with down_t == 0 has no layer at all.
        has_proj = bool(blocks) or not int_form
        self.proj = nn.Conv1d(config.width, config.output_emb_width, 3, padding=1) if has_proj else None

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for block in self.down_blocks:
            lengths = block.output_lengths(lengths).clamp(min=0)
        return lengths

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden_states = features
        for block in self.down_blocks:
            hidden_states, lengths = block(hidden_states, lengths)
        if self.proj is not None:
            hidden_states = self.proj(hidden_states * _mask(lengths, hidden_states.shape[-1]))
        return hidden_states, lengths


class SpiritLMF0Codebook(nn.Module):
    """Nearest-codeword lookup of the VQ-VAE bottleneck: `(batch, channels, units)` → `(batch, units)` code ids.

    A `2 * emb_width`-channel input is first folded by adding its two halves, as the official bottleneck does.
    """

    def __init__(self, config: PitchUnitEncoderConfig):
        super().__init__()
        self.emb_width = config.emb_width
        self.codebook = nn.Parameter(torch.zeros(config.l_bins, config.emb_width), requires_grad=False)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        batch, channels, length = latents.shape
        flat = latents.permute(0, 2, 1).reshape(-1, channels)
        if channels == 2 * self.emb_width:
            flat = flat[:, : self.emb_width] + flat[:, self.emb_width :]
        codes_t = self.codebook.t()
        # Squared distances expanded as the official code does, so near-ties resolve identically.
        distance = (
            torch.sum(flat**2, dim=-1, keepdim=True)
            - 2 * torch.matmul(flat, codes_t)
            + torch.sum(codes_t**2, dim=0, keepdim=True)
        )
        return torch.min(distance, dim=-1).indices.view(batch, length)


class SpiritLMYAAPTF0Extractor(nn.Module):
    """YAAPT F0 (amfm-decompy's pYAAPT) with the official settings: 20 ms frames every `hop_length` samples,
    `nccf_thresh1=0.25`, 25 ms TDA frames, on peak-normalised audio; unvoiced frames linearly interpolated.
    Runs on CPU in numpy, one waveform at a time. Raises `ImportError` with the install command without the extra.
    """

    def __init__(self, sampling_rate: int = 16000, hop_length: int = 80):
        super().__init__()
        try:
            import amfm_decompy.basic_tools as basic
            import amfm_decompy.pYAAPT as pyaapt
        except ImportError as error:
            raise ImportError(YAAPT_INSTALL_HINT) from error
        self._basic, self._pyaapt = basic, pyaapt
        self.sampling_rate = sampling_rate
        self.hop_length = hop_length

    def track(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One 1-D float waveform → (F0 in Hz, float64; voicing, bool), `len // hop_length + 1` values."""
        frame_ms = 20.0
        waveform = waveform[: len(waveform) // self.hop_length * self.hop_length].astype(np.float32)
        # Peak normalisation with librosa's rounding: float64 division stored as float32, then a float32 gain.
        peak = np.max(np.abs(waveform).astype(np.float64)) if len(waveform) else 0.0
        if peak < np.finfo(np.float32).tiny:
            peak = np.float64(1.0)
        waveform = (waveform / peak).astype(np.float32) * np.float32(0.95)
        if self.hop_length == 80:
            half_frame = int(frame_ms / 1000 * self.sampling_rate) // 2
            waveform = np.pad(waveform, (half_frame, half_frame))
        pitch = self._pyaapt.yaapt(
            self._basic.SignalObj(waveform, self.sampling_rate),
            frame_length=frame_ms,
            frame_space=self.hop_length / self.sampling_rate * 1000,
            nccf_thresh1=0.25,
            tda_frame_length=25.0,
        )
        f0 = np.asarray(pitch.samp_values, dtype=np.float64)
        voiced_index = np.flatnonzero(f0 != 0)
        # As the official extractor: interpolate only between at least two voiced frames.
        if len(voiced_index) > 1:
            f0 = np.interp(np.arange(len(f0)), voiced_index, f0[voiced_index])
        return f0, np.asarray(pitch.vuv, dtype=bool)

    @torch.no_grad()
    def forward(
        self, input_values: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Same inputs and outputs as [`SpiritLMFCPEF0Extractor.forward`]; `f0` is float64 on the input's device."""
        input_values, lengths = check_waveforms(input_values, lengths, "SpiritLMYAAPTF0Extractor")
        tracks = [self.track(row[:length].float().cpu().numpy()) for row, length in zip(input_values, lengths)]
        f0_lengths = torch.tensor([len(f0) for f0, _ in tracks], dtype=torch.long)
        f0 = torch.zeros(len(tracks), int(f0_lengths.max()), dtype=torch.float64)
        voiced = torch.zeros(f0.shape, dtype=torch.bool)
        for index, (track, flags) in enumerate(tracks):
            f0[index, : len(track)] = torch.from_numpy(track)
            voiced[index, : len(flags)] = torch.from_numpy(flags)
        return f0.to(input_values.device), voiced.to(input_values.device), f0_lengths


class SpiritLMPitchUnitEncoder(nn.Module):
    """Expressive pitch tokenizer: 16 kHz mono waveforms → pitch units (`l_bins` = 64 codes, 12.5 Hz).

    State dict (safetensors-ready): `fcpe.*` ([`SpiritLMFCPEF0Extractor`]), `encoder.*` ([`SpiritLMF0VQVAEEncoder`])
    and `codebook.codebook` (`(l_bins, emb_width)`).

    ```python
    >>> encoder = SpiritLMPitchUnitEncoder(config_dict)          # then load_state_dict(converted weights)
    >>> out = encoder(waveforms, lengths)                # (batch, samples) raw float32 audio at 16 kHz
    >>> out.units[0, : out.unit_lengths[0]].tolist()
    >>> encoder.encode([wave_a, wave_b])                 # list of 1-D arrays/tensors -> list of unit lists
    ```
    """

    def __init__(self, config: PitchUnitEncoderConfig | dict | None = None):
        super().__init__()
        if isinstance(config, dict):
            config = PitchUnitEncoderConfig.from_dict(config)
        self.config = config or PitchUnitEncoderConfig()
        self.fcpe = SpiritLMFCPEF0Extractor(self.config.fcpe)
        self.encoder = SpiritLMF0VQVAEEncoder(self.config)
        self.codebook = SpiritLMF0Codebook(self.config)
        self._yaapt = None

    def num_units(self, lengths: torch.Tensor) -> torch.Tensor:
        """Pitch units for waveforms of `lengths` samples: `(lengths // hop_length + 1) // 16`."""
        return self.encoder.output_lengths(torch.as_tensor(lengths) // self.config.hop_length + 1)

    def extract_f0(
        self, input_values: torch.Tensor, lengths: torch.Tensor | None = None, f0_extractor: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`(f0, voiced, f0_lengths)` of the chosen extractor (`config.f0_extractor` by default)."""
        f0_extractor = f0_extractor or self.config.f0_extractor
        if f0_extractor == "fcpe":
            return self.fcpe(input_values, lengths)
        if f0_extractor == "yaapt":
            if self._yaapt is None:
                self._yaapt = SpiritLMYAAPTF0Extractor(self.config.sampling_rate, self.config.hop_length)
            return self._yaapt(input_values, lengths)
        raise ValueError(f"unknown f0_extractor {f0_extractor!r}; use one of {', '.join(F0_EXTRACTORS)}")

    def quantize_f0(
        self, f0: torch.Tensor, voiced: torch.Tensor, f0_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """F0 `(batch, frames)` (Hz) + voicing → `(units, unit_lengths)`, units -1 past each length.

        With `normalize_f0`, each utterance's mean F0 over its voiced frames is subtracted from its non-zero F0
        values (in the F0's own dtype, as the official code); an utterance without voiced frames is left as is.
        """
        f0_lengths = torch.as_tensor(f0_lengths, dtype=torch.long, device=f0.device)
        if self.config.normalize_f0:
            f0 = f0.clone()
            for index, length in enumerate(f0_lengths.tolist()):
                track, flags = f0[index, :length], voiced[index, :length]
                if bool(flags.any()):
                    nonzero = track != 0
                    track[nonzero] = track[nonzero] - track[flags].mean()
        weight = self.codebook.codebook
        features = torch.stack([f0.to(weight.dtype), voiced.to(weight.dtype)], dim=1)
        features = features * _mask(f0_lengths, features.shape[-1])
        unit_lengths = self.encoder.output_lengths(f0_lengths)
        max_units = int(unit_lengths.max()) if len(unit_lengths) else 0
        units = torch.full((len(f0_lengths), max_units), -1, dtype=torch.long, device=f0.device)
        if max_units == 0:
            return units, unit_lengths
        latents, _ = self.encoder(features, f0_lengths)
        codes = self.codebook(latents[..., :max_units])
        valid = _mask(unit_lengths, max_units)[:, 0]
        return torch.where(valid, codes, units), unit_lengths

    @torch.no_grad()
    def forward(
        self, input_values: torch.Tensor, lengths: torch.Tensor | None = None, f0_extractor: str | None = None
    ) -> PitchUnitEncoderOutput:
        """
        Args:
            input_values (`torch.Tensor` of shape `(batch, samples)` or `(samples,)`): raw (not normalised) float
                mono audio at 16 kHz, right-padded in a batch.
            lengths (`torch.Tensor` of shape `(batch,)`, *optional*): valid samples per waveform (default: all).
            f0_extractor (`str`, *optional*): `"fcpe"` or `"yaapt"`, overriding `config.f0_extractor`.

        Waveforms shorter than 1200 samples (fewer than 16 F0 frames, the VQ-VAE downsampling) give no unit.
        """
        f0, voiced, f0_lengths = self.extract_f0(input_values, lengths, f0_extractor)
        units, unit_lengths = self.quantize_f0(f0, voiced, f0_lengths)
        return PitchUnitEncoderOutput(
            units=units, unit_lengths=unit_lengths, f0=f0, voiced=voiced, f0_lengths=f0_lengths
        )

    @torch.no_grad()
    def encode(self, waveforms, f0_extractor: str | None = None) -> list[list[int]]:
        """Pitch units of each 1-D 16 kHz waveform (numpy array or tensor) of a list, computed as one batch."""
        if isinstance(waveforms, (np.ndarray, torch.Tensor)) and waveforms.ndim == 1:
            waveforms = [waveforms]
        tensors = [torch.as_tensor(waveform) for waveform in waveforms]
        if not tensors or any(tensor.ndim != 1 for tensor in tensors):
            raise ValueError("encode expects a non-empty list of 1-D mono waveforms")
        lengths = torch.tensor([len(tensor) for tensor in tensors])
        batch = nn.utils.rnn.pad_sequence(tensors, batch_first=True)
        output = self(batch.to(self.codebook.codebook.device), lengths, f0_extractor)
        return [row[:length].tolist() for row, length in zip(output.units, output.unit_lengths.tolist())]


# Names before the SpiritLM prefix (#21), kept importable.
PitchUnitEncoder = SpiritLMPitchUnitEncoder
YAAPTF0Extractor = SpiritLMYAAPTF0Extractor
