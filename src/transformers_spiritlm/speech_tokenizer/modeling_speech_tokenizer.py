"""`SpiritLMSpeechTokenizer`: audio → SPIRIT LM speech units, as the official `SpiritLMTokenizer.encode_units`."""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import HubertModel, PreTrainedModel
from transformers.utils import ModelOutput

from ..audio import AudioInput, check_waveform_batch, is_audio_batch, prepare_audio
from ..configuration_spiritlm import SpiritLMSpeechTokenizerConfig
from ..modeling_spiritlm import SpiritLMLoadingMixin
from ..units import units_to_string
from .hubert import (
    SpiritLMHubertKMeansQuantizer,
    SpiritLMHubertUnitQuantizer,
    fill_blank_units,
    hubert_layer_features,
)
from .pitch import SpiritLMPitchUnitEncoder
from .style import SpiritLMStyleEncoder


@dataclass
class SpiritLMSpeechTokenizerOutput(ModelOutput):
    r"""
    hubert_units (`torch.LongTensor` of shape `(batch_size, frames)`):
        HuBERT unit of each 25 Hz frame, blanks filled (see [`fill_blank_units`]; linear quantizer only); -1 past each
        row's `frame_lengths`.
    hubert_features (`torch.FloatTensor` of shape `(batch_size, frames, hidden_size)`):
        The quantized HuBERT features (official layer 11; the last layer kept); padded frames hold garbage.
    frame_lengths (`torch.LongTensor` of shape `(batch_size,)`):
        Valid frames of each row.
    pitch_units (`torch.LongTensor` of shape `(batch_size, pitch_frames)`, *optional*):
        EXPRESSIVE pitch unit of each 80 ms (12.5 Hz); -1 past each row's `pitch_lengths`.
    pitch_lengths (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
        Valid pitch units of each row.
    style_units (`torch.LongTensor` of shape `(batch_size, seconds)`, *optional*):
        EXPRESSIVE style unit of each started second (1 Hz); -1 past each row's `style_lengths`.
    style_lengths (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
        Valid style units of each row.
    """

    hubert_units: torch.LongTensor | None = None
    hubert_features: torch.FloatTensor | None = None
    frame_lengths: torch.LongTensor | None = None
    pitch_units: torch.LongTensor | None = None
    pitch_lengths: torch.LongTensor | None = None
    style_units: torch.LongTensor | None = None
    style_lengths: torch.LongTensor | None = None


