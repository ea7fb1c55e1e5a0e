"""Configurations of the SPIRIT LM components: language model, speech tokenizer (with its pitch and style
sub-configs) and vocoder."""

import math
import warnings
from contextlib import contextmanager

from huggingface_hub.dataclasses import strict
from huggingface_hub.errors import StrictDataclassError
from transformers import HubertConfig, LlamaConfig, PreTrainedConfig, Wav2Vec2Config
from transformers.configuration_utils import SubConfigSpec


VARIANTS = ("base", "expressive")
# Sub-folders of a converted repo that hold the speech tokenizer and the vocoder (the language model is at its root).
SPEECH_TOKENIZER_SUBFOLDER = "speech_tokenizer"
VOCODER_SUBFOLDER = "vocoder"


@contextmanager
def _checked_config_dict(cls, config_dict: dict, compatible: tuple[str, ...] = ()):
    """Around `from_dict`: refuses another model's config (transformers only warns, then builds a randomly initialised
    model from the defaults) and reports a failed field check as a `ValueError`, like other bad input."""
    found = config_dict.get("model_type")
    if found is not None and found not in (cls.model_type, *compatible):
        raise ValueError(
            f"this config has model_type {found!r}, not {cls.model_type!r}: it belongs to another model. A converted "
            f"SPIRIT LM repo keeps the language model at its root, the speech tokenizer in {SPEECH_TOKENIZER_SUBFOLDER}/ "
            f"and the vocoder in {VOCODER_SUBFOLDER}/ (pass subfolder=...)"
        )
    try:
        yield
    except StrictDataclassError as error:
        raise ValueError(f"invalid {cls.__name__}: {error.__cause__ or error}") from error


@strict
class SpiritLMConfig(LlamaConfig):
    r"""
    Configuration of [`SpiritLMForCausalLM`]: a Llama-2 decoder whose vocabulary is the text vocabulary followed by
    the modality markers and the speech units.

    The token id layout is derived from `text_vocab_size` (V) and the unit counts, never stored twice:
    `[Text]` = V, `[Speech]` = V + 1, `[HuN]` = V + 2 + N, then `[PiN]` and `[StN]` (expressive only) follow.
    With V = 32000 this is the official layout: 32000, 32001, 32002 + N, 32503 + N, 32567 + N.

    variant (`str`, defaults to `"base"`):
        `"base"` (HuBERT units only) or `"expressive"` (HuBERT, pitch and style units).
    text_vocab_size (`int`, defaults to 32000):
        Size of the SentencePiece text vocabulary.
    num_hubert_units (`int`, defaults to 501):
        Number of HuBERT unit tokens `[Hu0]`..`[Hu{n-1}]`.
    num_pitch_units (`int`, defaults to 64):
        Number of pitch unit tokens `[Pi0]`..`[Pi{n-1}]`.
    num_style_units (`int`, defaults to 100):
        Number of style unit tokens `[St0]`..`[St{n-1}]`.

    ```python
    >>> from transformers_spiritlm import SpiritLMConfig
    >>> config = SpiritLMConfig(variant="expressive")
    >>> config.text_token_id, config.speech_token_id, config.hubert_token_offset, config.pitch_token_offset
    (32000, 32001, 32002, 32503)
    ```"""

    model_type = "spiritlm"

    vocab_size: int = 32768
    variant: str = "base"
    text_vocab_size: int = 32000
    num_hubert_units: int = 501
    num_pitch_units: int = 64
    num_style_units: int = 100

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        with _checked_config_dict(cls, config_dict, compatible=("llama",)):
            return super().from_dict(config_dict, **kwargs)

    @property
    def text_token_id(self) -> int:
        """Id of the `[Text]` marker."""
        return self.text_vocab_size

    @property
    def speech_token_id(self) -> int:
        """Id of the `[Speech]` marker."""
        return self.text_vocab_size + 1

    @property
    def hubert_token_offset(self) -> int:
        """Id of `[Hu0]`."""
        return self.text_vocab_size + 2

    @property
    def pitch_token_offset(self) -> int:
        """Id of `[Pi0]`."""
        return self.hubert_token_offset + self.num_hubert_units

    @property
    def style_token_offset(self) -> int:
        """Id of `[St0]`."""
        return self.pitch_token_offset + self.num_pitch_units

    @property
    def num_spiritlm_tokens(self) -> int:
        """Number of token ids the layout uses (text vocabulary, markers and units, pitch and style included)."""
        return self.style_token_offset + self.num_style_units

    @property
    def unit_types(self) -> tuple[str, ...]:
        """Unit streams of this variant: `("hubert",)` or `("hubert", "pitch", "style")`."""
        return ("hubert", "pitch", "style") if self.variant == "expressive" else ("hubert",)

    def __post_init__(self, **kwargs):
        # Checked here rather than in validate_architecture so that users get a plain ValueError.
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; use one of {', '.join(map(repr, VARIANTS))}")
        for name, least in (("num_hubert_units", 1), ("num_pitch_units", 0), ("num_style_units", 0)):
            if getattr(self, name) < least:
                raise ValueError(f"{name}={getattr(self, name)} must be at least {least}")
        if self.vocab_size < self.num_spiritlm_tokens:
            raise ValueError(
                f"vocab_size={self.vocab_size} is smaller than the SPIRIT LM token layout, which needs "
                f"{self.num_spiritlm_tokens} ids (text_vocab_size={self.text_vocab_size} + 2 markers + "
                f"{self.num_hubert_units} hubert + {self.num_pitch_units} pitch + {self.num_style_units} style units)"
            )
        super().__post_init__(**kwargs)


