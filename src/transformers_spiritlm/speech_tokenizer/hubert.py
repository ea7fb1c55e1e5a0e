"""HuBERT units: layer features of a stock `HubertModel` on padded batches, and the official linear quantizer.

Padding must not change a clip's features. HuBERT-base has three places where it could: the first conv layer
group-normalises each channel over time, the positional convolution is 128 frames wide, and attention mixes all
frames. `hubert_layer_features` normalises the first layer over each clip's own samples, and hands the encoder a
frame mask, which zeroes padded frames before the positional convolution (as unpadded audio is zero-padded there)
and hides them from attention.
"""

import itertools

import torch
from torch import nn
from transformers import HubertModel


# The official blank filling stops after this many passes; only runs of more blanks than this stay blank.
MAX_BLANK_FILL_STEPS = 10_000


class HubertUnitQuantizer(nn.Module):
    """
    The official linear quantizer: an MLP (leaky ReLU between layers) from HuBERT features to `num_units` logits, the
    last being the CTC blank.
    """

    def __init__(self, hidden_size: int, hidden_sizes: list[int], num_units: int):
        super().__init__()
        sizes = [hidden_size, *hidden_sizes, num_units]
        self.layers = nn.ModuleList(nn.Linear(fan_in, fan_out) for fan_in, fan_out in itertools.pairwise(sizes))
        self.activation = nn.LeakyReLU()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """`(..., hidden_size)` features → `(..., num_units)` logits."""
        for layer in self.layers[:-1]:
            features = self.activation(layer(features))
        return self.layers[-1](features)


def fill_blank_units(
    units: torch.LongTensor, lengths: torch.LongTensor, blank: int, max_steps: int = MAX_BLANK_FILL_STEPS
) -> torch.LongTensor:
    """
    Replaces each blank by the nearest non-blank unit to its left, cyclically within the row's first `lengths[b]`
    units (leading blanks take the row's last unit): the closed form of the official loop, which shifts the units
    right by one and fills blanks from the shifted copy, at most `max_steps` times. Blanks further than `max_steps`
    from any unit, and rows of blanks only, stay blank.

    Args:
        units: `(batch, frames)` argmax units.
        lengths: `(batch,)` valid frames per row; positions past them are returned unchanged.
    """
    frames = units.shape[1]
    positions = torch.arange(frames, device=units.device).expand_as(units)
    valid = positions < lengths[:, None]
    is_unit = (units != blank) & valid
    # Index of the last unit at or before each position (-1 if none), and of the row's last unit for wrapping.
    previous = torch.where(is_unit, positions, -1).cummax(dim=1).values
    last = previous.gather(1, (lengths - 1).clamp(min=0)[:, None])
    wrapped = previous < 0
    source = torch.where(wrapped, last.expand_as(previous), previous)
    distance = torch.where(wrapped, positions + lengths[:, None] - source, positions - source)
    fill = valid & ~is_unit & (source >= 0) & (distance <= max_steps)
    return torch.where(fill, units.gather(1, source.clamp(min=0)), units)


def conv_output_lengths(hubert: HubertModel, lengths: torch.LongTensor, num_layers: int | None = None) -> torch.Tensor:
    """Frames after the first `num_layers` (default: all) conv layers of clips of `lengths` samples."""
    config = hubert.config
    for kernel, stride in list(zip(config.conv_kernel, config.conv_stride))[:num_layers]:
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    return lengths


def hubert_layer_features(
    hubert: HubertModel, input_values: torch.Tensor, lengths: torch.LongTensor
) -> tuple[torch.Tensor, torch.LongTensor]:
    """
    Output of `hubert`'s last encoder layer for right-padded clips, each as if encoded alone and unpadded.

    Args:
        input_values: `(batch, samples)` 16 kHz waveforms, zero or garbage past each row's length.
        lengths: `(batch,)` samples of each clip, at least the conv stack's receptive field.

    Returns:
        `(features, frame_lengths)`: `(batch, frames, hidden_size)` features (padded frames hold garbage) and the
        number of valid frames of each row.
    """
    conv_layers = hubert.feature_extractor.conv_layers
    first = conv_layers[0]
    hidden = first.conv(input_values[:, None])
    first_lengths = conv_output_lengths(hubert, lengths, num_layers=1)
    norm = first.layer_norm
    normalized = torch.zeros_like(hidden)
    # Clips of equal length are normalised together, each over its own frames only; float32 like the official
    # Fp32GroupNorm.
    for length in first_lengths.unique().tolist():
        rows = (first_lengths == length).nonzero().squeeze(1)
        normalized[rows, :, :length] = nn.functional.group_norm(
            hidden[rows, :, :length].float(), norm.num_groups, norm.weight.float(), norm.bias.float(), norm.eps
        ).to(hidden.dtype)
    hidden = first.activation(normalized)
    for layer in conv_layers[1:]:
        hidden = layer(hidden)

    frame_lengths = conv_output_lengths(hubert, lengths)
    frames = hidden.shape[-1]
    frame_mask = None
    if bool((frame_lengths < frames).any()):
        frame_mask = torch.arange(frames, device=hidden.device) < frame_lengths[:, None]
    hidden = hubert.feature_projection(hidden.transpose(1, 2))
    features = hubert.encoder(hidden, attention_mask=frame_mask).last_hidden_state
    return features, frame_lengths


__all__ = ["HubertUnitQuantizer", "conv_output_lengths", "fill_blank_units", "hubert_layer_features"]