class SpiritLMSpeechTokenizer(SpiritLMLoadingMixin, PreTrainedModel):
    """
    SPIRIT LM speech tokenizer: audio → 25 Hz HuBERT units (BASE), + 12.5 Hz pitch and 1 Hz style units (EXPRESSIVE),
    the units of the official `SpiritLMTokenizer` on the same weights. A stock `HubertModel` (`hubert.*`) computes
    the layer-11 features, an MLP (`quantizer.*`) picks a unit per frame (or, with `config.quantizer_type="kmeans"`,
    the nearest of `quantizer.centroids`, as `spiritlm train-units` makes them). With `config.pitch_config`, a
    [`SpiritLMPitchUnitEncoder`] (`pitch_encoder.*`: FCPE F0 + VQ-VAE encoder, always float32) adds the pitch units;
    with `config.style_config`, a [`SpiritLMStyleEncoder`] (`style_encoder.*`) the style units. Each encoder gets the
    raw 16 kHz chunk and normalises it itself, as the official ones do.

    Long audio is encoded like the official code: in consecutive chunks of `config.max_chunk_samples` (100 s), each
    chunk on its own (its own normalisation, attention and blank filling), units concatenated; a final chunk
    shorter than `config.min_chunk_samples` (80 ms) is skipped. Chunks of many clips are encoded in padded batches
    that give the units of encoding each clip alone.

    Float32 gives the official units. `from_pretrained(..., dtype=torch.bfloat16)` is a faster approximation
    (about 2x on a CPU with bfloat16 instructions; the pitch encoder stays float32): a few % of the HuBERT units
    change, see benchmarks/README.md.

    ```python
    >>> st = SpiritLMSpeechTokenizer.from_pretrained(repo, subfolder="speech_tokenizer")
    >>> st.encode_units("speech.wav")                          # {"hubert": [...], "pitch": [...], "style": [...]}
    >>> st.encode_units([wav_a, wav_b], sampling_rate=44100)  # list of dicts, one batched pass
    >>> st.encode_string("speech.wav")                         # "[St71][Pi39][Hu12]..." (merged, as official)
    ```
    """

    config: SpiritLMSpeechTokenizerConfig
    base_model_prefix = "speech_tokenizer"
    main_input_name = "input_values"
    input_modalities = "audio"
    _supports_sdpa = True
    _supports_flash_attn = True
    # bfloat16 keeps ~3 significant digits, too few for F0 and the pitch codes: dtype=bfloat16 loads it float32.
    _keep_in_fp32_modules_strict = ["pitch_encoder"]

    def __init__(self, config: SpiritLMSpeechTokenizerConfig):
        super().__init__(config)
        self.hubert = HubertModel(config.hubert_config)
        hidden_size = config.hubert_config.hidden_size
        if config.quantizer_type == "kmeans":
            self.quantizer = SpiritLMHubertKMeansQuantizer(hidden_size, config.num_hubert_units)
        else:
            self.quantizer = SpiritLMHubertUnitQuantizer(
                hidden_size, list(config.quantizer_hidden_sizes), config.num_hubert_units
            )
        self.pitch_encoder = None if config.pitch_config is None else SpiritLMPitchUnitEncoder(config.pitch_config)
        self.style_encoder = None if config.style_config is None else SpiritLMStyleEncoder(config.style_config)
        if self.pitch_encoder is not None and self.pitch_encoder.config.sampling_rate != config.sampling_rate:
            raise ValueError(
                f"pitch_config sampling_rate {self.pitch_encoder.config.sampling_rate} differs from the speech "
                f"tokenizer's {config.sampling_rate}"
            )
        self.post_init()

    def _apply(self, fn, recurse=True):
        # `.to(torch.bfloat16)`, `.half()` etc. keep the pitch encoder float32 too, as `from_pretrained(dtype=...)`
        # does: its STFT has no half-precision CPU kernel, and half-precision F0 would move pitch units.
        super()._apply(fn, recurse)
        if self.pitch_encoder is not None and self.pitch_encoder.codebook.codebook.dtype != torch.float32:
            self.pitch_encoder.float()
        return self

    def forward(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> SpiritLMSpeechTokenizerOutput:
        r"""
        Encodes each row as one chunk (no 100 s splitting; see `encode_units` for that), every configured stream.

        input_values (`torch.FloatTensor` of shape `(batch_size, samples)` or `(samples,)`):
            16 kHz mono waveforms in [-1, 1], right-padded; moved to the model's device. Every encoder reads them
            in float32: the first conv layer of HuBERT and of the style encoder runs in float32 whatever the model's
            dtype (it is cheap, and rounding raw audio to bfloat16 would move units), the rest in the model's dtype.
        attention_mask (`torch.Tensor` of shape `(batch_size, samples)`, *optional*):
            1 for samples, 0 for padding (as the feature extractor returns it). Each row gets the units it gets alone.
        """
        input_values, lengths = self._check_inputs(input_values, attention_mask)
        features, frame_lengths = hubert_layer_features(self.hubert, input_values, lengths)
        units = self.quantizer.assign(features)
        if self.config.blank_unit is not None:
            units = fill_blank_units(units, frame_lengths, self.config.blank_unit)
        padding = torch.arange(units.shape[1], device=units.device) >= frame_lengths[:, None]
        streams = {}
        if self.pitch_encoder is not None:
            pitch = self.pitch_encoder(input_values.float(), lengths)
            streams.update(pitch_units=pitch.units, pitch_lengths=pitch.unit_lengths.to(units.device))
        if self.style_encoder is not None:
            mask = torch.arange(input_values.shape[1], device=self.device) < lengths[:, None]
            style = self.style_encoder(input_values, attention_mask=mask.long())
            streams.update(style_units=style.units, style_lengths=style.unit_lengths)
        return SpiritLMSpeechTokenizerOutput(
            hubert_units=units.masked_fill(padding, -1),
            hubert_features=features,
            frame_lengths=frame_lengths,
            **streams,
        )

    @torch.inference_mode()
    def encode_units(
        self,
        audio: AudioInput | Sequence[AudioInput],
        sampling_rate: int | None = None,
        max_batch_seconds: float = 200,
    ) -> dict[str, list[int]] | list[dict[str, list[int]]]:
        """
        Speech units of one audio input, or of a list of them (encoded in padded batches).

        Args:
            audio: a path, a 1-D or (channels, samples) numpy array / torch tensor (int PCM is scaled to [-1, 1]), a
                `datasets` Audio dict `{"array", "sampling_rate"}`, or a list of these. Audio is resampled to 16 kHz
                as the official code does, and channels are averaged.
            sampling_rate: rate of array / tensor inputs (assumed 16 kHz, with a warning, when omitted); files and
                Audio dicts carry their own.
            max_batch_seconds: padded audio per forward pass (bounds memory); a longer chunk goes alone.

        Returns:
            `{"hubert": [unit, ...]}` (25 units per second), EXPRESSIVE adding `"pitch"` (12.5 per second) and `"style"`
            (one per started second), all NOT deduplicated; or one such dict per input. Each stream is the
            concatenation of its units over the 100 s chunks, as the official code builds it.
        """
        batched = is_audio_batch(audio)
        waveforms = prepare_audio(list(audio) if batched else [audio], sampling_rate, self.config.sampling_rate)
        minimum = self.config.min_chunk_samples
        for index, waveform in enumerate(waveforms):
            if len(waveform) < minimum:
                which = f"audio input {index}" if batched else "audio"
                raise ValueError(
                    f"{which} has {len(waveform)} samples at {self.config.sampling_rate} Hz; the speech tokenizer "
                    f"needs at least {minimum} ({1000 * minimum / self.config.sampling_rate:g} ms)"
                )

        chunks, owners = [], []
        for index, waveform in enumerate(waveforms):
            for start in range(0, len(waveform), self.config.max_chunk_samples):
                chunk = waveform[start : start + self.config.max_chunk_samples]
                if len(chunk) >= minimum:
                    chunks.append(chunk)
                    owners.append(index)

        results = [{} for _ in waveforms]
        for unit_type, chunk_units in self._encode_chunks(chunks, max_batch_seconds).items():
            for result in results:
                result[unit_type] = []
            for owner, units in zip(owners, chunk_units):
                results[owner][unit_type].extend(units)
        return results if batched else results[0]

    def encode_string(
        self, audio: AudioInput | Sequence[AudioInput], sampling_rate: int | None = None
    ) -> str | list[str]:
        """
        The official unit string of `audio`, or one per input of a list: the streams merged by time (official rates
        24.99, 12.5 and 1 per second; at equal time style, then pitch, then hubert), hubert and pitch deduplicated,
        e.g. `"[St71][Pi39][Hu12][Hu7]..."` (BASE: `"[Hu12][Hu7]..."`).
        """
        units = self.encode_units(audio, sampling_rate)
        if isinstance(units, list):
            return [units_to_string(item) for item in units]
        return units_to_string(units)

    def _encode_chunks(self, chunks: list[torch.Tensor], max_batch_seconds: float) -> dict[str, list[list[int]]]:
        """Units of each 16 kHz float32 chunk, per unit type (`config.unit_types`), from padded batches."""
        streams = {"hubert": ("hubert_units", "frame_lengths")}
        if self.pitch_encoder is not None:
            streams["pitch"] = ("pitch_units", "pitch_lengths")
        if self.style_encoder is not None:
            streams["style"] = ("style_units", "style_lengths")
        units: dict[str, list[list[int]]] = {name: [[] for _ in chunks] for name in streams}
        for batch in self._batches([len(chunk) for chunk in chunks], max_batch_seconds):
            longest = len(chunks[batch[0]])
            # float32 whatever the model dtype: the pitch and style encoders take the raw waveform.
            input_values = torch.zeros(len(batch), longest, dtype=torch.float32, device=self.device)
            attention_mask = torch.zeros(len(batch), longest, dtype=torch.long, device=self.device)
            for row, index in enumerate(batch):
                input_values[row, : len(chunks[index])] = chunks[index]
                attention_mask[row, : len(chunks[index])] = 1
            output = self(input_values, attention_mask)
            for name, (values_key, lengths_key) in streams.items():
                values, lengths = getattr(output, values_key).tolist(), getattr(output, lengths_key).tolist()
                for row, index in enumerate(batch):
                    units[name][index] = values[row][: lengths[row]]
        return units

    def _batches(self, lengths: list[int], max_batch_seconds: float) -> list[list[int]]:
        """Groups chunk indices, longest first, into batches of at most `max_batch_seconds` of padded audio."""
        budget = max_batch_seconds * self.config.sampling_rate
        # A CPU spends as long on padding as on audio, so it only batches chunks of nearly the same length; an
        # accelerator runs the padded rows in parallel, so it fills the budget.
        shortest_ratio = 0.9 if self.device.type == "cpu" else 0.0
        batches: list[list[int]] = []
        for index in sorted(range(len(lengths)), key=lambda index: -lengths[index]):
            if batches:
                longest = lengths[batches[-1][0]]
                if (len(batches[-1]) + 1) * longest <= budget and lengths[index] >= shortest_ratio * longest:
                    batches[-1].append(index)
                    continue
            batches.append([index])
        return batches

    def _check_inputs(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.LongTensor]:
        input_values, lengths = check_waveform_batch(
            input_values,
            type(self).__name__,
            attention_mask,
            self.device,
            "; use encode_units for paths, arrays or int PCM",
        )
        positions = torch.arange(input_values.shape[1], device=self.device)
        too_short = (lengths < self.config.receptive_field).nonzero().flatten().tolist()
        if too_short:
            raise ValueError(
                f"rows {too_short} have fewer than {self.config.receptive_field} samples, the HuBERT receptive field"
            )
        if not bool((torch.isfinite(input_values) | (positions >= lengths[:, None])).all()):
            raise ValueError("input_values contain NaN or infinite samples; clean the audio first")
        return input_values, lengths


__all__ = ["SpiritLMSpeechTokenizer", "SpiritLMSpeechTokenizerOutput"]
