"""SPIRIT LM vocoder: speech units -> 16 kHz waveform (unit HiFi-GAN with a duration predictor).

[`SpiritLMVocoder.forward`] is the model, as `SpeechT5HifiGan`'s: batches of unit id tensors in, a
[`SpiritLMVocoderOutput`] out, differentiable for training. [`~SpiritLMVocoder.decode_units`] and
[`~SpiritLMVocoder.decode_string`] take what users hold (lists, space-separated strings, unit strings, ragged
batches), check it with the helpers at the end of this module and call it.
"""

import math
import os
import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.models.speecht5.modeling_speecht5 import HifiGanResidualBlock
from transformers.utils import ModelOutput

from .configuration_spiritlm import VOCODER_SUBFOLDER, SpiritLMVocoderConfig
from .modeling_spiritlm import SpiritLMLoadingMixin
from .units import string_to_units


if TYPE_CHECKING:
    from .streaming import SpiritLMChunkedDecoder

UnitSequence = str | Sequence[int] | torch.Tensor | np.ndarray


@dataclass
class SpiritLMVocoderOutput(ModelOutput):
    """
    Waveforms of a batch of unit sequences.

    Args:
        waveform (`torch.FloatTensor` of shape `(batch_size, max_samples)`):
            16 kHz float32 waveforms, zero-padded after each item's length.
        lengths (`torch.LongTensor` of shape `(batch_size,)`):
            Number of valid samples of each waveform.
    """

    waveform: torch.FloatTensor | None = None
    lengths: torch.LongTensor | None = None


