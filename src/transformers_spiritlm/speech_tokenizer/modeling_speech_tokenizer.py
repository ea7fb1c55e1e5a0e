"""`SpiritLMSpeechTokenizer`: audio → SPIRIT LM speech units, as the official `SpiritLMTokenizer.encode_units`."""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import HubertModel, PreTrainedModel
from transformers.utils import ModelOutput

from ..audio import AudioInput, is_audio_batch, prepare_audio
from ..configuration_spiritlm import SpiritLMSpeechTokenizerConfig
from ..units import units_to_string
from .hubert import HubertUnitQuantizer, fill_blank_units, hubert_layer_features


@dataclass
class SpiritLMSpeechTokenizerOutput(ModelOutput):
    r"""
    hubert_units (`torch.LongTensor` of shape `(batch_size, frames)`):
        HuBERT unit of each 25 Hz frame, blanks filled (see [`fill_blank_units`]); -1 past each row's `frame_lengths`.
    hubert_features (`torch.FloatTensor` of shape `(batch_size, frames, hidden_size)`):
        The quantized HuBERT features (official layer 11); padded frames hold garbage.
    frame_lengths (`torch.LongTensor` of shape `(batch_size,)`):
        Valid frames of each row.
    """

    hubert_units: torch.LongTensor | None = None
    hubert_features: torch.FloatTensor | None = None
    frame_lengths: torch.LongTensor | None = None


