"""FCPE pitch (F0) estimation for the expressive speech tokenizer, inference only.

FCPE (Fast Context-based Pitch Estimation, the model of the MIT-licensed `torchfcpe` package) predicts, for every
10 ms mel frame, a score for each of `num_cent_bins` pitch classes; a weighted mean of the nine classes around the
best one gives the pitch in cents. The official SPIRIT LM tokenizer calls it on 16 kHz audio with the settings kept
in [`FCPEConfig`] (local-argmax decoder, voicing threshold 0.05, unvoiced below 50 Hz, clamped at 1100 Hz, unvoiced
frames linearly interpolated) and resamples the track to one value per 80 samples (`samples // 80 + 1` values).

This module re-implements that computation; it never imports `torchfcpe`. The weights are those of
`torchfcpe/assets/fcpe_c_v001.pt` (the conv-only variant), stored in the converted speech tokenizer checkpoint by
`conversion/convert_pitch.py`.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..audio import check_waveform_batch
from ..configuration_spiritlm import FCPEConfig


# Constants of the torchfcpe mel front end (not configurable there either).
_LOG_CLIP = 1e-5
_MAGNITUDE_EPS = 1e-9


def _hz_to_slaney_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (3 mel per 200 Hz) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear_step, log_start_hz, log_step = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    log_start_mel = log_start_hz / linear_step
    mel = hz / linear_step
    high = hz >= log_start_hz
    mel[high] = log_start_mel + np.log(hz[high] / log_start_hz) / log_step
    return mel


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    linear_step, log_start_hz, log_step = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    log_start_mel = log_start_hz / linear_step
    hz = linear_step * mel
    high = mel >= log_start_mel
    hz[high] = log_start_hz * np.exp(log_step * (mel[high] - log_start_mel))
    return hz


def slaney_mel_filter_bank(sampling_rate: int, n_fft: int, num_mel_bins: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular, area-normalised ("slaney") mel filters of shape `(num_mel_bins, n_fft // 2 + 1)`, float32.

    Same values as `librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax)` (its defaults `htk=False`,
    `norm="slaney"`, float32 output), which FCPE was trained with.
    """
    fft_hz = np.fft.rfftfreq(n_fft, d=1.0 / sampling_rate)
    edges_mel = np.linspace(
        _hz_to_slaney_mel(np.array([fmin]))[0], _hz_to_slaney_mel(np.array([fmax]))[0], num_mel_bins + 2
    )
    edges_hz = _slaney_mel_to_hz(edges_mel)
    widths = np.diff(edges_hz)
    distance = edges_hz[:, None] - fft_hz[None, :]
    filters = np.zeros((num_mel_bins, len(fft_hz)), dtype=np.float32)
    for band in range(num_mel_bins):
        rising = -distance[band] / widths[band]
        falling = distance[band + 2] / widths[band + 1]
        filters[band] = np.maximum(0.0, np.minimum(rising, falling))
    # The float32 filters are rescaled in float64 and stored back as float32, as librosa does.
    filters *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return filters


def _frame_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