@strict
class SpiritLMVocoderConfig(PreTrainedConfig):
    r"""
    Configuration of [`SpiritLMVocoder`]: a unit HiFi-GAN that turns HuBERT units (+ pitch and style units for
    EXPRESSIVE) into a 16 kHz waveform, conditioned on a speaker (and, for BASE, a global style), with a duration
    predictor that re-expands deduplicated units.

    The generator input is the concatenation of one `embedding_dim` vector per stream, in the official order:
    hubert, pitch, style units, speaker, global style. Its width (`model_in_dim`) and the stream rate ratios are
    derived, never stored.

    num_hubert_units (`int`, defaults to 501):
        Rows of the HuBERT unit embedding.
    num_pitch_units (`int`, *optional*):
        Rows of the pitch unit embedding (64 for EXPRESSIVE); `None` when the vocoder takes no pitch units.
    num_style_units (`int`, *optional*):
        Rows of the style unit embedding (100 for EXPRESSIVE); `None` when the vocoder takes no style units.
    num_speakers (`int`, *optional*):
        Rows of the speaker embedding; `None` for a single-speaker vocoder.
    num_styles (`int`, *optional*):
        Rows of BASE's global style embedding (one style for the whole utterance); `None` when absent.
    embedding_dim (`int`, defaults to 128):
        Width of every embedding.
    hubert_hop_size, pitch_hop_size, style_hop_size (`int`, defaults to 640, 1280, 16000):
        Audio samples per hubert, pitch and style unit (25, 12.5 and 1 units per second at 16 kHz). Pitch and style
        units are up-sampled to the hubert rate by the rounded ratio of these.
    upsample_initial_channel, upsample_rates, upsample_kernel_sizes, resblock_kernel_sizes, resblock_dilation_sizes:
        HiFi-GAN generator shape, as in [`~transformers.SpeechT5HifiGanConfig`]. Each hubert frame becomes
        `prod(upsample_rates)` samples.
    leaky_relu_slope (`float`, defaults to 0.1):
        Negative slope of the generator's leaky ReLUs (the last one, before `conv_post`, uses 0.01 as official).
    duration_predictor_hidden_size (`int`, *optional*, defaults to 128):
        Width of the duration predictor; `None` for a vocoder without one.
    duration_predictor_kernel_size (`int`, defaults to 3):
        Kernel size of the duration predictor's convolutions (the official second convolution pads by 1, so 3).
    duration_predictor_dropout (`float`, defaults to 0.5):
        Dropout of the duration predictor (training only).
    speakers (`list[str]`, *optional*):
        Speaker names by id (official `speakers.txt`), so a speaker can be passed by name.
    styles (`list[str]`, *optional*):
        Global style names by id (official `styles.txt`).
    default_style_id (`int`, *optional*):
        Global style used when none is given (official BASE default: 8, `"conv-default"`).
    sampling_rate (`int`, defaults to 16000):
        Sampling rate of the generated waveform.
    initializer_range (`float`, defaults to 0.01):
        Standard deviation of the random initialisation.

    ```python
    >>> from transformers_spiritlm import SpiritLMVocoderConfig
    >>> config = SpiritLMVocoderConfig(num_pitch_units=64, num_style_units=100, num_speakers=4)
    >>> config.model_in_dim, config.hubert_to_pitch, config.hubert_to_style, config.hop_length, config.unit_types
    (512, 2, 25, 640, ('hubert', 'pitch', 'style'))
    ```"""

    model_type = "spiritlm_vocoder"

    num_hubert_units: int = 501
    num_pitch_units: int | None = None
    num_style_units: int | None = None
    num_speakers: int | None = None
    num_styles: int | None = None
    embedding_dim: int = 128
    hubert_hop_size: int = 640
    pitch_hop_size: int = 1280
    style_hop_size: int = 16000
    upsample_initial_channel: int = 512
    upsample_rates: list[int] | tuple[int, ...] = (5, 4, 4, 4, 2)
    upsample_kernel_sizes: list[int] | tuple[int, ...] = (11, 8, 8, 8, 4)
    resblock_kernel_sizes: list[int] | tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: list | tuple = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    leaky_relu_slope: float = 0.1
    duration_predictor_hidden_size: int | None = 128
    duration_predictor_kernel_size: int = 3
    duration_predictor_dropout: float = 0.5
    speakers: list[str] | None = None
    styles: list[str] | None = None
    default_style_id: int | None = None
    sampling_rate: int = 16000
    initializer_range: float = 0.01

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        with _checked_config_dict(cls, config_dict):
            return super().from_dict(config_dict, **kwargs)

    @property
    def model_in_dim(self) -> int:
        """Width of the generator input: one `embedding_dim` block per conditioning stream."""
        optional = (self.num_pitch_units, self.num_style_units, self.num_speakers, self.num_styles)
        return self.embedding_dim * (1 + sum(count is not None for count in optional))

    @property
    def hubert_to_pitch(self) -> int:
        """Hubert units per pitch unit (official: `round(f0_hop_size / code_hop_size)`)."""
        return round(self.pitch_hop_size / self.hubert_hop_size)

    @property
    def hubert_to_style(self) -> int:
        """Hubert units per style unit."""
        return round(self.style_hop_size / self.hubert_hop_size)

    @property
    def hop_length(self) -> int:
        """Waveform samples generated per (expanded) hubert unit."""
        return math.prod(self.upsample_rates)

    @property
    def unit_types(self) -> tuple[str, ...]:
        """Unit streams the vocoder takes: `("hubert",)` (BASE) or `("hubert", "pitch", "style")` (EXPRESSIVE)."""
        optional = (("pitch", self.num_pitch_units), ("style", self.num_style_units))
        return ("hubert",) + tuple(name for name, count in optional if count is not None)

    def validate_architecture(self):
        """Checks the generator shape, the duration predictor and the speaker / style name lists."""
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ValueError(
                f"upsample_rates {list(self.upsample_rates)} and upsample_kernel_sizes "
                f"{list(self.upsample_kernel_sizes)} must have the same length"
            )
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ValueError(
                f"resblock_kernel_sizes {list(self.resblock_kernel_sizes)} and resblock_dilation_sizes must have the "
                "same length"
            )
        for rate, kernel in zip(self.upsample_rates, self.upsample_kernel_sizes):
            if (kernel - rate) % 2:
                raise ValueError(
                    f"upsample kernel {kernel} with rate {rate}: kernel - rate must be even so that each layer "
                    "multiplies the length exactly by its rate"
                )
        if self.upsample_initial_channel % 2 ** len(self.upsample_rates):
            raise ValueError(
                f"upsample_initial_channel={self.upsample_initial_channel} must be divisible by "
                f"2 ** {len(self.upsample_rates)} (each upsampling layer halves the channels)"
            )
        if self.duration_predictor_hidden_size is not None and self.duration_predictor_kernel_size != 3:
            raise ValueError(
                f"duration_predictor_kernel_size={self.duration_predictor_kernel_size}: only 3 is supported (the "
                "official second convolution pads by 1)"
            )
        for names, count, what in (
            (self.speakers, self.num_speakers, "speakers"),
            (self.styles, self.num_styles, "styles"),
        ):
            if names is not None and (count is None or len(names) > count):
                raise ValueError(f"{len(names)} {what} names given but the vocoder has {count} {what}")
        if self.default_style_id is not None and not 0 <= self.default_style_id < (self.num_styles or 0):
            raise ValueError(
                f"default_style_id={self.default_style_id} is out of range for a vocoder with num_styles={self.num_styles}"
            )


