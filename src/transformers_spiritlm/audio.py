"""Audio input for the speech tokenizer: reading files and in-memory audio, int → float scaling, resampling to the
model rate and averaging channels to mono, all in torch (no torchaudio).

`resample` is torchaudio's `functional.resample` default algorithm (Hann-windowed sinc, `lowpass_filter_width=6`,
`rolloff=0.99`, kernel computed in the waveform's dtype), which the official SPIRIT LM code applies to float32 audio:
the same input gives bit-identical output, so resampled audio yields the official units. Rate pairs whose filter bank
torchaudio would build too large (coprime rates such as 44101 → 16000 Hz: 706M taps) take a polyphase path with the
same filter taps that keeps memory and work proportional to the output.

`load_audio` accepts audio at `MIN_SAMPLING_RATE` to `MAX_SAMPLING_RATE` Hz.
"""

import io
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import soundfile
import torch
from transformers.utils import logging


logger = logging.get_logger(__name__)

AudioInput = str | os.PathLike | np.ndarray | torch.Tensor | Mapping
"""A path, a 1-D or (channels, samples) array / tensor, or a `datasets` Audio value (a dict with `"array"` and
`"sampling_rate"`, or with `"path"` / `"bytes"`, or a decoder with `get_all_samples()`)."""

# Divisors that map each integer PCM type to [-1, 1), as soundfile / torchaudio do when reading files.
_INT_SCALES = {torch.int8: 2**7, torch.int16: 2**15, torch.int32: 2**31}

# Half the lowest rate speech is recorded at (8 kHz telephony) to the highest that audio interfaces record at (384
# kHz). A rate outside is a corrupt header or a wrong argument: a 64 KB WAV "at 1 Hz" resamples to 9 hours at 16 kHz.
MIN_SAMPLING_RATE = 4000
MAX_SAMPLING_RATE = 384000
# Filter banks up to this many taps are built whole, as torchaudio does (the standard rates need at most 291k: 11025
# → 16000 Hz); larger ones, which only coprime rate pairs need, take the polyphase path.
_MAX_FILTER_BANK_TAPS = 2**20
# Elements of the gathered input per step of the polyphase path.
_POLYPHASE_BLOCK = 2**22


def _filter_width(orig_freq: int, new_freq: int, lowpass_filter_width: int, rolloff: float) -> int:
    """Half-width, in input samples, of the windowed sinc of coprime rates (torchaudio's `width`)."""
    return math.ceil(lowpass_filter_width * orig_freq / (min(orig_freq, new_freq) * rolloff))


def _sinc_taps(
    phases: torch.Tensor, taps: torch.Tensor, orig_freq: int, new_freq: int, lowpass_filter_width: int, rolloff: float
) -> torch.Tensor:
    """
    Filter coefficients of output phases `phases` (integers in `[0, new_freq)`) at input offsets `taps` (integers,
    `-width` for the first tap of torchaudio's filter bank), broadcast together, in the dtype of `phases`.
    """
    dtype = phases.dtype
    base_freq = min(orig_freq, new_freq) * rolloff
    # Each arithmetic step below runs in `dtype`, in torchaudio's order: float32 rounding is part of the result.
    t = (-phases / new_freq + taps / orig_freq) * base_freq
    t = t.clamp(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones((), dtype=dtype, device=phases.device), t.sin() / t)
    return sinc * (window * (base_freq / orig_freq))