def _masked(hidden_states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return hidden_states if mask is None else hidden_states * mask


def _conv(conv: nn.Conv1d | nn.ConvTranspose1d, hidden_states: torch.Tensor) -> torch.Tensor:
    """
    `conv` on `(batch, channels, 1, frames)` channels-last activations, i.e. frames-major memory. oneDNN's
    channels-last kernels are faster than its `(batch, channels, frames)` ones for every convolution of the
    generator, up to 10x for the few-channel dilated ones of the last stages (which dominate its time).
    """
    weight = conv.weight[:, :, None].contiguous(memory_format=torch.channels_last)
    stride, padding, dilation = conv.stride[0], conv.padding[0], conv.dilation[0]
    if isinstance(conv, nn.ConvTranspose1d):
        return nn.functional.conv_transpose2d(
            hidden_states, weight, conv.bias, (1, stride), (0, padding), (0, conv.output_padding[0]), conv.groups,
            (1, dilation),
        )  # fmt: skip
    return nn.functional.conv2d(
        hidden_states, weight, conv.bias, (1, stride), (0, padding), (1, dilation), conv.groups
    )


class SpiritLMResidualBlock(HifiGanResidualBlock):
    """HiFi-GAN multi-receptive-field block that keeps padded positions of a batch at zero."""

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """`(batch, channels, 1, frames)` channels-last activations (see [`_conv`]) and an optional 0/1 `mask` of
        shape `(batch, 1, 1, frames)`."""
        # Zeroing each convolution's output past an item's end makes the next convolution see the zero padding a
        # lone sequence would see, so a batch gives the same samples as one-by-one synthesis.
        for conv1, conv2 in zip(self.convs1, self.convs2):
            residual = hidden_states
            hidden_states = nn.functional.leaky_relu(hidden_states, self.leaky_relu_slope)
            hidden_states = _masked(_conv(conv1, hidden_states), mask)
            hidden_states = nn.functional.leaky_relu(hidden_states, self.leaky_relu_slope, inplace=True)
            hidden_states = _masked(_conv(conv2, hidden_states), mask).add_(residual)
        return hidden_states


class SpiritLMDurationPredictor(nn.Module):
    """Predicts the log duration (in hubert frames) of each deduplicated unit from its embedding."""

    def __init__(self, config: SpiritLMVocoderConfig):
        super().__init__()
        hidden_size, kernel_size = config.duration_predictor_hidden_size, config.duration_predictor_kernel_size
        self.conv1 = nn.Conv1d(config.embedding_dim, hidden_size, kernel_size, padding=(kernel_size - 1) // 2)
        self.norm1 = nn.LayerNorm(hidden_size)
        self.conv2 = nn.Conv1d(hidden_size, hidden_size, kernel_size, padding=1)
        self.norm2 = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(config.duration_predictor_dropout)
        self.proj = nn.Linear(hidden_size, 1)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """`(num_units, embedding_dim)` unit embeddings -> `(num_units,)` log durations."""
        hidden_states = nn.functional.relu(self.conv1(embeddings.T.unsqueeze(0))).transpose(1, 2)
        hidden_states = self.dropout(self.norm1(hidden_states))
        hidden_states = nn.functional.relu(self.conv2(hidden_states.transpose(1, 2))).transpose(1, 2)
        hidden_states = self.dropout(self.norm2(hidden_states))
        return self.proj(hidden_states)[0, :, 0]

    def durations(self, embeddings: torch.Tensor) -> torch.LongTensor:
        """Frames per unit, as official: `max(1, round(exp(log_duration) - 1))` (round half to even)."""
        return torch.clamp(torch.round(torch.exp(self(embeddings)) - 1).long(), min=1)

    @property
    def right_context(self) -> int:
        """How many units after a unit its duration depends on (the right reach of the two convolutions)."""
        return sum(conv.kernel_size[0] - 1 - conv.padding[0] for conv in (self.conv1, self.conv2))


class SpiritLMVocoder(SpiritLMLoadingMixin, PreTrainedModel):
    """
    SPIRIT LM unit HiFi-GAN: HuBERT units (25 Hz) + pitch units (12.5 Hz) + style units (1 Hz) for EXPRESSIVE, and a
    speaker (+ a global style for BASE) -> 16 kHz waveform. Identical in output to the official
    `SpiritLMTokenizer.decode` on the same weights; weight norm is folded into the weights at conversion.

    Calling the model (`forward`) takes `(batch_size, num_units)` tensors and returns a [`SpiritLMVocoderOutput`], with
    gradients; `decode_units` and `decode_string` take lists, strings and single sequences, and return a waveform.

    ```python
    >>> vocoder = SpiritLMVocoder.from_pretrained(repo, subfolder="vocoder")
    >>> vocoder.decode_string("[St71][Pi39][Hu99][Hu49][Hu38]")                 # 1-D float32 tensor at 16 kHz
    >>> vocoder.decode_units([99, 49, 38, 149], speaker_id="ex03", dur_pred=True)  # BASE, deduplicated units
    >>> vocoder(torch.tensor([[99, 49, 38, 149]]), speaker_id=torch.tensor([3])).waveform  # (1, samples), trainable
    ```
    """

    config: SpiritLMVocoderConfig
    main_input_name = "hubert"
    base_model_prefix = "vocoder"

    def __init__(self, config: SpiritLMVocoderConfig):
        super().__init__(config)
        dim = config.embedding_dim

        def embedding(rows: int | None) -> nn.Embedding | None:
            return None if rows is None else nn.Embedding(rows, dim)

        self.hubert_embedding = nn.Embedding(config.num_hubert_units, dim)
        self.pitch_embedding = embedding(config.num_pitch_units)
        self.style_embedding = embedding(config.num_style_units)
        self.speaker_embedding = embedding(config.num_speakers)
        self.global_style_embedding = embedding(config.num_styles)
        self.duration_predictor = (
            None if config.duration_predictor_hidden_size is None else SpiritLMDurationPredictor(config)
        )

        channels = config.upsample_initial_channel
        self.conv_pre = nn.Conv1d(config.model_in_dim, channels, kernel_size=7, padding=3)
        self.upsampler = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for rate, kernel_size in zip(config.upsample_rates, config.upsample_kernel_sizes):
            self.upsampler.append(
                nn.ConvTranspose1d(
                    channels, channels // 2, kernel_size, stride=rate, padding=(kernel_size - rate) // 2
                )
            )
            channels //= 2
            for res_kernel_size, dilation in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes):
                self.resblocks.append(
                    SpiritLMResidualBlock(channels, res_kernel_size, dilation, config.leaky_relu_slope)
                )
        self.conv_post = nn.Conv1d(channels, 1, kernel_size=7, padding=3)
        self.post_init()

    def forward(
        self,
        hubert: torch.LongTensor,
        pitch: torch.LongTensor | None = None,
        style: torch.LongTensor | None = None,
        speaker_id: int | str | Sequence[int | str] | torch.LongTensor = 2,
        style_id: int | str | Sequence[int | str] | torch.LongTensor | None = None,
        unit_lengths: torch.LongTensor | None = None,
        durations: torch.LongTensor | None = None,
        dur_pred: bool | Sequence[bool] | torch.BoolTensor = True,
    ) -> SpiritLMVocoderOutput:
        r"""
        Synthesises a batch of unit sequences. Differentiable: a loss on the waveform trains the embeddings and the
        generator (durations are whole frame counts, so the duration predictor gets no gradient from it).

        Args:
            hubert (`torch.LongTensor` of shape `(batch_size, num_units)`):
                HuBERT unit ids, right-padded (see `unit_lengths`).
            pitch, style (`torch.LongTensor` of shape `(batch_size, num_units)`, *optional*):
                The pitch and style unit of each hubert unit, for a vocoder whose `config.unit_types` has them
                (EXPRESSIVE); [`~SpiritLMVocoder.decode_units`] up-samples units at their own rate.
            speaker_id (`int`, `str` or `torch.LongTensor` of shape `(batch_size,)`, defaults to 2):
                Speaker index or name (`config.speakers`), one for all rows or one per row. Ignored by a
                single-speaker vocoder.
            style_id (`int`, `str` or `torch.LongTensor` of shape `(batch_size,)`, *optional*):
                BASE global style index or name (`config.styles`); `None` uses `config.default_style_id`.
            unit_lengths (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
                Valid units of each row (default: all `num_units`).
            durations (`torch.LongTensor` of shape `(batch_size, num_units)`, *optional*):
                Frames of each unit (e.g. the true durations in training); given, they replace `dur_pred`.
            dur_pred (`bool` or `torch.BoolTensor` of shape `(batch_size,)`, defaults to `True`):
                Expand each unit to the frames its duration predictor gives (deduplicated units); `False`: one frame
                per unit (frame-rate units).

        Returns:
            [`SpiritLMVocoderOutput`]: `waveform` `(batch_size, max_samples)` at `config.sampling_rate`, zero after each
            row's `lengths` (frames times `config.hop_length`). Each row equals the row alone: on CPU exactly (rows
            are synthesised one by one there), on an accelerator (one padded batch) up to float rounding.
        """
        config = self.config
        hubert, unit_lengths = _check_unit_batch(hubert, unit_lengths, config.num_hubert_units)
        for stream, values, count in (
            ("pitch", pitch, config.num_pitch_units),
            ("style", style, config.num_style_units),
        ):
            if values is None or count is None:
                _optional_units(values, "", stream, count)  # raises unless neither is given
                continue
            if not isinstance(values, torch.Tensor) or values.shape != hubert.shape:
                shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
                raise ValueError(
                    f"{stream} must be a tensor of the shape of hubert {tuple(hubert.shape)} (one {stream} unit per "
                    f"hubert unit), got {shape}; decode_units takes {stream} units at their own rate"
                )
            _check_unit_batch(values, unit_lengths, count, stream)
        if durations is not None:
            _check_durations(durations, hubert.shape)
        batch_size = hubert.shape[0]
        speakers = _per_item(speaker_id, "speaker_id", batch_size)
        styles = _per_item(style_id, "style_id", batch_size)
        predict = _per_item(dur_pred, "dur_pred", batch_size)
        items = []
        for row, length in enumerate(unit_lengths.tolist()):
            speaker, style_index = _voice(config, speakers[row], styles[row], f"item {row}: ")
            units = hubert[row, :length]
            if durations is not None:
                frames = durations[row, :length]
            else:
                frames = self.predict_durations(units) if predict[row] else None
            pitch_units, style_units = (None if values is None else values[row, :length] for values in (pitch, style))
            items.append(self.embed_units(units, pitch_units, style_units, speaker, style_index, frames))
        frame_lengths = torch.tensor([features.shape[0] for features in items], device=self.device)
        if self.device.type == "cpu":
            # A CPU computes padding as it computes audio, and the big padded tensors cost extra memory traffic: it
            # synthesises each item alone, ~2.5x faster than a padded batch of 8 utterances of 4 to 8 s.
            waveforms = [
                self.synthesise(item.T[None], frame_lengths[index : index + 1])[0] for index, item in enumerate(items)
            ]
            waveform = nn.utils.rnn.pad_sequence(waveforms, batch_first=True).float()
        else:
            features = nn.utils.rnn.pad_sequence(items, batch_first=True).transpose(1, 2)
            waveform = self.synthesise(features, frame_lengths).float()
        return SpiritLMVocoderOutput(waveform=waveform, lengths=frame_lengths * config.hop_length)

    @torch.no_grad()
    def decode_units(
        self,
        hubert: UnitSequence | Sequence[UnitSequence],
        pitch: UnitSequence | Sequence[UnitSequence] | None = None,
        style: UnitSequence | Sequence[UnitSequence] | None = None,
        speaker_id: int | str | Sequence[int | str] = 2,
        style_id: int | str | Sequence[int | str] | None = None,
        dur_pred: bool = True,
    ) -> torch.FloatTensor | SpiritLMVocoderOutput:
        """
        Synthesises speech from units, as the official `SpiritLMTokenizer.decode` does from a units dictionary.

        Args:
            hubert: hubert unit ids: a list of ints, a space-separated string (official format) or a 1-D integer
                tensor / array. A list of such sequences, or a 2-D tensor (one row each), is a batch.
            pitch, style: EXPRESSIVE pitch and style unit ids, same forms (a batch needs one per hubert sequence).
                Either pre-expanded to one unit per hubert unit (what `string_to_units` returns), or at their own
                rate (12.5 Hz and 1 Hz, as the speech tokenizer gives them), then up-sampled to the hubert rate.
            speaker_id: speaker index or name (`config.speakers`); default 2 as official. Ignored by a
                single-speaker vocoder. A list gives one per batch item.
            style_id: BASE global style index or name (`config.styles`); `None` uses `config.default_style_id`
                (official: 8). A list gives one per batch item.
            dur_pred: re-expand the units with the duration predictor (units must then be deduplicated: they are
                used as given, like the official decode's `not_dedup_code=True`). As in the official decode,
                duration prediction is switched off for an item whose pitch count differs from its hubert count:
                such units are frame-rate (resynthesis) units that need no re-expansion.

        Returns:
            One sequence: a float32 tensor `(num_samples,)` at `config.sampling_rate`. A batch: the
            [`SpiritLMVocoderOutput`] of [`~SpiritLMVocoder.forward`], zero-padded `waveform`
            `(batch_size, max_samples)` and `lengths`.
        """
        is_batch = _is_batch(hubert)
        items = [
            _prepare_item(self.config, *item, dur_pred=dur_pred)
            for item in _batch_items(is_batch, hubert, pitch, style, speaker_id, style_id)
        ]
        hubert, pitch, style, speakers, styles, predict = zip(*items)
        output = self(
            _pad(hubert),
            None if pitch[0] is None else _pad(pitch),
            None if style[0] is None else _pad(style),
            speaker_id=list(speakers),
            style_id=list(styles),
            unit_lengths=torch.tensor([len(units) for units in hubert]),
            dur_pred=list(predict),
        )
        return output if is_batch else output.waveform[0]

    def decode_string(
        self,
        unit_string: str | Sequence[str],
        speaker_id: int | str | Sequence[int | str] = 2,
        generator: random.Random | int | None = None,
    ) -> torch.FloatTensor | SpiritLMVocoderOutput:
        """
        Synthesises speech from a SPIRIT LM unit string, as the official `SpiritLMTokenizer.decode(string)`.

        The string is parsed like the official parser ([`string_to_units`], lenient: anything that is not a unit is
        skipped), pitch and style come pre-expanded to one per hubert unit, and the duration predictor re-expands
        the (deduplicated) units. A BASE vocoder ignores pitch and style units in the string. When an EXPRESSIVE
        string has pitch but no style units, one of the most common styles is picked at random as official;
        `generator` (a `random.Random` or a seed) makes that choice reproducible.

        Args:
            unit_string: e.g. `"[St71][Pi39][Hu99][Hu49]"`, or a list of them (a batch).
            speaker_id: speaker index or name; default 2 as official.
            generator: source of the random style choice above (a seed restarts for each string of a batch).

        Returns:
            As [`~SpiritLMVocoder.decode_units`]: a float32 `(num_samples,)` tensor, or a [`SpiritLMVocoderOutput`]
            for a list of strings.
        """
        if isinstance(unit_string, str):
            strings = [unit_string]
        else:
            strings = list(unit_string) if isinstance(unit_string, Sequence) else []
        if not strings or not all(isinstance(string, str) for string in strings):
            raise TypeError(
                "decode_string expects a unit string or a non-empty list of unit strings, got "
                f"{type(unit_string).__name__}"
            )
        takes_pitch, takes_style = "pitch" in self.config.unit_types, "style" in self.config.unit_types
        hubert, pitch, style = [], [], []
        for index, string in enumerate(strings):
            where = "unit string" if isinstance(unit_string, str) else f"unit string {index}"
            units = string_to_units(string, generator=generator)
            if not units["hubert"]:
                raise ValueError(f"{where} has no hubert units ('[HuN]'): nothing to synthesise")
            if takes_pitch and "pitch" not in units:
                raise ValueError(
                    f"{where} has no pitch units ('[PiN]'), which this EXPRESSIVE vocoder needs; decode hubert-only "
                    "strings with a BASE vocoder"
                )
            hubert.append(parse_unit_values(units["hubert"], "hubert"))
            pitch.append(parse_unit_values(units["pitch"], "pitch") if takes_pitch else None)
            style.append(parse_unit_values(units["style"], "style") if takes_style else None)
        if isinstance(unit_string, str):
            return self.decode_units(hubert[0], pitch[0], style[0], speaker_id=speaker_id)
        return self.decode_units(
            hubert, pitch if takes_pitch else None, style if takes_style else None, speaker_id=speaker_id
        )

    def chunked_decoder(self, **kwargs) -> "SpiritLMChunkedDecoder":
        """A [`SpiritLMChunkedDecoder`] on this vocoder: synthesises a growing unit string chunk by chunk, e.g. while a
        language model is still generating it. `kwargs` (`speaker_id`, `chunk_size`, ...) are documented there."""
        # The chunked decoder is part of streaming, which builds on this module (imports run downwards).
        from .streaming import SpiritLMChunkedDecoder

        return SpiritLMChunkedDecoder(self, **kwargs)

    def receptive_field(self) -> tuple[int, int]:
        """
        `(left, right)`: how many frames (hubert units after duration expansion, `config.hop_length` samples each)
        before and after a frame the generator reads to synthesise that frame's samples, rounded up. The defaults
        of [`SpiritLMChunkedDecoder`].
        """
        left = right = 0.0
        scale = 1  # samples per frame at the current layer's input

        def add(kernel_size: int, dilation: int, padding: int) -> None:
            nonlocal left, right
            span = dilation * (kernel_size - 1)
            left, right = left + padding / scale, right + (span - padding) / scale

        add(self.conv_pre.kernel_size[0], 1, self.conv_pre.padding[0])
        num_kernels = len(self.config.resblock_kernel_sizes)
        for index, upsampler in enumerate(self.upsampler):
            kernel_size, stride, padding = upsampler.kernel_size[0], upsampler.stride[0], upsampler.padding[0]
            left, right = left + (kernel_size - 1 - padding) / (stride * scale), right + padding / (stride * scale)
            scale *= stride
            reach = 0.0
            for block in self.resblocks[index * num_kernels : (index + 1) * num_kernels]:
                block_reach = sum(
                    conv.dilation[0] * (conv.kernel_size[0] - 1) / 2 for conv in [*block.convs1, *block.convs2]
                )
                reach = max(reach, block_reach)
            left, right = left + reach / scale, right + reach / scale
        add(self.conv_post.kernel_size[0], 1, self.conv_post.padding[0])
        return math.ceil(left), math.ceil(right)

    def predict_durations(self, hubert: UnitSequence) -> torch.LongTensor:
        """Frames of each unit of a deduplicated hubert sequence (`(num_units,)`, on the vocoder's device), as the
        official duration predictor gives them."""
        if self.duration_predictor is None:
            raise ValueError("this vocoder has no duration predictor; pass dur_pred=False")
        hubert = unit_ids_tensor(hubert, "", "hubert", self.config.num_hubert_units)
        return self.duration_predictor.durations(self.hubert_embedding(hubert.to(self.device)))

    def embed_units(
        self,
        hubert: UnitSequence,
        pitch: UnitSequence | None = None,
        style: UnitSequence | None = None,
        speaker_id: int | str | None = 2,
        style_id: int | str | None = None,
        durations: torch.LongTensor | None = None,
    ) -> torch.FloatTensor:
        """
        Generator input of one unit sequence, `(num_frames, config.model_in_dim)`: the hubert, pitch and style unit
        embeddings, each unit repeated `durations` times (`(num_units,)`; default once), then the speaker's and
        (BASE) the global style's, in the official order. `pitch` and `style` have one unit per hubert unit;
        `speaker_id` and `style_id` are as in [`~SpiritLMVocoder.forward`].
        """
        config = self.config
        hubert = unit_ids_tensor(hubert, "", "hubert", config.num_hubert_units)
        pitch = _optional_units(pitch, "", "pitch", config.num_pitch_units)
        style = _optional_units(style, "", "style", config.num_style_units)
        for stream, units in (("pitch", pitch), ("style", style)):
            if units is not None and len(units) != len(hubert):
                raise ValueError(
                    f"{stream} has {len(units)} units but hubert has {len(hubert)}: each hubert unit needs its own "
                    f"{stream} unit"
                )
        speaker, style_index = _voice(config, speaker_id, style_id)
        device = self.device
        streams = [self.hubert_embedding(hubert.to(device))]
        if pitch is not None:
            streams.append(self.pitch_embedding(pitch.to(device)))
        if style is not None:
            streams.append(self.style_embedding(style.to(device)))
        if durations is not None:
            durations = _check_durations(durations, hubert.shape).to(device)
            streams = [stream.repeat_interleave(durations, dim=0) for stream in streams]
        num_frames = streams[0].shape[0]
        if speaker is not None:
            streams.append(self.speaker_embedding.weight[speaker].expand(num_frames, -1))
        if style_index is not None:
            streams.append(self.global_style_embedding.weight[style_index].expand(num_frames, -1))
        return torch.cat(streams, dim=1)

    def synthesise(self, features: torch.Tensor, frame_lengths: torch.LongTensor | None = None) -> torch.Tensor:
        """
        The HiFi-GAN generator: `(batch_size, config.model_in_dim, num_frames)` generator input (see
        [`~SpiritLMVocoder.embed_units`]), right-padded to `frame_lengths`, -> `(batch_size, num_frames *
        config.hop_length)` samples in [-1, 1], zero after each row's length. Padding leaves a row's samples as they
        are alone, up to float rounding.
        """
        if features.ndim != 3 or features.shape[1] != self.config.model_in_dim:
            raise ValueError(
                f"features must have shape (batch_size, {self.config.model_in_dim}, num_frames), got "
                f"{tuple(features.shape)}"
            )
        if frame_lengths is None:
            frame_lengths = torch.full((features.shape[0],), features.shape[-1], device=features.device)
        mask = None
        if bool((frame_lengths != features.shape[-1]).any()):
            positions = torch.arange(features.shape[-1], device=features.device)
            mask = (positions < frame_lengths[:, None])[:, None, None].to(features.dtype)
        num_kernels = len(self.config.resblock_kernel_sizes)
        hidden_states = features[:, :, None].contiguous(memory_format=torch.channels_last)
        hidden_states = _masked(_conv(self.conv_pre, hidden_states), mask)
        for i, (upsampler, rate) in enumerate(zip(self.upsampler, self.config.upsample_rates)):
            hidden_states = _conv(upsampler, nn.functional.leaky_relu(hidden_states, self.config.leaky_relu_slope))
            if mask is not None:
                mask = mask.repeat_interleave(rate, dim=-1)
                hidden_states = hidden_states * mask
            first, *others = self.resblocks[i * num_kernels : (i + 1) * num_kernels]
            summed = first(hidden_states, mask)
            for block in others:
                summed += block(hidden_states, mask)
            hidden_states = summed / num_kernels
        # The official generator uses the default 0.01 slope here, not the configured one.
        hidden_states = _conv(self.conv_post, nn.functional.leaky_relu(hidden_states))
        return _masked(torch.tanh(hidden_states), mask)[:, 0, 0]

    def resolve_voice(
        self, speaker_id: int | str | None, style_id: int | str | None = None
    ) -> tuple[int | None, int | None]:
        """`(speaker, style)` indices of a speaker and (BASE) a global style given by index or name, `None` where the
        vocoder has none; a clear `ValueError` for one it does not have."""
        return _voice(self.config, speaker_id, style_id)


def _is_batch(hubert) -> bool:
    if isinstance(hubert, str):
        return False
    if isinstance(hubert, (torch.Tensor, np.ndarray)):
        if hubert.ndim not in (1, 2):
            raise ValueError(f"hubert must be 1-D (one sequence) or 2-D (a batch); got shape {tuple(hubert.shape)}")
        return hubert.ndim == 2
    if isinstance(hubert, Sequence):
        if len(hubert) == 0:
            raise ValueError("hubert is empty: pass at least one unit")
        return not isinstance(hubert[0], (int, np.integer))
    raise TypeError(
        f"hubert must be a list of ints, a space-separated string or an integer tensor, got {type(hubert).__name__}"
    )


def _batch_items(is_batch: bool, hubert, pitch, style, speaker_id, style_id):
    """Yields `(where, hubert, pitch, style, speaker_id, style_id)` per item; `where` prefixes error messages."""
    if not is_batch:
        yield "", hubert, pitch, style, speaker_id, style_id
        return
    size = len(hubert)
    if size == 0:
        raise ValueError("hubert is an empty batch: pass at least one unit sequence")

    def sequences(value, name: str) -> list:
        if value is None:
            return [None] * size
        if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 2:
            value = list(value)
        elif isinstance(value, str) or not isinstance(value, Sequence) or (value and not _is_batch(value)):
            raise ValueError(f"hubert is a batch, so `{name}` must be one too (a list of sequences or a 2-D tensor)")
        if len(value) != size:
            raise ValueError(f"`{name}` has {len(value)} sequences but hubert has {size}")
        return list(value)

    columns = zip(
        list(hubert),
        sequences(pitch, "pitch"),
        sequences(style, "style"),
        _per_item(speaker_id, "speaker_id", size),
        _per_item(style_id, "style_id", size),
    )
    for index, item in enumerate(columns):
        yield (f"item {index}: ", *item)


def _per_item(value, name: str, size: int) -> list:
    """One value per item of a batch of `size`: a single value for all, or a list / 1-D tensor of one each."""
    if value is None or isinstance(value, (str, int, np.integer)):
        return [value] * size
    if isinstance(value, torch.Tensor):
        value = [value.item()] * size if value.ndim == 0 else value.tolist()
    if len(value) != size:
        raise ValueError(f"`{name}` has {len(value)} values but hubert has {size} sequences")
    return list(value)


def _prepare_item(config: SpiritLMVocoderConfig, where: str, hubert, pitch, style, speaker_id, style_id, dur_pred):
    """
    Checks one item of `decode_units` and brings it to the form of `forward`: `(hubert, pitch, style, speaker, style
    index, dur_pred)`, units as 1-D CPU tensors with pitch and style at the hubert rate. `where` prefixes errors.
    """
    hubert = unit_ids_tensor(hubert, where, "hubert", config.num_hubert_units)
    pitch = _optional_units(pitch, where, "pitch", config.num_pitch_units)
    style = _optional_units(style, where, "style", config.num_style_units)
    num_units = len(hubert)
    if pitch is not None and len(pitch) != num_units:
        dur_pred = False  # official decode: frame-rate (resynthesis) units are not re-expanded
    if dur_pred and config.duration_predictor_hidden_size is None:
        raise ValueError("this vocoder has no duration predictor; pass dur_pred=False")
    if pitch is not None:
        pitch = _to_hubert_rate(pitch, num_units, config.hubert_to_pitch, where, "pitch", dur_pred)
    if style is not None:
        style = _to_hubert_rate(style, num_units, config.hubert_to_style, where, "style", dur_pred)
    return hubert, pitch, style, *_voice(config, speaker_id, style_id, where), dur_pred


def _pad(sequences: Sequence[torch.Tensor]) -> torch.Tensor:
    return nn.utils.rnn.pad_sequence(list(sequences), batch_first=True)


def parse_unit_values(values: str, stream: str) -> list[int]:
    """The unit ids of a space-separated `stream` (`"hubert"`, `"pitch"`, `"style"`) string, or a `ValueError`."""
    try:
        return [int(value) for value in values.split()]
    except ValueError as error:
        raise ValueError(f"malformed {stream} unit in the unit string ({error}); units look like '[Hu12]'") from None


def unit_ids_tensor(values, where: str, stream: str, num_units: int) -> torch.LongTensor:
    """Validates one unit sequence (list, space-separated string, 1-D tensor or array) -> CPU LongTensor."""
    if isinstance(values, str):
        try:
            values = [int(value) for value in values.split()]
        except ValueError:
            raise ValueError(f"{where}{stream} must be space-separated integers, got {values[:40]!r}") from None
    if isinstance(values, np.ndarray):
        values = torch.from_numpy(values)
    if isinstance(values, torch.Tensor):
        if values.ndim != 1:
            raise ValueError(f"{where}{stream} must be a 1-D sequence of unit ids, got shape {tuple(values.shape)}")
        if values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool:
            raise TypeError(f"{where}{stream} must hold integer unit ids, got dtype {values.dtype}")
        tensor = values.detach().to("cpu", torch.long)
    elif isinstance(values, Sequence) and all(
        isinstance(value, (int, np.integer)) and not isinstance(value, bool) for value in values
    ):
        values = [int(value) for value in values]
        # Python ints are unbounded: report an out-of-range one here, before it overflows the int64 tensor.
        for position, value in enumerate(values):
            if not 0 <= value < num_units:
                raise _out_of_range(where, stream, value, position, num_units)
        tensor = torch.tensor(values, dtype=torch.long)
    else:
        raise TypeError(
            f"{where}{stream} must be a list of ints, a space-separated string or an integer tensor, got "
            f"{type(values).__name__}"
        )
    if tensor.numel() == 0:
        raise ValueError(f"{where}{stream} is empty: pass at least one unit")
    bad = ((tensor < 0) | (tensor >= num_units)).nonzero()
    if len(bad):
        position = int(bad[0])
        raise _out_of_range(where, stream, int(tensor[position]), position, num_units)
    return tensor


def _optional_units(values, where: str, stream: str, num_units: int | None) -> torch.LongTensor | None:
    """A pitch or style sequence checked like [`unit_ids_tensor`], `None` for a vocoder that takes none."""
    if num_units is None:
        if values is not None:
            raise ValueError(f"{where}this vocoder takes no {stream} units; drop `{stream}`")
        return None
    if values is None:
        raise ValueError(f"{where}this EXPRESSIVE vocoder needs `{stream}` units (hubert, pitch and style units)")
    return unit_ids_tensor(values, where, stream, num_units)


def _check_unit_batch(
    units, unit_lengths: torch.Tensor | None, num_units: int, stream: str = "hubert"
) -> tuple[torch.LongTensor, torch.LongTensor]:
    """Checks a `(batch_size, num_units)` tensor of unit ids of `forward` (and, for hubert, `unit_lengths`); returns
    both, the lengths defaulting to full rows."""
    if not isinstance(units, torch.Tensor):
        raise TypeError(
            f"forward takes {stream} as a tensor of unit ids of shape (batch_size, num_units), got "
            f"{type(units).__name__}; decode_units takes lists and strings"
        )
    if units.ndim != 2:
        raise ValueError(
            f"forward takes {stream} of shape (batch_size, num_units), got {tuple(units.shape)}; add a batch "
            "dimension (units[None]) or call decode_units"
        )
    if units.dtype.is_floating_point or units.dtype.is_complex or units.dtype == torch.bool:
        raise TypeError(f"{stream} must hold integer unit ids, got dtype {units.dtype}")
    batch_size, width = units.shape
    if unit_lengths is None:
        unit_lengths = torch.full((batch_size,), width)
    unit_lengths = torch.as_tensor(unit_lengths).cpu()
    if unit_lengths.shape != (batch_size,) or not bool(((unit_lengths >= 1) & (unit_lengths <= width)).all()):
        raise ValueError(
            f"unit_lengths must give 1 to {width} units for each of the {batch_size} rows, got {unit_lengths.tolist()}"
        )
    valid = torch.arange(width) < unit_lengths[:, None]
    bad = (((units < 0) | (units >= num_units)) & valid.to(units.device)).nonzero()
    if len(bad):
        row, position = bad[0].tolist()
        raise _out_of_range(f"item {row}: ", stream, int(units[row, position]), position, num_units)
    return units, unit_lengths


def _check_durations(durations, shape: torch.Size) -> torch.LongTensor:
    if not isinstance(durations, torch.Tensor) or durations.shape != shape:
        found = tuple(durations.shape) if isinstance(durations, torch.Tensor) else type(durations).__name__
        raise ValueError(f"durations must be a tensor of the shape of hubert {tuple(shape)}, got {found}")
    if durations.dtype.is_floating_point or durations.dtype.is_complex or bool((durations < 0).any()):
        raise ValueError("durations must be whole numbers of frames >= 0")
    return durations


def _voice(config: SpiritLMVocoderConfig, speaker_id, style_id, where: str = "") -> tuple[int | None, int | None]:
    """Indices of the speaker and the BASE global style given by index or name; `None` where the vocoder has none."""
    speaker = None
    if config.num_speakers is not None:
        speaker = _lookup(speaker_id, config.speakers, config.num_speakers, f"{where}speaker_id", "speakers")
    if config.num_styles is None:
        if style_id is not None:
            raise ValueError(
                f"{where}style_id={style_id!r}: this vocoder has no global style (BASE only); EXPRESSIVE takes style "
                "units through `style`"
            )
        return speaker, None
    if style_id is None:
        style_id = config.default_style_id or 0
    return speaker, _lookup(style_id, config.styles, config.num_styles, f"{where}style_id", "styles")


def _out_of_range(where: str, stream: str, value: int, position: int, num_units: int) -> ValueError:
    return ValueError(
        f"{where}{stream} unit {value} at position {position} is out of range: this vocoder has {num_units} "
        f"{stream} units (0 to {num_units - 1})"
    )


def _to_hubert_rate(units: torch.Tensor, num_units: int, ratio: int, where: str, stream: str, dur_pred: bool):
    """Pre-expanded units pass through; units at their own rate are repeated `ratio` times (official rule)."""
    if len(units) == num_units:
        return units
    if dur_pred:
        raise ValueError(
            f"{where}{stream} has {len(units)} units but hubert has {num_units}: with duration prediction each "
            f"hubert unit needs its own {stream} unit (as string_to_units returns them); for {stream} units at "
            "their own rate pass dur_pred=False"
        )
    if abs(len(units) * ratio - num_units) / ratio > 1:
        raise ValueError(
            f"{where}{stream} has {len(units)} units for {num_units} hubert units: at {ratio} hubert units per "
            f"{stream} unit it needs {num_units / ratio:.1f} ± 1 units (or exactly {num_units}, one per hubert unit)"
        )
    expanded = units.repeat_interleave(ratio)
    if len(expanded) < num_units:
        expanded = torch.cat([expanded, expanded[-1:].expand(num_units - len(expanded))])
    return expanded[:num_units]


def _lookup(value, names: list[str] | None, count: int, argument: str, what: str) -> int:
    """Index of a speaker / style given by index or by name."""
    if isinstance(value, str):
        if not names or value not in names:
            known = ", ".join(map(repr, names)) if names else "none (this vocoder has no names)"
            raise ValueError(f"unknown {argument} {value!r}; known {what}: {known}")
        return names.index(value)
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{argument} must be an int or a name, got {type(value).__name__}")
    if not 0 <= value < count:
        raise ValueError(f"{argument}={value} is out of range: this vocoder has {count} {what} (0 to {count - 1})")
    return int(value)


def load_vocoder(repo: str | os.PathLike, **kwargs) -> SpiritLMVocoder:
    """The [`SpiritLMVocoder`] of a converted SPIRIT LM repo (its `vocoder/` subfolder), in eval mode: how the pipeline
    and the command line load it. `kwargs` (`dtype`, `revision`, ...) go to `from_pretrained`."""
    return SpiritLMVocoder.from_pretrained(repo, subfolder=VOCODER_SUBFOLDER, **kwargs).eval()


def __getattr__(name: str):
    # Deprecated location: the chunked decoder moved to streaming.py; the old import keeps working with a warning.
    if name in ("SpiritLMAudioChunk", "SpiritLMChunkedDecoder"):
        from . import streaming

        warnings.warn(
            f"transformers_spiritlm.vocoder.{name} moved to transformers_spiritlm.streaming; import it from there",
            FutureWarning,
            stacklevel=2,
        )
        return getattr(streaming, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SpiritLMVocoder", "SpiritLMVocoderOutput", "load_vocoder", "parse_unit_values", "unit_ids_tensor"]