# mHuBERT-base 25 Hz, as the official `hubert_25hz/mhubert_base_25hz.pt` is built, truncated to the 11 layers whose
# output the official tokenizer quantizes. Dropouts are zero: the tokenizer is inference-only.
MHUBERT_BASE_25HZ = {
    "hidden_size": 768,
    "num_hidden_layers": 11,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "conv_dim": [512] * 8,
    "conv_stride": [5, 2, 2, 2, 2, 2, 2, 2],
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2, 2],
    "conv_bias": False,
    "feat_extract_norm": "group",
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "hidden_dropout": 0.0,
    "activation_dropout": 0.0,
    "attention_dropout": 0.0,
    "feat_proj_dropout": 0.0,
    "final_dropout": 0.0,
    "layerdrop": 0.0,
    "apply_spec_augment": False,
    "mask_time_prob": 0.0,
}


F0_EXTRACTORS = ("fcpe", "yaapt")
QUANTIZER_TYPES = ("linear", "kmeans")
# Keys transformers writes into every config dict besides the config's fields (`model_type`, `_name_or_path`, ...).
_TRANSFORMERS_CONFIG_KEYS = frozenset(PreTrainedConfig().to_dict())


class _SpiritLMSubConfig(PreTrainedConfig):
    """
    Base of the speech tokenizer's sub-configs. A key that is no field is an error (a misspelt key would otherwise be
    kept and ignored), and `config["key"]` still reads a field, as when the sub-configs were plain dicts (deprecated).
    """

    def __post_init__(self, **kwargs):
        unknown = sorted(set(kwargs) - _TRANSFORMERS_CONFIG_KEYS)
        if unknown:
            raise ValueError(f"unknown {type(self).__name__} keys {unknown}")
        model_type = kwargs.pop("model_type", self.model_type)
        if model_type != self.model_type:
            raise ValueError(f"{type(self).__name__} has model_type {self.model_type!r}, got {model_type!r}")
        super().__post_init__(**kwargs)

    def __getitem__(self, key: str):
        warnings.warn(
            f"{type(self).__name__} is a config object, no longer a dict: read config.{key} instead of "
            f"config[{key!r}]",
            FutureWarning,
            stacklevel=2,
        )
        return getattr(self, key)


