"""SPIRIT LM vocoder: speech units -> 16 kHz waveform (unit HiFi-GAN with a duration predictor)."""

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.models.speecht5.modeling_speecht5 import HifiGanResidualBlock
from transformers.utils import ModelOutput

from .configuration_spiritlm import SpiritLMVocoderConfig
from .modeling_spiritlm import SpiritLMLoadingMixin
from .units import UnitStringReader, string_to_units


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


class SpiritLMVocoder(SpiritLMLoadingMixin, PreTrainedModel):
    """
    SPIRIT LM unit HiFi-GAN: HuBERT units (25 Hz) + pitch units (12.5 Hz) + style units (1 Hz) for EXPRESSIVE, and a
    speaker (+ a global style for BASE) -> 16 kHz waveform. Identical in output to the official
    `SpiritLMTokenizer.decode` on the same weights; weight norm is folded into the weights at conversion.

    ```python
    >>> vocoder = SpiritLMVocoder.from_pretrained(repo, subfolder="vocoder")
    >>> vocoder.decode_string("[St71][Pi39][Hu99][Hu49][Hu38]")      # 1-D float32 tensor at 16 kHz
    >>> vocoder([99, 49, 38, 149], speaker_id="ex03", dur_pred=True)  # BASE, deduplicated units
    ```
    """

    config: SpiritLMVocoderConfig
    config_class = SpiritLMVocoderConfig
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

    @torch.no_grad()
    def forward(
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
            One sequence: a float32 tensor `(num_samples,)` at `config.sampling_rate`. A batch: a
            [`SpiritLMVocoderOutput`] with zero-padded `waveform` `(batch_size, max_samples)` and `lengths`; each row
            equals the one-by-one result (on CPU exactly: items are synthesised one by one there; on an accelerator
            as one padded batch, up to float rounding).
        """
        is_batch = _is_batch(hubert)
        items = [
            self._conditioning(*item, dur_pred=dur_pred)
            for item in _batch_items(is_batch, hubert, pitch, style, speaker_id, style_id)
        ]
        lengths = torch.tensor([features.shape[0] for features in items], device=self.device)
        if self.device.type == "cpu":
            # A CPU computes padding as it computes audio, and the big padded tensors cost extra memory traffic: it
            # synthesises each item alone, ~2.5x faster than a padded batch of 8 utterances of 4 to 8 s.
            waveforms = [
                self._generate(item.T[None], lengths[index : index + 1])[0] for index, item in enumerate(items)
            ]
            waveform = nn.utils.rnn.pad_sequence(waveforms, batch_first=True).float()
        else:
            features = nn.utils.rnn.pad_sequence(items, batch_first=True).transpose(1, 2)
            waveform = self._generate(features, lengths).float()
        if not is_batch:
            return waveform[0]
        return SpiritLMVocoderOutput(waveform=waveform, lengths=lengths * self.config.hop_length)

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
            As [`~SpiritLMVocoder.forward`]: a float32 `(num_samples,)` tensor, or a [`SpiritLMVocoderOutput`] for a
            list of strings.
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
        hubert, pitch, style = [], [], []
        for index, string in enumerate(strings):
            where = "unit string" if isinstance(unit_string, str) else f"unit string {index}"
            units = string_to_units(string, generator=generator)
            if not units["hubert"]:
                raise ValueError(f"{where} has no hubert units ('[HuN]'): nothing to synthesise")
            if self.pitch_embedding is not None and "pitch" not in units:
                raise ValueError(
                    f"{where} has no pitch units ('[PiN]'), which this EXPRESSIVE vocoder needs; decode hubert-only "
                    "strings with a BASE vocoder"
                )
            hubert.append(_parse_units(units["hubert"], "hubert"))
            pitch.append(_parse_units(units["pitch"], "pitch") if self.pitch_embedding is not None else None)
            style.append(_parse_units(units["style"], "style") if self.style_embedding is not None else None)
        if isinstance(unit_string, str):
            return self(hubert[0], pitch[0], style[0], speaker_id=speaker_id)
        return self(
            hubert,
            None if self.pitch_embedding is None else pitch,
            None if self.style_embedding is None else style,
            speaker_id=speaker_id,
        )

    def chunked_decoder(
        self,
        speaker_id: int | str = 2,
        style_id: int | str | None = None,
        chunk_size: int = 40,
        first_chunk_size: int | None = 5,
        left_context: int | None = None,
        lookahead: int | None = None,
        generator: random.Random | int | None = None,
        context: str | None = None,
    ) -> "SpiritLMChunkedDecoder":
        """
        Synthesises a growing unit string chunk by chunk, e.g. while a language model is still generating it.

        Push pieces of a unit string (whole tokens such as `"[Pi3][Hu12]"`) with
        [`~SpiritLMChunkedDecoder.push`]; it returns the audio that has become final, as [`SpiritLMAudioChunk`]s.
        [`~SpiritLMChunkedDecoder.flush`] ends the string and returns the rest. The concatenated chunks equal
        [`~SpiritLMVocoder.decode_string`] of the whole string (up to float rounding, ~1e-6), BASE and EXPRESSIVE:

        - a unit's duration depends on the units after it (the duration predictor's kernels), so its frames are
          placed once the next few units exist;
        - each chunk is synthesised with `left_context` frames before it and `lookahead` frames after it, the
          generator's receptive field (default), so that its samples equal those of the whole waveform.
        - EXPRESSIVE: pitch and style are per hubert unit (as [`string_to_units`] expands them), so nothing depends
          on the total length; only the hubert units before the first pitch / style unit take that first unit, so
          audio starts once the string has both. A string that never gets a style unit takes one of the official
          most common styles (`generator`, as in `decode_string`) at `flush`.

        Args:
            speaker_id, style_id: as in [`~SpiritLMVocoder.forward`].
            chunk_size: hubert units per chunk (at least 1; default 40: each chunk is synthesised with its context,
                so small chunks cost more, 3x the offline vocoding time at 40 and 6x at 20 in
                `benchmarks/bench_streaming.py`). The chunks depend only on the unit string, not on how it is
                pushed: a push that makes several chunks final returns them all.
            first_chunk_size: hubert units of the first chunk, smaller for an earlier first audio (default 5;
                `None`: `chunk_size`).
            left_context, lookahead: frames of context synthesised before / after each chunk. `None` (default): the
                generator's receptive field ([`~SpiritLMVocoder.receptive_field`]), which makes chunks exact; fewer
                frames give earlier, cheaper chunks that differ slightly at their edges.
            generator: source of the official random style choice above (a `random.Random` or a seed).
            context: unit tokens that come before the string (e.g. the speech of a prompt that the string
                continues): they condition the audio of the string but their own audio is not returned.

        ```python
        >>> decoder = vocoder.chunked_decoder(speaker_id=2)
        >>> chunks = [chunk for token in ["[Hu12]", "[Hu7]", ...] for chunk in decoder.push(token)]
        >>> chunks += decoder.flush()
        >>> waveform = torch.cat([chunk.waveform for chunk in chunks])   # == vocoder.decode_string("".join(tokens))
        ```
        """
        return SpiritLMChunkedDecoder(
            self, speaker_id, style_id, chunk_size, first_chunk_size, left_context, lookahead, generator, context
        )

    def receptive_field(self) -> tuple[int, int]:
        """
        `(left, right)`: how many frames (hubert units after duration expansion, `config.hop_length` samples each)
        before and after a frame the generator reads to synthesise that frame's samples, rounded up. The defaults
        of [`~SpiritLMVocoder.chunked_decoder`].
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

    def _conditioning(self, where, hubert, pitch, style, speaker_id, style_id, dur_pred: bool) -> torch.Tensor:
        """Generator input of one item: `(num_frames, model_in_dim)`. `where` prefixes error messages."""
        config = self.config
        hubert = _unit_tensor(hubert, where, "hubert", config.num_hubert_units)
        pitch = self._optional_units(pitch, where, "pitch", config.num_pitch_units)
        style = self._optional_units(style, where, "style", config.num_style_units)
        num_units = len(hubert)
        if pitch is not None and len(pitch) != num_units:
            dur_pred = False  # official decode: frame-rate (resynthesis) units are not re-expanded
        if dur_pred and self.duration_predictor is None:
            raise ValueError("this vocoder has no duration predictor; pass dur_pred=False")
        if pitch is not None:
            pitch = _to_hubert_rate(pitch, num_units, config.hubert_to_pitch, where, "pitch", dur_pred)
        if style is not None:
            style = _to_hubert_rate(style, num_units, config.hubert_to_style, where, "style", dur_pred)

        device = self.device
        hubert_embeddings = self.hubert_embedding(hubert.to(device))
        streams = [hubert_embeddings]
        if pitch is not None:
            streams.append(self.pitch_embedding(pitch.to(device)))
        if style is not None:
            streams.append(self.style_embedding(style.to(device)))
        if dur_pred:
            durations = self.duration_predictor.durations(hubert_embeddings)
            streams = [stream.repeat_interleave(durations, dim=0) for stream in streams]
        num_frames = streams[0].shape[0]
        if self.speaker_embedding is not None:
            index = _lookup(speaker_id, config.speakers, config.num_speakers, f"{where}speaker_id", "speakers")
            streams.append(self.speaker_embedding.weight[index].expand(num_frames, -1))
        if self.global_style_embedding is not None:
            if style_id is None:
                style_id = config.default_style_id or 0
            index = _lookup(style_id, config.styles, config.num_styles, f"{where}style_id", "styles")
            streams.append(self.global_style_embedding.weight[index].expand(num_frames, -1))
        elif style_id is not None:
            raise ValueError(
                f"{where}style_id={style_id!r}: this vocoder has no global style (BASE only); EXPRESSIVE takes style "
                "units through `style`"
            )
        return torch.cat(streams, dim=1)

    def _optional_units(self, values, where: str, stream: str, num_units: int | None) -> torch.LongTensor | None:
        if num_units is None:
            if values is not None:
                raise ValueError(f"{where}this vocoder takes no {stream} units; drop `{stream}`")
            return None
        if values is None:
            raise ValueError(f"{where}this EXPRESSIVE vocoder needs `{stream}` units (hubert, pitch and style units)")
        return _unit_tensor(values, where, stream, num_units)

    def _generate(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """HiFi-GAN generator: `(batch, model_in_dim, frames)` -> `(batch, frames * hop_length)` in [-1, 1]."""
        mask = None
        if bool((lengths != features.shape[-1]).any()):
            positions = torch.arange(features.shape[-1], device=features.device)
            mask = (positions < lengths[:, None])[:, None, None].to(features.dtype)
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


@dataclass
class SpiritLMAudioChunk:
    """
    One chunk of [`SpiritLMChunkedDecoder`] output.

    Args:
        units (`str`): the unit tokens the chunk covers (up to its last hubert unit; the last chunk takes the rest).
        waveform (`torch.FloatTensor` of shape `(num_samples,)`): its samples at `config.sampling_rate`.
    """

    units: str
    waveform: torch.FloatTensor


class SpiritLMChunkedDecoder:
    """
    Incremental [`SpiritLMVocoder.decode_string`]: made by [`~SpiritLMVocoder.chunked_decoder`], which documents it.
    """

    def __init__(
        self,
        vocoder: SpiritLMVocoder,
        speaker_id: int | str,
        style_id: int | str | None,
        chunk_size: int,
        first_chunk_size: int | None,
        left_context: int | None,
        lookahead: int | None,
        generator: random.Random | int | None,
        context: str | None = None,
    ):
        for name, value in (("chunk_size", chunk_size), ("first_chunk_size", first_chunk_size)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be a whole number of hubert units >= 1, got {value!r}")
        for name, value in (("left_context", left_context), ("lookahead", lookahead)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(
                    f"{name} must be a number of frames >= 0 (or None for the exact default), got {value!r}"
                )
        if vocoder.duration_predictor is None:
            raise ValueError(
                "chunked decoding needs a vocoder with a duration predictor (generated, deduplicated units)"
            )
        config = vocoder.config
        if vocoder.speaker_embedding is not None:
            _lookup(speaker_id, config.speakers, config.num_speakers, "speaker_id", "speakers")
        if style_id is not None and vocoder.global_style_embedding is not None:
            _lookup(style_id, config.styles, config.num_styles, "style_id", "styles")
        self.vocoder = vocoder
        self.speaker_id, self.style_id = speaker_id, style_id
        self.chunk_size = chunk_size
        self.first_chunk_size = chunk_size if first_chunk_size is None else first_chunk_size
        field_left, field_right = vocoder.receptive_field()
        self.left_context = field_left if left_context is None else left_context
        self.lookahead = field_right if lookahead is None else lookahead
        predictor = vocoder.duration_predictor
        # Units after a unit that its duration depends on: the right reach of the predictor's two convolutions.
        self._duration_reach = sum(
            conv.kernel_size[0] - 1 - conv.padding[0] for conv in (predictor.conv1, predictor.conv2)
        )
        self.generator = generator
        self._text = ""  # every unit token pushed
        self._parsed = 0  # characters of `_text` read
        # `_text` read as string_to_units reads it: a row of unit ids per hubert unit, and where each ends in `_text`.
        self._reader = UnitStringReader(convert=self._unit_id)
        self._durations: list[int] = []  # final durations of the first units
        self._done_units = 0  # units whose samples were returned
        self._done_frames = 0
        self._done_chars = 0
        self._finished = False
        if context:
            self._text = context
            self._parse(final=True)
        self._context_units, self._context_chars = len(self._reader.hubert), len(self._text)

    def push(self, units: str) -> list[SpiritLMAudioChunk]:
        """Appends unit tokens (whole tokens, e.g. `"[St3][Pi7][Hu12]"`); returns the chunks that became final
        (often none)."""
        if self._finished:
            raise ValueError("this decoder was flushed; start a new one with vocoder.chunked_decoder()")
        if not isinstance(units, str):
            raise TypeError(f"push expects a unit string such as '[Hu12]', got {type(units).__name__}")
        self._text += units
        self._parse(final=False)
        return self._synthesise(final=False)

    def flush(self) -> list[SpiritLMAudioChunk]:
        """Ends the unit string: returns the remaining audio (and the unit tokens after the last chunk)."""
        if self._finished:
            return []
        self._parse(final=True)
        self._finished = True
        if not self._reader.hubert:
            raise ValueError("the unit string has no hubert units ('[HuN]'): nothing to synthesise")
        if self.vocoder.pitch_embedding is not None and self._reader.last["pitch"] is None:
            raise ValueError(
                "the unit string has no pitch units ('[PiN]'), which this EXPRESSIVE vocoder needs; decode hubert-only "
                "strings with a BASE vocoder"
            )
        if self.vocoder.style_embedding is not None:
            self._reader.choose_missing_style(self.generator)
        return self._synthesise(final=True)

    def _parse(self, final: bool) -> None:
        """Reads the new unit tokens of `_text` as [`string_to_units`] does (`final`: `_text` is complete)."""
        self._reader.push(self._text[self._parsed :])
        self._parsed = len(self._text)
        if final:
            self._reader.flush()

    def _unit_id(self, stream: str, value: str) -> int | str:
        """A unit read from the string, checked, as an id; the pitch and style units that a BASE vocoder does not
        take stay as read, as in `decode_string`."""
        if getattr(self.vocoder, f"{stream}_embedding") is None:
            return value
        ids = _parse_units(value, stream)
        if len(ids) != 1:
            raise ValueError(f"malformed {stream} unit in the unit string ({value!r}); units look like '[Hu12]'")
        _unit_tensor(ids, "", stream, getattr(self.vocoder.config, f"num_{stream}_units"))
        return ids[0]

    def _ready(self) -> bool:
        """Whether every unit pushed has its pitch and style (EXPRESSIVE: both first units seen)."""
        vocoder, last = self.vocoder, self._reader.last
        return (vocoder.pitch_embedding is None or last["pitch"] is not None) and (
            vocoder.style_embedding is None or last["style"] is not None
        )

    @torch.no_grad()
    def _synthesise(self, final: bool) -> list[SpiritLMAudioChunk]:
        """The chunks that became final. Their boundaries depend only on the unit string, not on how it was pushed:
        `first_chunk_size` hubert units, then `chunk_size` each, the last chunk taking the rest."""
        hubert = self._reader.hubert
        if not hubert or not (final or self._ready()):
            return []
        num_units = len(hubert)
        stable = num_units if final else num_units - self._duration_reach
        if stable > len(self._durations):
            embeddings = self.vocoder.hubert_embedding(torch.tensor(hubert, device=self.vocoder.device))
            durations = self.vocoder.duration_predictor.durations(embeddings).tolist()
            self._durations += durations[len(self._durations) : stable]
        ends = np.cumsum(self._durations) if self._durations else np.zeros(0, dtype=np.int64)
        if self._done_units < self._context_units:
            if len(self._durations) < self._context_units:
                return []
            self._done_units, self._done_chars = self._context_units, self._context_chars
            self._done_frames = int(ends[self._context_units - 1])
        if final:
            available = num_units
        else:
            # Units whose frames, and `lookahead` frames after them, are all placed.
            placed = int(ends[-1]) if len(ends) else 0
            available = int(np.searchsorted(ends, placed - self.lookahead, side="right"))
        chunks = []
        while True:
            size = self.first_chunk_size if self._done_units == self._context_units else self.chunk_size
            if available - self._done_units < size:
                break
            end_unit = self._done_units + size
            chunks.append(self._chunk(ends, end_unit, self._reader.ends[end_unit - 1]))
        if final and (num_units > self._done_units or len(self._text) > self._done_chars):
            chunks.append(self._chunk(ends, num_units, len(self._text)))
        return chunks

    def _chunk(self, ends: np.ndarray, end_unit: int, chars: int) -> SpiritLMAudioChunk:
        """Synthesises the units from the last chunk's end to `end_unit` (their text ends at character `chars`), with
        `left_context` frames before and up to `lookahead` frames after them."""
        vocoder = self.vocoder
        start_frame, end_frame = self._done_frames, int(ends[end_unit - 1])
        waveform = torch.zeros(0, device=vocoder.device)
        if end_frame > start_frame:
            window_start = max(0, start_frame - self.left_context)
            window_end = min(int(ends[-1]), end_frame + self.lookahead)
            first_unit = int(np.searchsorted(ends, window_start, side="right"))
            last_unit = int(np.searchsorted(ends, window_end - 1, side="right")) + 1
            units = slice(first_unit, last_unit)
            reader = self._reader
            features = vocoder._conditioning(
                "",
                reader.hubert[units],
                None if vocoder.pitch_embedding is None else reader.pitch[units],
                None if vocoder.style_embedding is None else reader.style[units],
                self.speaker_id,
                self.style_id,
                dur_pred=False,
            )
            durations = torch.tensor(self._durations[units], device=features.device)
            features = features.repeat_interleave(durations, dim=0)
            unit_start = int(ends[first_unit - 1]) if first_unit else 0
            features = features[window_start - unit_start : window_end - unit_start]
            audio = vocoder._generate(features.T[None], torch.tensor([features.shape[0]], device=features.device))
            hop = vocoder.config.hop_length
            waveform = audio[0, (start_frame - window_start) * hop : (end_frame - window_start) * hop].float()
        chunk = SpiritLMAudioChunk(units=self._text[self._done_chars : chars], waveform=waveform)
        self._done_units, self._done_frames, self._done_chars = end_unit, end_frame, chars
        return chunk


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

    def per_item(value, name: str) -> list:
        if value is None or isinstance(value, (str, int, np.integer)):
            return [value] * size
        if len(value) != size:
            raise ValueError(f"`{name}` has {len(value)} values but hubert has {size} sequences")
        return list(value)

    columns = zip(
        list(hubert),
        sequences(pitch, "pitch"),
        sequences(style, "style"),
        per_item(speaker_id, "speaker_id"),
        per_item(style_id, "style_id"),
    )
    for index, item in enumerate(columns):
        yield (f"item {index}: ", *item)


def _parse_units(values: str, stream: str) -> list[int]:
    try:
        return [int(value) for value in values.split()]
    except ValueError as error:
        raise ValueError(f"malformed {stream} unit in the unit string ({error}); units look like '[Hu12]'") from None


def _unit_tensor(values, where: str, stream: str, num_units: int) -> torch.LongTensor:
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


__all__ = ["SpiritLMAudioChunk", "SpiritLMChunkedDecoder", "SpiritLMVocoder", "SpiritLMVocoderOutput"]
