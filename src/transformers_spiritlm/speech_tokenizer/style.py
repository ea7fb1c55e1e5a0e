"""Style units of SPIRIT LM EXPRESSIVE: one of 100 speech styles per second of 16 kHz audio.

The official style encoder is a fine-tuned `Wav2Vec2ForSequenceClassification` whose forward is replaced: the
waveform is normalised like `facebook/wav2vec2-base`'s feature extractor does it (zero mean, unit variance, over
the whole clip), wav2vec 2.0's last hidden states go through the projector, are mean-pooled over consecutive
blocks of `pool_size` frames (50 frames = 1 s; the last block may be shorter) and classified; the unit is the
argmax. [`SpiritLMStyleEncoder`] computes the same with a stock `Wav2Vec2Model`, for padded batches too.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import Wav2Vec2Model
from transformers.utils import ModelOutput

from ..audio import check_waveform_batch
from ..configuration_spiritlm import SpiritLMStyleEncoderConfig
from .hubert import group_norm_conv_features


STYLE_SAMPLING_RATE = 16000
# Variance floor of wav2vec2-base's feature extractor (`zero_mean_unit_var_norm`); silence normalises to zeros.
NORMALIZATION_EPS = 1e-7


@dataclass
class SpiritLMStyleEncoderOutput(ModelOutput):
    r"""
    units (`torch.LongTensor` of shape `(batch_size, num_units)`):
        Style unit per second of audio, -1 past each row's `unit_lengths`.
    logits (`torch.FloatTensor` of shape `(batch_size, num_units, num_styles)`):
        Classifier scores of each pooled block, 0 past each row's `unit_lengths`.
    unit_lengths (`torch.LongTensor` of shape `(batch_size,)`):
        Number of valid units of each row: ceil(frames / pool_size).
    """

    units: torch.LongTensor | None = None
    logits: torch.FloatTensor | None = None
    unit_lengths: torch.LongTensor | None = None


class SpiritLMStyleEncoder(nn.Module):
    r"""
    wav2vec 2.0 + projector + per-second mean pooling + classifier: 16 kHz mono audio -> style units at 1 Hz.

    `config` is a [`SpiritLMStyleEncoderConfig`] (or its dict), the speech tokenizer's `style_config`.

    Parameter names are those of the official `Wav2Vec2ForSequenceClassification` (`wav2vec2.*`, `projector.*`,
    `classifier.*`), without its unused `layer_weights` and SpecAugment embedding.
    """

    def __init__(self, config: SpiritLMStyleEncoderConfig | dict):
        super().__init__()
        if isinstance(config, dict):
            config = SpiritLMStyleEncoderConfig.from_dict(config)
        config.check_complete()
        backbone = config.wav2vec2
        self.config = config
        self.pool_size = config.pool_size
        self.wav2vec2 = Wav2Vec2Model(backbone)
        self.projector = nn.Linear(backbone.hidden_size, config.projector_size)
        self.classifier = nn.Linear(config.projector_size, config.num_styles)
        self._conv_layers = list(zip(backbone.conv_kernel, backbone.conv_stride))
        # Shortest input that yields one frame: the receptive field of the conv stack (400 samples for wav2vec2).
        self.min_input_length = 1
        for kernel, stride in reversed(self._conv_layers):
            self.min_input_length = (self.min_input_length - 1) * stride + kernel

    def num_frames(self, num_samples: torch.Tensor | int) -> torch.Tensor | int:
        """wav2vec 2.0 frames (50 per second) of a clip of `num_samples` >= `min_input_length` samples."""
        for kernel, stride in self._conv_layers:
            num_samples = (num_samples - kernel) // stride + 1
        return num_samples

    def num_units(self, num_samples: torch.Tensor | int) -> torch.Tensor | int:
        """Style units of a clip of `num_samples` samples: one per started block of `pool_size` frames."""
        return -(-self.num_frames(num_samples) // self.pool_size)

    def forward(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> SpiritLMStyleEncoderOutput:
        r"""
        input_values (`torch.FloatTensor` of shape `(batch_size, num_samples)` or `(num_samples,)`):
            Raw 16 kHz mono waveform in [-1, 1], NOT normalised (the encoder normalises each row itself), right-padded;
            moved to the encoder's device. Rows need at least `min_input_length` (400) real samples.
        attention_mask (`torch.Tensor` of shape `(batch_size, num_samples)`, *optional*):
            1 for real samples, 0 for padding. Each row gives the same result as that row alone, unpadded.
        """
        input_values, lengths = self._check_inputs(input_values, attention_mask)
        batch_size = input_values.shape[0]
        frame_lengths = self.num_frames(lengths)
        dtype = self.projector.weight.dtype

        # The first conv layer group-normalises over time, so padding would change it: run the conv stack on
        # rows of equal length together, unpadded, then pad the frames; the encoder masks padded frames.
        features = None
        for length in lengths.unique().tolist():
            rows = (lengths == length).nonzero().squeeze(1)
            waveform = input_values[rows, :length].float()
            mean = waveform.mean(dim=-1, keepdim=True)
            variance = (waveform - mean).square().mean(dim=-1, keepdim=True)
            waveform = (waveform - mean) / torch.sqrt(variance + NORMALIZATION_EPS)
            if self.wav2vec2.config.feat_extract_norm == "group":
                extracted = group_norm_conv_features(self.wav2vec2.feature_extractor, waveform)
            else:
                extracted = self.wav2vec2.feature_extractor(waveform.to(dtype))
            extracted = extracted.transpose(1, 2)
            if features is None:
                features = extracted.new_zeros(batch_size, int(frame_lengths.max()), extracted.shape[-1])
            features[rows, : extracted.shape[1]] = extracted

        frame_mask = None
        num_frames = features.shape[1]
        if bool((frame_lengths < num_frames).any()):
            frame_mask = torch.arange(num_frames, device=features.device) < frame_lengths[:, None]
        hidden_states, _ = self.wav2vec2.feature_projection(features)
        hidden_states = self.wav2vec2.encoder(hidden_states, attention_mask=frame_mask).last_hidden_state
        hidden_states = self.projector(hidden_states)

        num_units = -(-num_frames // self.pool_size)
        padded_frames = num_units * self.pool_size
        valid = torch.arange(padded_frames, device=features.device) < frame_lengths[:, None]
        hidden_states = nn.functional.pad(hidden_states, (0, 0, 0, padded_frames - num_frames))
        hidden_states = hidden_states.masked_fill(~valid[..., None], 0.0)
        blocks = hidden_states.view(batch_size, num_units, self.pool_size, -1)
        counts = valid.view(batch_size, num_units, self.pool_size).sum(-1, keepdim=True)
        pooled = blocks.sum(2) / counts.clamp(min=1)

        unit_lengths = -(-frame_lengths // self.pool_size)
        unit_mask = torch.arange(num_units, device=features.device) < unit_lengths[:, None]
        logits = self.classifier(pooled).masked_fill(~unit_mask[..., None], 0.0)
        # Argmax of the log-probabilities, as the official code takes it: rounding there can tie close logits.
        units = logits.float().log_softmax(-1).argmax(-1).masked_fill(~unit_mask, -1)
        return SpiritLMStyleEncoderOutput(units=units, logits=logits, unit_lengths=unit_lengths)

    @torch.no_grad()
    def encode(self, waveforms: Sequence[torch.Tensor]) -> list[list[int]]:
        """Style units of each 16 kHz mono waveform (1-D tensors of any lengths >= `min_input_length`), batched."""
        if isinstance(waveforms, torch.Tensor) or len(waveforms) == 0:
            raise TypeError("encode() takes a non-empty list of 1-D waveforms; call forward() for a padded batch")
        for i, waveform in enumerate(waveforms):
            if not isinstance(waveform, torch.Tensor) or not waveform.is_floating_point():
                raise TypeError(f"waveform {i} must be a float torch.Tensor in [-1, 1], got {waveform!r:.60}")
            if waveform.dim() != 1:
                raise ValueError(f"waveform {i} has shape {tuple(waveform.shape)}; average channels to 1-D mono first")
        lengths = [len(waveform) for waveform in waveforms]
        device = self.projector.weight.device
        batch = torch.zeros(len(waveforms), max(lengths), device=device)
        mask = torch.zeros(len(waveforms), max(lengths), dtype=torch.long, device=device)
        for i, waveform in enumerate(waveforms):
            batch[i, : lengths[i]] = waveform
            mask[i, : lengths[i]] = 1
        output = self.forward(batch, attention_mask=mask)
        return [row[:length].tolist() for row, length in zip(output.units, output.unit_lengths.tolist())]

    def _check_inputs(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        input_values, lengths = check_waveform_batch(
            input_values, type(self).__name__, attention_mask, self.projector.weight.device
        )
        positions = torch.arange(input_values.shape[1], device=input_values.device)
        too_short = (lengths < self.min_input_length).nonzero().flatten().tolist()
        if too_short:
            raise ValueError(
                f"style encoder input rows {too_short} are shorter than {self.min_input_length} samples "
                f"({1000 * self.min_input_length / STYLE_SAMPLING_RATE:g} ms at 16 kHz), the wav2vec 2.0 receptive "
                "field; drop or pad such clips"
            )
        valid = positions < lengths[:, None]
        if not bool(torch.isfinite(input_values).logical_or(~valid).all()):
            raise ValueError("style encoder input contains NaN or infinite samples; clean the waveform first")
        return input_values, lengths