@strict
class FCPEConfig(_SpiritLMSubConfig):
    r"""
    Configuration of [`SpiritLMFCPEF0Extractor`]: the FCPE network (defaults: the bundled `fcpe_c_v001` model) and the
    inference settings of the official SPIRIT LM call. The `fcpe` sub-config of [`PitchUnitEncoderConfig`].

    sampling_rate (`int`, defaults to 16000): sampling rate of the input audio (no resampling is done here).
    n_fft, win_length, mel_hop_length (`int`, default 1024, 1024, 160): STFT of the mel front end.
    num_mel_bins (`int`, defaults to 128), mel_fmin, mel_fmax (`float`, 0 and 8000): Slaney mel filter bank.
    hidden_size (`int`, defaults to 512), num_layers (`int`, defaults to 6): width and depth of the encoder.
    conv_kernel_size (`int`, defaults to 31), conv_expansion_factor (`int`, defaults to 2): depthwise
        convolution of each encoder layer and its channel expansion.
    num_norm_groups (`int`, defaults to 4): groups of the GroupNorm in the input stack.
    num_cent_bins (`int`, defaults to 360), cent_f0_min, cent_f0_max (`float`, 32.7 and 1975.5 Hz): the pitch
        classes, evenly spaced in cents between these two frequencies.
    hop_length (`int`, defaults to 80): samples per output F0 value.
    voicing_threshold (`float`, defaults to 0.05): frames whose best class score is not above it have no pitch.
    f0_min (`float`, defaults to 50.0): frames below this pitch (Hz) are unvoiced.
    f0_max (`float`, defaults to 1100.0): pitch values above it are clamped to it.
    interpolate_unvoiced (`bool`, defaults to `True`): replace the pitch of unvoiced frames by linear
        interpolation between the voiced frames around them (the first/last voiced value at the ends).
    """

    model_type = "spiritlm_fcpe"
    base_config_key = "fcpe"

    sampling_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 1024
    mel_hop_length: int = 160
    num_mel_bins: int = 128
    mel_fmin: float | int = 0.0
    mel_fmax: float | int = 8000.0
    hidden_size: int = 512
    num_layers: int = 6
    conv_kernel_size: int = 31
    conv_expansion_factor: int = 2
    num_norm_groups: int = 4
    num_cent_bins: int = 360
    cent_f0_min: float | int = 32.7
    cent_f0_max: float | int = 1975.5
    hop_length: int = 80
    voicing_threshold: float | int = 0.05
    f0_min: float | int = 50.0
    f0_max: float | int = 1100.0
    interpolate_unvoiced: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        for name, kind in FCPEConfig.__annotations__.items():
            value = getattr(self, name)
            if kind == float | int:
                setattr(self, name, float(value))
            elif kind is int and (isinstance(value, bool) or value <= 0):
                raise ValueError(f"FCPEConfig.{name} must be a positive int, got {value!r}")
        if self.hidden_size % self.num_norm_groups:
            raise ValueError(
                f"FCPEConfig.hidden_size ({self.hidden_size}) must be divisible by num_norm_groups "
                f"({self.num_norm_groups})"
            )
        if self.win_length > self.n_fft:
            raise ValueError(f"FCPEConfig.win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})")