def _sinc_resample_kernel(
    orig_freq: int, new_freq: int, lowpass_filter_width: int, rolloff: float, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """torchaudio's polyphase filter bank `(new_freq, 1, 2 * width + orig_freq)` for coprime rates."""
    width = _filter_width(orig_freq, new_freq, lowpass_filter_width, rolloff)
    taps = torch.arange(-width, width + orig_freq, dtype=dtype, device=device)[None, None]
    phases = torch.arange(0, new_freq, dtype=dtype, device=device)[:, None, None]
    return _sinc_taps(phases, taps, orig_freq, new_freq, lowpass_filter_width, rolloff)


def _resample_polyphase(
    rows: torch.Tensor, orig_freq: int, new_freq: int, target: int, lowpass_filter_width: int, rolloff: float
) -> torch.Tensor:
    """
    `rows` `(rows, time)` resampled to `(rows, target)` with torchaudio's filter taps, computing only the taps inside
    each output sample's window (`2 * width + 1`, where the whole filter bank has `2 * width + orig_freq`): memory
    and work grow with `target`, not with `orig_freq * new_freq`. Equal to the filter bank's convolution up to float
    rounding (the sum runs in another order, and taps outside the window, below 1e-14 of the peak, are left out).
    """
    width = _filter_width(orig_freq, new_freq, lowpass_filter_width, rolloff)
    padded = torch.nn.functional.pad(rows, (width, width + orig_freq))
    offsets = torch.arange(2 * width + 1, device=rows.device)
    # Output sample `frame * new_freq + phase` reads inputs `frame * orig_freq + first[phase] + offsets`: the taps
    # of its phase whose time lies within the window.
    phases = torch.arange(min(new_freq, target), device=rows.device)
    first = phases * orig_freq // new_freq
    kernel = _sinc_taps(
        phases[:, None].to(rows.dtype),
        (first[:, None] + offsets - width).to(rows.dtype),
        orig_freq,
        new_freq,
        lowpass_filter_width,
        rolloff,
    )
    output = rows.new_empty(rows.shape[0], target)
    step = max(1, _POLYPHASE_BLOCK // (rows.shape[0] * len(offsets)))
    for start in range(0, target, step):
        samples = torch.arange(start, min(start + step, target), device=rows.device)
        phase = samples % new_freq
        index = (samples // new_freq * orig_freq + first[phase])[:, None] + offsets
        output[:, start : start + step] = (padded[:, index] * kernel[phase]).sum(-1)
    return output


def _resampled_length(length: int, orig_freq: int, new_freq: int) -> int:
    # torchaudio rounds the exact length ratio through a float32 tensor before taking the ceiling; for long inputs
    # that can drop the last sample compared with exact arithmetic, and parity needs the same length.
    return int(torch.ceil(torch.tensor(new_freq * length / orig_freq, dtype=torch.float32)))


def resample(
    waveform: torch.Tensor | Sequence[torch.Tensor],
    orig_freq: int,
    new_freq: int,
    lowpass_filter_width: int = 6,
    rolloff: float = 0.99,
) -> torch.Tensor | list[torch.Tensor]:
    """
    Band-limited resampling of `waveform` from `orig_freq` to `new_freq` Hz (torchaudio's `functional.resample`).

    Args:
        waveform: a floating-point tensor `(..., time)`, or a list of such tensors (any lengths), which share one
            filter bank.
        orig_freq, new_freq: integer sampling rates in Hz.
        lowpass_filter_width, rolloff: filter sharpness and cutoff as a fraction of the lower Nyquist frequency.

    Returns:
        `(..., ceil(time * new_freq / orig_freq))` in the input dtype, or a list of such tensors for a list input.
    """
    if isinstance(waveform, torch.Tensor):
        return resample([waveform], orig_freq, new_freq, lowpass_filter_width, rolloff)[0]
    waveforms = list(waveform)
    if int(orig_freq) != orig_freq or int(new_freq) != new_freq or orig_freq <= 0 or new_freq <= 0:
        raise ValueError(f"sampling rates must be positive integers, got orig_freq={orig_freq}, new_freq={new_freq}")
    for item in waveforms:
        if not item.is_floating_point():
            raise TypeError(f"resample needs a floating-point waveform, got {item.dtype}; convert it with .float()")
    if orig_freq == new_freq or not waveforms:
        return waveforms
    gcd = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // gcd, int(new_freq) // gcd
    width = _filter_width(orig, new, lowpass_filter_width, rolloff)
    kernel = None
    if new * (2 * width + orig) <= _MAX_FILTER_BANK_TAPS:
        reference = waveforms[0]
        kernel = _sinc_resample_kernel(orig, new, lowpass_filter_width, rolloff, reference.dtype, reference.device)

    outputs = []
    for item in waveforms:
        rows = item.reshape(-1, item.shape[-1])
        target = _resampled_length(rows.shape[-1], orig, new)
        if kernel is None:
            resampled = _resample_polyphase(rows, orig, new, target, lowpass_filter_width, rolloff)
        else:
            # One convolution per input, not one over a padded batch: oneDNN picks its algorithm per input shape,
            # and only the shapes torchaudio sees give its exact bits.
            padded = torch.nn.functional.pad(rows, (width, width + orig))
            resampled = torch.nn.functional.conv1d(padded[:, None], kernel, stride=orig)
            resampled = resampled.transpose(1, 2).reshape(rows.shape[0], -1)[:, :target]
        outputs.append(resampled.reshape(item.shape[:-1] + (target,)))
    return outputs


def to_float_waveform(array: np.ndarray | torch.Tensor) -> torch.Tensor:
    """
    Converts PCM samples to a float32 tensor in [-1, 1]: int8 / int16 / int32 are divided by 2**7 / 2**15 / 2**31,
    uint8 is centred on 128, floating-point input is cast to float32.
    """
    if isinstance(array, np.ndarray):
        if array.dtype == np.uint8:
            return (torch.from_numpy(array.astype(np.float32)) - 128.0) / 128.0
        if array.dtype.kind not in "iuf":
            raise TypeError(f"audio must hold integer PCM or float samples, got a numpy array of {array.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    elif isinstance(array, torch.Tensor):
        tensor = array.detach()
        if tensor.dtype == torch.uint8:
            return (tensor.float() - 128.0) / 128.0
    else:
        raise TypeError(f"expected a numpy array or torch tensor, got {type(array).__name__}")

    if tensor.is_floating_point():
        return tensor.to(torch.float32)
    if tensor.dtype in _INT_SCALES:
        return tensor.to(torch.float32) / _INT_SCALES[tensor.dtype]
    raise TypeError(
        f"cannot tell the scale of {tensor.dtype} audio; pass float samples in [-1, 1] or int16 / int32 PCM"
    )


def _holds_text(path: str | os.PathLike) -> bool:
    """Whether the file starts with text: no control bytes other than whitespace, which every audio format has in
    its first 512 bytes, headers or samples."""
    with open(path, "rb") as file:
        head = file.read(512)
    return bool(head) and head.translate(None, delete=bytes(range(9)) + bytes(range(14, 32)) + b"\x7f") == head


def check_audio_path(path: str | os.PathLike) -> None:
    """Raises `IsADirectoryError` / `FileNotFoundError` unless `path` is an existing file, and a `ValueError` for a
    text file named .mp3 (checked before loading anything that will read it)."""
    if os.fspath(path).lower().endswith(".mp3") and os.path.isfile(path) and _holds_text(path):
        # libsndfile gives any .mp3 to its MPEG decoder, which prints notes to stderr and reports a file it cannot
        # decode as one that "does not exist".
        raise ValueError(
            f"could not read audio file {os.fspath(path)!r}: it holds text, not decodable audio; pass a format "
            "libsndfile reads (wav, flac, ogg, mp3) or an array"
        )
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"{os.fspath(path)!r} is a folder, not an audio file; pass one file (`spiritlm tokenize` reads folders)"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"audio file {os.fspath(path)!r} does not exist")


_SOUNDFILE_ERRORS = (soundfile.LibsndfileError, RuntimeError, TypeError)


def _audio_file_name(path: str | os.PathLike | io.BytesIO) -> str:
    """How messages name `path`, checked to be an existing file."""
    if isinstance(path, io.BytesIO):
        return "audio bytes"
    check_audio_path(path)
    return f"audio file {os.fspath(path)!r}"


def _unreadable(name: str, error: Exception) -> ValueError:
    return ValueError(
        f"could not read {name} ({error}); pass a format libsndfile reads (wav, flac, ogg, mp3) or an array"
    )


def read_audio_info(path: str | os.PathLike | io.BytesIO) -> tuple[int, int]:
    """`(frames, sampling_rate)` of an audio file, from its header: nothing is decoded, so a server can refuse long
    audio cheaply. The sampling rate is not checked (see [`check_sampling_rate`])."""
    name = _audio_file_name(path)
    try:
        info = soundfile.info(path)
    except _SOUNDFILE_ERRORS as error:
        raise _unreadable(name, error) from None
    return info.frames, info.samplerate


def read_audio_file(path: str | os.PathLike | io.BytesIO) -> tuple[torch.Tensor, int]:
    """Reads an audio file with soundfile as float32 `(channels, samples)` (what the official `torchaudio.load`
    returns) and its sampling rate, which is checked before the samples are decoded."""
    name = _audio_file_name(path)
    try:
        with soundfile.SoundFile(path) as file:
            sampling_rate = check_sampling_rate(file.samplerate, name)
            data = file.read(dtype="float32", always_2d=True)
    except _SOUNDFILE_ERRORS as error:
        raise _unreadable(name, error) from None
    return torch.from_numpy(data.T.copy()), sampling_rate


def check_waveform_batch(
    input_values: torch.Tensor,
    caller: str,
    attention_mask: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    hint: str = "",
) -> tuple[torch.Tensor, torch.LongTensor]:
    """
    Checks the float waveforms a model's forward takes: `(samples,)` or `(batch_size, samples)`, mono, in [-1, 1],
    with an optional right-padded `attention_mask` of the same shape. Returns them as `(batch_size, samples)` on
    `device` (default: where they are) with the `(batch_size,)` lengths the mask gives. `hint` ends the type errors
    (where else to pass other audio).
    """
    if not isinstance(input_values, torch.Tensor):
        raise TypeError(
            f"{caller} expects a float torch.Tensor of samples in [-1, 1], got {type(input_values).__name__}{hint}"
        )
    if not input_values.is_floating_point():
        raise TypeError(
            f"{caller} expects a float tensor of samples in [-1, 1], got dtype {input_values.dtype}; divide int16 PCM "
            f"by 32768 (`audio / 32768`){hint}"
        )
    if input_values.dim() == 1:
        input_values = input_values[None]
        attention_mask = None if attention_mask is None else attention_mask.reshape(1, -1)
    if input_values.dim() != 2 or input_values.shape[0] == 0:
        raise ValueError(
            f"{caller} expects a (samples,) or (batch_size, samples) mono waveform with batch_size >= 1, got shape "
            f"{tuple(input_values.shape)}; average the channels to mono first"
        )
    input_values = input_values.to(device or input_values.device)
    if attention_mask is None:
        return input_values, torch.full((input_values.shape[0],), input_values.shape[1], device=input_values.device)
    if attention_mask.shape != input_values.shape:
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)} but input_values {tuple(input_values.shape)}"
        )
    attention_mask = attention_mask.to(input_values.device).bool()
    lengths = attention_mask.sum(-1)
    if not torch.equal(
        attention_mask, torch.arange(input_values.shape[1], device=input_values.device) < lengths[:, None]
    ):
        raise ValueError("attention_mask must be right-padded: ones for the samples, then zeros")
    return input_values, lengths


