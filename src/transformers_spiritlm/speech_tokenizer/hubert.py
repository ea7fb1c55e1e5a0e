"""HuBERT units: layer features of a stock `HubertModel` on padded batches, and the quantizers that turn them into
units: the official linear one and k-means.

Padding must not change a clip's features. HuBERT-base has three places where it could: the first conv layer
group-normalises each channel over time, the positional convolution is 128 frames wide, and attention mixes all
frames. `hubert_layer_features` normalises the first layer over each clip's own samples, and hands the encoder a
frame mask, which zeroes padded frames before the positional convolution (as unpadded audio is zero-padded there)
and hides them from attention.

The first conv layer's output (512 channels x 3200 frames per second of audio) is the largest tensor of both
HuBERT and the style encoder's wav2vec 2.0. [`group_norm_conv_features`] computes that layer a slice of channels at
a time, each slice small enough to stay in the CPU cache through convolution, normalisation and activation: every
channel is its own GroupNorm group, so the result is bit for bit the one of the whole layer, without two passes over
main memory and two fresh allocations of that tensor (their page faults alone cost as much as the arithmetic).
"""

import itertools

import torch
from torch import nn
from transformers import HubertModel


# The official blank filling stops after this many passes; only runs of more blanks than this stay blank.
MAX_BLANK_FILL_STEPS = 10_000
# Channels of the first conv layer computed together by `group_norm_conv_features`: 64 x 3200 float32 values per
# second of audio, 6.5 MB for an 8 s clip, stay in the CPU cache.
FIRST_LAYER_CHANNEL_SLICE = 64


class SpiritLMHubertUnitQuantizer(nn.Module):
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

    def assign(self, features: torch.Tensor) -> torch.LongTensor:
        """`(..., hidden_size)` features → `(...)` units (the blank included)."""
        # The official code takes the argmax of the log-probabilities; rounding there can tie near-equal logits.
        return self(features).float().log_softmax(-1).argmax(-1)


class SpiritLMHubertKMeansQuantizer(nn.Module):
    """K-means quantizer (`spiritlm train-units`): each frame's unit is its nearest centroid (Euclidean)."""

    def __init__(self, hidden_size: int, num_units: int):
        super().__init__()
        self.register_buffer("centroids", torch.zeros(num_units, hidden_size))

    def assign(self, features: torch.Tensor) -> torch.LongTensor:
        """`(..., hidden_size)` features → `(...)` index of the nearest centroid, as scikit-learn's `predict`."""
        # float64 (where the device has it) so that near ties resolve as scikit-learn's on float64 features.
        dtype = torch.float32 if features.device.type == "mps" else torch.float64
        features, centroids = features.to(dtype), self.centroids.to(device=features.device, dtype=dtype)
        # |x - c|^2 less the |x|^2 that all centroids share.
        distances = (centroids * centroids).sum(-1) - 2 * features @ centroids.T
        return distances.argmin(-1)


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


def group_norm_conv_features(
    feature_encoder: nn.Module, input_values: torch.Tensor, lengths: torch.LongTensor | None = None
) -> torch.Tensor:
    """
    Conv feature encoder of HuBERT / wav2vec 2.0 ("group" norm: the first layer group-normalises each channel over
    time) on right-padded clips, each row's first layer normalised over its own frames only, in float32 like the
    official `Fp32GroupNorm`; the later layers run in the encoder's dtype.

    Args:
        feature_encoder: a `HubertFeatureEncoder` / `Wav2Vec2FeatureEncoder`.
        input_values: `(batch, samples)` waveforms, anything past each row's length.
        lengths: `(batch,)` samples of each row (default: all), at least the conv stack's receptive field.

    Returns:
        `(batch, channels, frames)` features; frames past a row's own count hold garbage.
    """
    first, *rest = feature_encoder.conv_layers
    norm = getattr(first, "layer_norm", None)
    if not isinstance(norm, nn.GroupNorm) or norm.num_groups != norm.num_channels:
        raise ValueError("group_norm_conv_features needs a first conv layer with one GroupNorm group per channel")
    conv = first.conv
    dtype = rest[0].conv.weight.dtype if rest else conv.weight.dtype
    kernel, stride = conv.kernel_size[0], conv.stride[0]
    batch, samples = input_values.shape
    frames = (samples - kernel) // stride + 1
    frame_lengths = [frames] * batch
    if lengths is not None:
        frame_lengths = (torch.div(lengths - kernel, stride, rounding_mode="floor") + 1).tolist()
    waveforms = input_values[:, None].float()
    weight, bias = conv.weight.float(), None if conv.bias is None else conv.bias.float()
    hidden = input_values.new_empty(batch, conv.out_channels, frames, dtype=dtype)
    for start in range(0, conv.out_channels, FIRST_LAYER_CHANNEL_SLICE):
        channels = slice(start, start + FIRST_LAYER_CHANNEL_SLICE)
        sliced = nn.functional.conv1d(waveforms, weight[channels], None if bias is None else bias[channels], stride)
        gamma, beta, count = norm.weight[channels].float(), norm.bias[channels].float(), sliced.shape[1]
        if all(length == frames for length in frame_lengths):
            hidden[:, channels] = first.activation(nn.functional.group_norm(sliced, count, gamma, beta, norm.eps))
            continue
        for row, length in enumerate(frame_lengths):
            part = nn.functional.group_norm(sliced[row : row + 1, :, :length], count, gamma, beta, norm.eps)
            hidden[row, channels, :length] = first.activation(part)[0]
    for row, length in enumerate(frame_lengths):
        hidden[row, :, length:] = 0
    for layer in rest:
        hidden = layer(hidden)
    return hidden


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
    hidden = group_norm_conv_features(hubert.feature_extractor, input_values, lengths)
    frame_lengths = conv_output_lengths(hubert, lengths)
    frames = hidden.shape[-1]
    frame_mask = None
    if bool((frame_lengths < frames).any()):
        frame_mask = torch.arange(frames, device=hidden.device) < frame_lengths[:, None]
    hidden = hubert.feature_projection(hidden.transpose(1, 2))
    features = hubert.encoder(hidden, attention_mask=frame_mask).last_hidden_state
    return features, frame_lengths


# The name before the SpiritLM prefix (#21), kept importable.
HubertUnitQuantizer = SpiritLMHubertUnitQuantizer

__all__ = [
    "HubertUnitQuantizer",
    "SpiritLMHubertKMeansQuantizer",
    "SpiritLMHubertUnitQuantizer",
    "conv_output_lengths",
    "fill_blank_units",
    "group_norm_conv_features",
    "hubert_layer_features",
]