@strict
class PitchUnitEncoderConfig(_SpiritLMSubConfig):
    r"""
    Configuration of [`SpiritLMPitchUnitEncoder`], the `pitch_config` of [`SpiritLMSpeechTokenizerConfig`]. The
    VQ-VAE fields are level 0 of the official `vqvae_f0_quantizer/config.yaml` (`encoder_params`, `vq_params`), under
    the same names.

    sampling_rate (`int`, defaults to 16000), hop_length (`int`, defaults to 80): input rate and samples per F0 value.
    f0_extractor (`str`, defaults to `"fcpe"`): `"fcpe"` (built in) or `"yaapt"` (needs the `yaapt` extra).
    fcpe ([`FCPEConfig`] or `dict`, *optional*): the FCPE extractor (its `sampling_rate`/`hop_length` must match);
        defaults to the bundled `fcpe_c_v001` model.
    normalize_f0 (`bool`, defaults to `True`): subtract each utterance's mean voiced F0 (official `features`
        `norm_*` or `speaker_norm: true`).
    input_emb_width (`int`, defaults to 2): VQ-VAE input channels (F0 and voicing).
    width (`int`, defaults to 128), output_emb_width (`int`, defaults to 128): hidden and output channels.
    down_t (`int` or `list[int]`, defaults to 4), stride_t (`int` or `list[int]`, defaults to 2): number of strided
        convolutions per stride, as in the official `downs_t[0]` / `strides_t[0]`.
    depth (`int`, defaults to 4), m_conv (`float`, defaults to 1.0), dilation_growth_rate (`int`, defaults to 3),
    dilation_cycle (`int`, *optional*), res_scale (`bool`, defaults to `False`): residual stacks after each
        strided convolution.
    l_bins (`int`, defaults to 64), emb_width (`int`, defaults to 128): codebook size and code width.
    """

    model_type = "spiritlm_pitch_encoder"
    base_config_key = "pitch_config"
    sub_configs_defaults = {"fcpe": FCPEConfig}

    sampling_rate: int = 16000
    hop_length: int = 80
    f0_extractor: str = "fcpe"
    fcpe: dict | FCPEConfig | None = None
    normalize_f0: bool = True
    input_emb_width: int = 2
    width: int = 128
    output_emb_width: int = 128
    down_t: int | list[int] = 4
    stride_t: int | list[int] = 2
    depth: int = 4
    m_conv: float | int = 1.0
    dilation_growth_rate: int = 3
    dilation_cycle: int | None = None
    res_scale: bool = False
    l_bins: int = 64
    emb_width: int = 128

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.f0_extractor not in F0_EXTRACTORS:
            raise ValueError(f"unknown f0_extractor {self.f0_extractor!r}; use one of {', '.join(F0_EXTRACTORS)}")
        for name in ("sampling_rate", "hop_length"):
            if getattr(self.fcpe, name) != getattr(self, name):
                raise ValueError(
                    f"PitchUnitEncoderConfig.{name} ({getattr(self, name)}) differs from fcpe.{name} "
                    f"({getattr(self.fcpe, name)}); they must match"
                )
        if isinstance(self.down_t, list) != isinstance(self.stride_t, list) or (
            isinstance(self.down_t, list) and len(self.down_t) != len(self.stride_t)
        ):
            raise ValueError(
                f"down_t ({self.down_t}) and stride_t ({self.stride_t}) must both be ints or lists of equal length"
            )
        if self.input_emb_width != 2:
            raise ValueError(f"input_emb_width must be 2 (F0 and voicing), got {self.input_emb_width}")
        if self.output_emb_width not in (self.emb_width, 2 * self.emb_width):
            raise ValueError(
                f"output_emb_width ({self.output_emb_width}) must be emb_width ({self.emb_width}) or twice it"
            )
        self.m_conv = float(self.m_conv)

    @property
    def downsampling(self) -> int:
        """F0 frames per pitch unit (16 for the official 200 Hz → 12.5 Hz)."""
        return math.prod(stride**down for stride, down in self.strided_convolutions_spec())

    def strided_convolutions_spec(self) -> list[tuple[int, int]]:
        """`(stride, count)` pairs of the encoder's strided convolutions."""
        if isinstance(self.stride_t, list):
            return list(zip(self.stride_t, self.down_t))
        return [(self.stride_t, self.down_t)]