class SpiritLMFCPEMelExtractor(nn.Module):
    """Log-mel front end of FCPE: `(batch, samples)` waveform → `(batch, samples // mel_hop_length + 1, num_mel_bins)`.

    The STFT is uncentred but each waveform is padded by `(win_length - mel_hop_length) // 2` samples on the left
    and at least as much on the right (reflection, or zeros when the waveform is too short to reflect); the frame
    count is then fitted to `samples // mel_hop_length + 1` by repeating the last frame. Padding is per waveform, so
    a batch gives the same frames as one waveform at a time; frames past a waveform's length are zero.
    """

    def __init__(self, config: FCPEConfig):
        super().__init__()
        self.n_fft = config.n_fft
        self.win_length = config.win_length
        self.hop_length = config.mel_hop_length
        filters = slaney_mel_filter_bank(
            config.sampling_rate, config.n_fft, config.num_mel_bins, config.mel_fmin, config.mel_fmax
        )
        self.register_buffer("mel_filters", torch.from_numpy(filters))
        self.register_buffer("window", torch.hann_window(config.win_length))

    def num_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        return lengths // self.hop_length + 1

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        pad_left = (self.win_length - self.hop_length) // 2
        padded = []
        for waveform, length in zip(waveforms, lengths.tolist()):
            waveform = waveform[:length]
            pad_right = max((self.win_length - self.hop_length + 1) // 2, self.win_length - length - pad_left)
            mode = "reflect" if pad_right < length else "constant"
            padded.append(F.pad(waveform[None, None], (pad_left, pad_right), mode=mode)[0, 0])
        stft_frames = [(len(signal) - self.n_fft) // self.hop_length + 1 for signal in padded]
        signals = nn.utils.rnn.pad_sequence(padded, batch_first=True)
        spectrum = torch.stft(
            signals,
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=False,
            onesided=True,
            return_complex=True,
        )
        magnitude = torch.sqrt(spectrum.real.pow(2) + spectrum.imag.pow(2) + _MAGNITUDE_EPS)
        mel = torch.log(torch.clamp(torch.matmul(self.mel_filters, magnitude), min=_LOG_CLIP)).transpose(1, 2)

        num_frames = self.num_frames(lengths)
        max_frames = int(num_frames.max())
        frame_index = torch.arange(max_frames, device=mel.device)
        source = torch.minimum(frame_index[None, :], torch.tensor(stft_frames, device=mel.device)[:, None] - 1)
        mel = torch.gather(mel, 1, source[:, :, None].expand(-1, -1, mel.shape[-1]))
        return mel * _frame_mask(num_frames, max_frames)[:, :, None]


class SpiritLMFCPEConvModule(nn.Module):
    """Conformer convolution block: LayerNorm → pointwise conv + GLU → depthwise conv → SiLU → pointwise conv."""

    def __init__(self, config: FCPEConfig):
        super().__init__()
        inner = config.hidden_size * config.conv_expansion_factor
        self.norm = nn.LayerNorm(config.hidden_size)
        self.pointwise_in = nn.Conv1d(config.hidden_size, 2 * inner, 1)
        self.depthwise = nn.Conv1d(
            inner, inner, config.conv_kernel_size, padding=config.conv_kernel_size // 2, groups=inner
        )
        self.pointwise_out = nn.Conv1d(inner, config.hidden_size, 1)
        # An even kernel is padded one sample less on the right ("same" length).
        self.right_trim = 1 - config.conv_kernel_size % 2

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        # Frames stay on the second axis: the pointwise convolutions are matrix products there, and the depthwise
        # one reads that memory as a channels-last image, for which oneDNN has a kernel ~15x faster than for
        # (batch, channels, frames).
        hidden_states = F.linear(self.norm(hidden_states), self.pointwise_in.weight[..., 0], self.pointwise_in.bias)
        hidden_states = F.glu(hidden_states, dim=-1) * frame_mask[..., None]
        depthwise = self.depthwise
        hidden_states = F.conv2d(
            hidden_states.transpose(1, 2)[:, :, None],
            depthwise.weight[:, :, None],
            depthwise.bias,
            padding=(0, depthwise.padding[0]),
            groups=depthwise.groups,
        )[:, :, 0].transpose(1, 2)
        if self.right_trim:
            hidden_states = hidden_states[:, : -self.right_trim]
        return F.linear(F.silu(hidden_states), self.pointwise_out.weight[..., 0], self.pointwise_out.bias)


class SpiritLMFCPEF0Extractor(nn.Module):
    """FCPE F0 extractor: 16 kHz waveforms → pitch in Hz and voicing, one value per `hop_length` samples.

    State dict (safetensors-ready): `mel.mel_filters`, `mel.window` (derived, stored so loading never depends on
    recomputing them), `input_conv`, `input_norm`, `input_proj`, `layers.{i}.*` (conv modules), `norm`,
    `output_proj` (weight norm folded in) and `cent_table` (pitch of each class, in cents).
    """

    def __init__(self, config: FCPEConfig | dict | None = None):
        super().__init__()
        config = FCPEConfig.from_dict(config) if isinstance(config, dict) else (config or FCPEConfig())
        self.config = config
        self.mel = SpiritLMFCPEMelExtractor(config)
        self.input_conv = nn.Conv1d(config.num_mel_bins, config.hidden_size, 3, padding=1)
        self.input_norm = nn.GroupNorm(config.num_norm_groups, config.hidden_size)
        self.input_proj = nn.Conv1d(config.hidden_size, config.hidden_size, 3, padding=1)
        self.layers = nn.ModuleList(SpiritLMFCPEConvModule(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(config.hidden_size)
        self.output_proj = nn.Linear(config.hidden_size, config.num_cent_bins)
        cent_range = 1200.0 * torch.log2(torch.tensor([config.cent_f0_min, config.cent_f0_max]) / 10.0)
        self.register_buffer("cent_table", torch.linspace(cent_range[0], cent_range[1], config.num_cent_bins))

    def num_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Number of F0 values for waveforms of `lengths` samples: `lengths // hop_length + 1`."""
        return lengths // self.config.hop_length + 1

    def pitch_scores(self, mel: torch.Tensor, mel_lengths: torch.Tensor) -> torch.Tensor:
        """`(batch, frames, num_mel_bins)` log-mel → `(batch, frames, num_cent_bins)` class scores in (0, 1)."""
        frame_mask = _frame_mask(mel_lengths, mel.shape[1])
        hidden_states = self.input_conv(mel.transpose(1, 2))
        # GroupNorm statistics span the whole utterance: compute them on each waveform's own frames.
        normed = torch.zeros_like(hidden_states)
        for index, length in enumerate(mel_lengths.tolist()):
            normed[index, :, :length] = self.input_norm(hidden_states[index : index + 1, :, :length])[0]
        hidden_states = self.input_proj(F.leaky_relu(normed)).transpose(1, 2)
        for layer in self.layers:
            hidden_states = hidden_states + layer(hidden_states, frame_mask)
        return torch.sigmoid(self.output_proj(self.norm(hidden_states)))

    def decode_pitch(self, scores: torch.Tensor) -> torch.Tensor:
        """Local-argmax decoder: score-weighted mean pitch of the 9 classes around the best one, in Hz (0 where the
        best score is not above `voicing_threshold`)."""
        best_score, best = scores.max(dim=-1, keepdim=True)
        window = (best + torch.arange(-4, 5, device=scores.device)).clamp(0, self.config.num_cent_bins - 1)
        window_scores = torch.gather(scores, -1, window)
        window_cents = self.cent_table[window]
        cents = torch.sum(window_cents * window_scores, dim=-1) / torch.sum(window_scores, dim=-1)
        f0 = 10.0 * 2 ** (cents / 1200.0)
        return torch.where(best_score[..., 0] > self.config.voicing_threshold, f0, torch.zeros_like(f0))

    @staticmethod
    def interpolate_unvoiced(f0: torch.Tensor, unvoiced: torch.Tensor) -> torch.Tensor:
        """Linear interpolation of one `(frames,)` track over its unvoiced frames, holding the first/last voiced
        value at the ends. Without any voiced frame the track is all zeros."""
        voiced_index = torch.nonzero(~unvoiced)[:, 0]
        if len(voiced_index) == 0:
            return torch.zeros_like(f0)
        unvoiced_index = torch.nonzero(unvoiced)[:, 0]
        voiced_f0 = f0[voiced_index]
        right = torch.searchsorted(voiced_index, unvoiced_index).clamp(max=len(voiced_index) - 1)
        left = (right - 1).clamp(min=0)
        step = (voiced_index[right] - voiced_index[left]).clamp(min=1).to(f0.dtype)
        offset = (unvoiced_index - voiced_index[left]).to(f0.dtype)
        filled = voiced_f0[left] + offset * (voiced_f0[right] - voiced_f0[left]) / step
        filled = torch.where(unvoiced_index < voiced_index[0], voiced_f0[0], filled)
        filled = torch.where(unvoiced_index > voiced_index[-1], voiced_f0[-1], filled)
        result = f0.clone()
        result[unvoiced_index] = filled
        return result

    @torch.no_grad()
    def forward(
        self, input_values: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Args:
            input_values (`torch.Tensor` of shape `(batch, samples)` or `(samples,)`): float waveforms at
                `config.sampling_rate` (16 kHz), amplitude in [-1, 1], right-padded in a batch.
            lengths (`torch.Tensor` of shape `(batch,)`, *optional*): number of valid samples of each waveform;
                all samples when omitted.

        Returns:
            `(f0, voiced, f0_lengths)`: `f0` float `(batch, frames)` in Hz, `voiced` bool `(batch, frames)`,
            `f0_lengths` long `(batch,)` = `lengths // hop_length + 1`. Values past a waveform's length are 0/False.
        """
        input_values, lengths = check_waveforms(input_values, lengths, "SpiritLMFCPEF0Extractor")
        input_values = input_values.to(self.cent_table.device, self.output_proj.weight.dtype)
        lengths = lengths.to(self.cent_table.device)

        mel_lengths = self.mel.num_frames(lengths)
        mel = self.mel(input_values, lengths)
        f0_coarse = self.decode_pitch(self.pitch_scores(mel, mel_lengths))
        unvoiced_coarse = f0_coarse < self.config.f0_min

        f0_lengths = self.num_frames(lengths)
        f0 = f0_coarse.new_zeros(len(lengths), int(f0_lengths.max()))
        voiced = torch.zeros_like(f0, dtype=torch.bool)
        for index, (mel_length, length) in enumerate(zip(mel_lengths.tolist(), f0_lengths.tolist())):
            track, unvoiced = f0_coarse[index, :mel_length], unvoiced_coarse[index, :mel_length]
            if self.config.interpolate_unvoiced:
                track = self.interpolate_unvoiced(track, unvoiced)
            track = track.clamp(max=self.config.f0_max)
            # Nearest-neighbour resampling from 10 ms frames to hop_length frames, as torch's "nearest" mode does.
            stacked = torch.stack([track, unvoiced.to(track.dtype)])[None]
            stacked = F.interpolate(stacked, size=length, mode="nearest")[0]
            f0[index, :length] = stacked[0]
            voiced[index, :length] = stacked[1] == 0
        return f0, voiced, f0_lengths


def check_waveforms(
    input_values: torch.Tensor, lengths: torch.Tensor | None, caller: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a right-padded batch of float waveforms; return it as `(batch, samples)` with `(batch,)` lengths."""
    input_values, _ = check_waveform_batch(input_values, caller)
    if lengths is None:
        lengths = torch.full((input_values.shape[0],), input_values.shape[1], dtype=torch.long)
    lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
    if lengths.shape != (input_values.shape[0],):
        raise ValueError(f"{caller}: lengths must have shape ({input_values.shape[0]},), got {tuple(lengths.shape)}")
    if bool((lengths < 1).any()) or bool((lengths > input_values.shape[1]).any()):
        raise ValueError(
            f"{caller}: every waveform needs between 1 and {input_values.shape[1]} samples, got lengths "
            f"{lengths.tolist()} (empty audio has no pitch)"
        )
    valid = _frame_mask(lengths.to(input_values.device), input_values.shape[1])
    if not bool(torch.isfinite(input_values[valid]).all()):
        raise ValueError(f"{caller}: the waveform contains NaN or infinite samples; clean or drop this audio")
    return input_values, lengths


# The name before the SpiritLM prefix (#21), kept importable.
FCPEF0Extractor = SpiritLMFCPEF0Extractor