def wav_bytes(audio: np.ndarray, sampling_rate: int) -> bytes:
    """`audio` (float samples, clipped to [-1, 1]) as the bytes of a 16-bit PCM WAV file."""
    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(audio, -1.0, 1.0), sampling_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def write_wav(path: str | os.PathLike, audio: np.ndarray, sampling_rate: int) -> None:
    """
    Writes `audio` (float samples, clipped to [-1, 1]) to `path` as 16-bit PCM: WAV, or the format its suffix names
    if libsndfile writes it. The samples go to a temporary file beside `path`, renamed over it once complete, so
    `path` never holds a partial file. Creates the missing parent folders.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # soundfile creates the file (usual permissions) and reads the format from the kept suffix.
    staging = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        soundfile.write(staging, np.clip(audio, -1.0, 1.0), sampling_rate, subtype="PCM_16")
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def check_sampling_rate(sampling_rate, source: str) -> int:
    """`sampling_rate` as an int; a `TypeError` / `ValueError` naming `source` unless it is a whole number of Hz from
    `MIN_SAMPLING_RATE` to `MAX_SAMPLING_RATE`."""
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, float, np.integer, np.floating)):
        raise TypeError(f"sampling_rate of {source} must be an int (Hz), got {type(sampling_rate).__name__}")
    if sampling_rate <= 0 or int(sampling_rate) != sampling_rate:
        raise ValueError(f"sampling_rate of {source} must be a positive whole number of Hz, got {sampling_rate}")
    if not MIN_SAMPLING_RATE <= sampling_rate <= MAX_SAMPLING_RATE:
        raise ValueError(
            f"{source} has a sampling rate of {int(sampling_rate)} Hz, outside the {MIN_SAMPLING_RATE} to "
            f"{MAX_SAMPLING_RATE} Hz of recorded audio; give its true rate (is the header corrupt?) or resample it "
            "into that range first"
        )
    return int(sampling_rate)


def load_audio(audio: AudioInput, sampling_rate: int | None = None, default_sampling_rate: int = 16000):
    """
    Reads one audio input at its own rate, without resampling or mixing channels.

    Args:
        audio: a path, a 1-D or (channels, samples) array / tensor (int PCM is scaled to [-1, 1]), or a `datasets`
            Audio value.
        sampling_rate: rate of an array / tensor input; files and Audio values carry their own, so it does not
            apply to them (a batch may mix both). Arrays without it are taken to be at `default_sampling_rate`,
            with a warning. Every rate must lie from `MIN_SAMPLING_RATE` to `MAX_SAMPLING_RATE` (a `ValueError`
            otherwise, raised before a file's samples are decoded).

    Returns:
        `(waveform, sampling_rate)`: a float32 `(channels, samples)` tensor and its rate in Hz.
    """
    if isinstance(audio, (list, tuple)):
        audio = np.asarray(audio, dtype=np.float32)
    if isinstance(audio, (str, os.PathLike)):
        waveform, found = read_audio_file(audio)
    elif isinstance(audio, Mapping):
        if audio.get("array") is not None:
            if "sampling_rate" not in audio:
                raise ValueError("an audio dict with 'array' also needs 'sampling_rate'")
            waveform = to_float_waveform(
                np.asarray(audio["array"]) if isinstance(audio["array"], list) else audio["array"]
            )
            found = check_sampling_rate(audio["sampling_rate"], "the audio dict")
        elif audio.get("bytes") is not None:
            waveform, found = read_audio_file(io.BytesIO(audio["bytes"]))
        elif audio.get("path") is not None:
            return load_audio(audio["path"])
        else:
            raise ValueError(
                f"an audio dict needs 'array' and 'sampling_rate' (or 'path' / 'bytes'), got keys {sorted(audio)}"
            )
    elif hasattr(audio, "get_all_samples"):
        samples = audio.get_all_samples()
        waveform = to_float_waveform(samples.data)
        found = check_sampling_rate(samples.sample_rate, "the audio decoder")
    elif isinstance(audio, (np.ndarray, torch.Tensor)):
        waveform = to_float_waveform(audio)
        if sampling_rate is None:
            logger.warning_once(
                f"No sampling_rate given for array audio; assuming {default_sampling_rate} Hz. Pass sampling_rate= "
                "to resample audio recorded at another rate."
            )
            found = default_sampling_rate
        else:
            found = check_sampling_rate(sampling_rate, "the array audio")
    else:
        raise TypeError(
            f"unsupported audio input of type {type(audio).__name__}; pass a path, a numpy array, a torch tensor or "
            "a datasets Audio dict {'array', 'sampling_rate'}"
        )

    while waveform.dim() > 2 and waveform.shape[0] == 1:
        waveform = waveform[0]
    if waveform.dim() == 1:
        waveform = waveform[None]
    if waveform.dim() != 2:
        raise ValueError(f"audio must be 1-D (samples) or 2-D (channels, samples), got shape {tuple(waveform.shape)}")
    if waveform.numel() == 0:
        raise ValueError(f"audio is empty (shape {tuple(waveform.shape)})")
    if waveform.shape[0] > waveform.shape[1]:
        raise ValueError(
            f"audio of shape {tuple(waveform.shape)} has more channels than samples; pass (channels, samples), "
            "e.g. array.T for (samples, channels) data"
        )
    if not torch.isfinite(waveform).all():
        raise ValueError("audio contains NaN or infinite samples; clean or clip it before tokenizing")
    return waveform, found


def is_audio_batch(audio) -> bool:
    """Whether `audio` is a list / tuple of audio inputs (an empty list is an empty batch) rather than one input
    (a list of samples)."""
    if not isinstance(audio, (list, tuple)):
        return False
    return len(audio) == 0 or not isinstance(audio[0], (int, float, np.number))


def prepare_audio(
    audios: Sequence[AudioInput], sampling_rate: int | None = None, target_sampling_rate: int = 16000
) -> list[torch.Tensor]:
    """
    Loads audio inputs as mono float32 waveforms at `target_sampling_rate`, like the official code: channels are
    resampled, then averaged (with a one-time warning). Inputs sharing a rate and device share one filter bank.

    Returns:
        One 1-D float32 tensor per input.
    """
    loaded = [load_audio(audio, sampling_rate, default_sampling_rate=target_sampling_rate) for audio in audios]
    waveforms = [waveform for waveform, _ in loaded]
    groups = {(rate, waveform.device) for waveform, rate in loaded if rate != target_sampling_rate}
    for rate, device in groups:
        indices = [i for i, (waveform, found) in enumerate(loaded) if (found, waveform.device) == (rate, device)]
        for i, resampled in zip(indices, resample([waveforms[i] for i in indices], rate, target_sampling_rate)):
            waveforms[i] = resampled

    mono = []
    for waveform in waveforms:
        if waveform.shape[0] > 1:
            logger.warning_once(
                f"Found audio with {waveform.shape[0]} channels; averaging them to mono, as the official SPIRIT LM "
                "code does. Select a channel yourself (e.g. audio[0]) to keep only one."
            )
            mono.append(waveform.mean(0))
        else:
            mono.append(waveform[0])
    return mono


AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


def find_audio_files(inputs: Sequence[str | os.PathLike], extensions: Sequence[str] = AUDIO_EXTENSIONS) -> list[Path]:
    """
    The audio files named by `inputs`: files are taken as given (any extension), folders are searched recursively
    for files whose extension is in `extensions` (case-insensitive), in sorted order.
    """
    extensions = tuple(ext.lower() if ext.startswith(".") else f".{ext.lower()}" for ext in extensions)
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(path for path in item.rglob("*") if path.is_file() and path.suffix.lower() in extensions)
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"{item} is neither an audio file nor a folder")
    if not files:
        raise ValueError(f"no audio files ({', '.join(extensions)}) found in {', '.join(map(str, inputs))}")
    return files


__all__ = [
    "AUDIO_EXTENSIONS",
    "MAX_SAMPLING_RATE",
    "MIN_SAMPLING_RATE",
    "AudioInput",
    "check_sampling_rate",
    "check_waveform_batch",
    "find_audio_files",
    "is_audio_batch",
    "load_audio",
    "prepare_audio",
    "read_audio_file",
    "read_audio_info",
    "resample",
    "to_float_waveform",
    "wav_bytes",
    "write_wav",
]