@strict
class SpiritLMStyleEncoderConfig(_SpiritLMSubConfig):
    r"""
    Configuration of [`SpiritLMStyleEncoder`], the `style_config` of [`SpiritLMSpeechTokenizerConfig`]: wav2vec 2.0,
    a projector, mean pooling over blocks of frames and a classifier. These are the shapes of a trained classifier,
    so the encoder needs every field; they are `None` only in the blank config transformers builds to compare with.

    wav2vec2 (`Wav2Vec2Config` or `dict`): the backbone (sizes, conv stack, norms). SpecAugment masking is switched
        off: the encoder is inference-only.
    projector_size (`int`): width of the projector (the official `classifier_proj_size`).
    num_styles (`int`): number of style classes (100).
    pool_size (`int`): wav2vec 2.0 frames per unit (50, i.e. one unit per second at 50 frames/s).
    """

    model_type = "spiritlm_style_encoder"
    base_config_key = "style_config"
    sub_configs_defaults = {"wav2vec2": SubConfigSpec(Wav2Vec2Config, optional=True)}

    wav2vec2: dict | Wav2Vec2Config | None = None
    projector_size: int | None = None
    num_styles: int | None = None
    pool_size: int | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.wav2vec2 is not None:
            if self.wav2vec2.add_adapter or self.wav2vec2.adapter_attn_dim is not None:
                raise ValueError("style encoder config: wav2vec2 adapters are not supported; set add_adapter=False")
            self.wav2vec2.mask_time_prob = self.wav2vec2.mask_feature_prob = 0.0

    def check_complete(self) -> None:
        """Raises a `ValueError` naming the fields that are not set."""
        fields = list(SpiritLMStyleEncoderConfig.__annotations__)
        missing = [name for name in fields if getattr(self, name) is None]
        if missing:
            raise ValueError(f"style encoder config lacks {missing}; it needs the keys {fields}")