class SpiritLMSpeechTokenizer(PreTrainedModel):
    """
    SPIRIT LM speech tokenizer: audio → 25 Hz HuBERT units (BASE), the units of the official `SpiritLMTokenizer` on
    the same weights. A stock `HubertModel` (`hubert.*`) computes the layer-11 features, an MLP (`quantizer.*`)
    picks a unit per frame.

    Long audio is encoded like the official code: in consecutive chunks of `config.max_chunk_samples` (100 s), each
    chunk on its own (its own normalisation, attention and blank filling), units concatenated; a final chunk
    shorter than `config.min_chunk_samples` (80 ms) is skipped. Chunks of many clips are encoded in padded batches
    that give the units of encoding each clip alone.

    ```python
    >>> st = SpiritLMSpeechTokenizer.from_pretrained(repo, subfolder="speech_tokenizer")
    >>> st.encode_units("speech.wav")["hubert"][:5]            # list of ints, one per 40 ms, not deduplicated
    >>> st.encode_units([wav_a, wav_b], sampling_rate=44100)  # list of dicts, one batched pass
    >>> st.encode_string("speech.wav")                         # "[Hu71][Hu12]..." (deduplicated), as official
    ```
    """

    config: SpiritLMSpeechTokenizerConfig
    config_class = SpiritLMSpeechTokenizerConfig
    base_model_prefix = "speech_tokenizer"
    main_input_name = "input_values"
    input_modalities = "audio"
    _supports_sdpa = True
    _supports_flash_attn = True

    def __init__(self, config: SpiritLMSpeechTokenizerConfig):
        super().__init__(config)
        if config.pitch_config is not None or config.style_config is not None:
            raise NotImplementedError(
                "this SpiritLMSpeechTokenizer encodes BASE (HuBERT) units only; pitch_config / style_config must be None"
            )
        self.hubert = HubertModel(config.hubert_config)
        self.quantizer = HubertUnitQuantizer(
            config.hubert_config.hidden_size, list(config.quantizer_hidden_sizes), config.num_hubert_units
        )
        self.post_init()

    def forward(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> SpiritLMSpeechTokenizerOutput:
        r"""
        Encodes each row as one chunk (no 100 s splitting; see `encode_units` for that).

        input_values (`torch.FloatTensor` of shape `(batch_size, samples)` or `(samples,)`):
            16 kHz mono waveforms in [-1, 1], right-padded; moved to the model's device and dtype.
        attention_mask (`torch.Tensor` of shape `(batch_size, samples)`, *optional*):
            1 for samples, 0 for padding (as the feature extractor returns it). Each row gets the units it gets alone.
        """
        input_values, lengths = self._check_inputs(input_values, attention_mask)
        features, frame_lengths = hubert_layer_features(self.hubert, input_values, lengths)
        # The official code takes the argmax of the log-probabilities; rounding there can tie near-equal logits.
        units = self.quantizer(features).float().log_softmax(-1).argmax(-1)
        units = fill_blank_units(units, frame_lengths, self.config.blank_unit)
        padding = torch.arange(units.shape[1], device=units.device) >= frame_lengths[:, None]
        return SpiritLMSpeechTokenizerOutput(
            hubert_units=units.masked_fill(padding, -1), hubert_features=features, frame_lengths=frame_lengths
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
            `{"hubert": [unit, ...]}` (25 units per second, NOT deduplicated), or one such dict per input.
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
        """The official unit string of `audio` (e.g. `"[Hu71][Hu12]..."`, deduplicated), or one per input of a list."""
        units = self.encode_units(audio, sampling_rate)
        if isinstance(units, list):
            return [units_to_string(item) for item in units]
        return units_to_string(units)

    def _encode_chunks(self, chunks: list[torch.Tensor], max_batch_seconds: float) -> dict[str, list[list[int]]]:
        """Units of each 16 kHz chunk, per unit type: the place where the EXPRESSIVE pitch and style units join."""
        return {"hubert": self._hubert_units(chunks, max_batch_seconds)}

    def _hubert_units(self, chunks: list[torch.Tensor], max_batch_seconds: float) -> list[list[int]]:
        units: list[list[int]] = [[] for _ in chunks]
        for batch in self._batches([len(chunk) for chunk in chunks], max_batch_seconds):
            longest = len(chunks[batch[0]])
            input_values = torch.zeros(len(batch), longest, dtype=self.dtype, device=self.device)
            attention_mask = torch.zeros(len(batch), longest, dtype=torch.long, device=self.device)
            for row, index in enumerate(batch):
                input_values[row, : len(chunks[index])] = chunks[index]
                attention_mask[row, : len(chunks[index])] = 1
            output = self(input_values, attention_mask)
            for row, index in enumerate(batch):
                units[index] = output.hubert_units[row, : output.frame_lengths[row]].tolist()
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
        if not isinstance(input_values, torch.Tensor) or not input_values.is_floating_point():
            raise TypeError(
                "input_values must be a float tensor of 16 kHz samples in [-1, 1]; use encode_units for paths, "
                "arrays or int PCM"
            )
        if input_values.dim() == 1:
            input_values = input_values[None]
            attention_mask = None if attention_mask is None else attention_mask.reshape(1, -1)
        if input_values.dim() != 2:
            raise ValueError(
                f"input_values must be (batch_size, samples), got shape {tuple(input_values.shape)}; "
                "average channels to mono first"
            )
        input_values = input_values.to(device=self.device, dtype=self.dtype)
        positions = torch.arange(input_values.shape[1], device=self.device)
        if attention_mask is None:
            lengths = torch.full((input_values.shape[0],), input_values.shape[1], device=self.device)
        else:
            if attention_mask.shape != input_values.shape:
                raise ValueError(
                    f"attention_mask has shape {tuple(attention_mask.shape)} but input_values {tuple(input_values.shape)}"
                )
            attention_mask = attention_mask.to(self.device).bool()
            lengths = attention_mask.sum(-1)
            if not torch.equal(attention_mask, positions < lengths[:, None]):
                raise ValueError("attention_mask must be right-padded: ones for the samples, then zeros")
        too_short = (lengths < self.config.receptive_field).nonzero().flatten().tolist()
        if too_short:
            raise ValueError(
                f"rows {too_short} have fewer than {self.config.receptive_field} samples, the HuBERT receptive field"
            )
        if not bool((torch.isfinite(input_values) | (positions >= lengths[:, None])).all()):
            raise ValueError("input_values contain NaN or infinite samples; clean the audio first")
        return input_values, lengths


__all__ = ["SpiritLMSpeechTokenizer", "SpiritLMSpeechTokenizerOutput"]