@strict
class SpiritLMSpeechTokenizerConfig(PreTrainedConfig):
    r"""
    Configuration of [`SpiritLMSpeechTokenizer`]: 16 kHz audio → 25 Hz HuBERT units (BASE); EXPRESSIVE adds the pitch
    and style unit encoders, configured by `pitch_config` / `style_config`.

    The HuBERT units are read from the output of the HuBERT encoder's last layer (the official layer 11; layers above
    the quantized one are dropped at conversion or unit training). The official quantizer (`quantizer_type="linear"`)
    takes the argmax of an MLP over it, blanks filled in as the official code does; a k-means quantizer
    (`quantizer_type="kmeans"`, made by `spiritlm train-units`) takes the nearest of `num_hubert_units` centroids.

    hubert_config (`HubertConfig` or `dict`, *optional*):
        The HuBERT encoder (a stock `HubertModel`). Defaults to the mHuBERT-base 25 Hz shapes (640-sample hop).
    quantizer_type (`str`, defaults to `"linear"`):
        `"linear"` (the official MLP, whose last output is a CTC blank) or `"kmeans"` (nearest centroid, no blank).
    num_hubert_units (`int`, defaults to 501):
        Outputs of the quantizer, all valid `[HuN]` tokens. Linear: 500 units then the CTC blank (id 500); blanks take
        the value of the nearest unit to their left, so id 500 only survives in a chunk made of blanks. K-means: the
        number of centroids.
    quantizer_hidden_sizes (`list[int]`, defaults to `[702, 635]`):
        Widths of the linear quantizer's two hidden layers (leaky ReLU after each); unused by k-means.
    sampling_rate (`int`, defaults to 16000):
        Rate of the audio the encoders take; other rates are resampled to it.
    max_chunk_samples (`int`, defaults to 1600000):
        Audio is encoded in consecutive chunks of this many samples (100 s), each on its own, as the official code.
    min_chunk_samples (`int`, defaults to 1280):
        Shortest chunk encoded (80 ms, the official minimum): a shorter final chunk is skipped, as the official code
        does, and shorter audio is an error.
    pitch_config ([`PitchUnitEncoderConfig`] or `dict`, *optional*):
        EXPRESSIVE pitch unit encoder (FCPE F0 + VQ-VAE, 12.5 Hz); `None` for BASE.
    style_config ([`SpiritLMStyleEncoderConfig`] or `dict`, *optional*):
        EXPRESSIVE style unit encoder (wav2vec 2.0 classifier, 1 Hz); `None` for BASE.

    ```python
    >>> from transformers_spiritlm import SpiritLMSpeechTokenizerConfig
    >>> config = SpiritLMSpeechTokenizerConfig()
    >>> config.hop_length, config.frame_rate, config.blank_unit, config.unit_types
    (640, 25.0, 500, ('hubert',))
    ```"""

    model_type = "spiritlm_speech_tokenizer"
    sub_configs_defaults = {
        "hubert_config": SubConfigSpec(HubertConfig, init_kwargs=MHUBERT_BASE_25HZ),
        "pitch_config": SubConfigSpec(PitchUnitEncoderConfig, optional=True),
        "style_config": SubConfigSpec(SpiritLMStyleEncoderConfig, optional=True),
    }

    hubert_config: HubertConfig | dict | None = None
    quantizer_type: str = "linear"
    num_hubert_units: int = 501
    quantizer_hidden_sizes: list[int] | tuple[int, ...] = (702, 635)
    sampling_rate: int = 16000
    max_chunk_samples: int = 1_600_000
    min_chunk_samples: int = 1280
    pitch_config: dict | PitchUnitEncoderConfig | None = None
    style_config: dict | SpiritLMStyleEncoderConfig | None = None

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        with _checked_config_dict(cls, config_dict):
            return super().from_dict(config_dict, **kwargs)

    @property
    def hop_length(self) -> int:
        """Audio samples per HuBERT frame (640 at 25 Hz)."""
        return math.prod(self.hubert_config.conv_stride)

    @property
    def frame_rate(self) -> float:
        """HuBERT units per second."""
        return self.sampling_rate / self.hop_length

    @property
    def blank_unit(self) -> int | None:
        """Id of the linear quantizer's CTC blank, the last of its outputs; `None` for k-means, which has none."""
        return self.num_hubert_units - 1 if self.quantizer_type == "linear" else None

    @property
    def receptive_field(self) -> int:
        """Samples needed for one HuBERT frame (the conv stack's receptive field)."""
        field = 1
        for kernel, stride in reversed(list(zip(self.hubert_config.conv_kernel, self.hubert_config.conv_stride))):
            field = (field - 1) * stride + kernel
        return field

    @property
    def unit_types(self) -> tuple[str, ...]:
        """Unit streams produced: `("hubert",)`, plus `"pitch"` and `"style"` when configured."""
        optional = (("pitch", self.pitch_config), ("style", self.style_config))
        return ("hubert",) + tuple(name for name, config in optional if config is not None)

    def validate_architecture(self):
        """Checks the HuBERT layout the tokenizer supports, the quantizer and the chunk sizes."""
        hubert = self.hubert_config
        if hubert.feat_extract_norm != "group" or hubert.do_stable_layer_norm or hubert.conv_pos_batch_norm:
            raise ValueError(
                "hubert_config must be a HuBERT-base layout (feat_extract_norm='group', do_stable_layer_norm=False, "
                f"conv_pos_batch_norm=False), got {hubert.feat_extract_norm!r}, {hubert.do_stable_layer_norm}, "
                f"{hubert.conv_pos_batch_norm}"
            )
        if self.quantizer_type not in QUANTIZER_TYPES:
            raise ValueError(
                f"unknown quantizer_type {self.quantizer_type!r}; use one of {', '.join(map(repr, QUANTIZER_TYPES))}"
            )
        if self.num_hubert_units < 2:
            what = "units and a blank" if self.quantizer_type == "linear" else "at least 2 centroids"
            raise ValueError(f"num_hubert_units={self.num_hubert_units}: the quantizer needs {what}")
        if not self.quantizer_hidden_sizes or min(self.quantizer_hidden_sizes) < 1:
            raise ValueError(f"quantizer_hidden_sizes must be positive widths, got {self.quantizer_hidden_sizes}")
        if not self.receptive_field <= self.min_chunk_samples <= self.max_chunk_samples:
            raise ValueError(
                f"need receptive_field ({self.receptive_field}) <= min_chunk_samples ({self.min_chunk_samples}) <= "
                f"max_chunk_samples ({self.max_chunk_samples})"
            )


__all__ = [
    "FCPEConfig",
    "PitchUnitEncoderConfig",
    "SpiritLMConfig",
    "SpiritLMSpeechTokenizerConfig",
    "SpiritLMStyleEncoderConfig",
    "SpiritLMVocoderConfig",
]
