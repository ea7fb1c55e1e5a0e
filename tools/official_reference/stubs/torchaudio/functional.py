"""`resample` is this repository's own port of torchaudio's `functional.resample` (src/transformers_spiritlm/audio.py,
tested bit-identical against torchaudio 2.11), loaded by file path: the package itself needs transformers 5 and
cannot be imported in the official environment."""

import importlib.util
from pathlib import Path


_AUDIO = Path(__file__).resolve().parents[4] / "src" / "transformers_spiritlm" / "audio.py"
_spec = importlib.util.spec_from_file_location("_spiritlm_audio", _AUDIO)
_audio = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_audio)


def resample(waveform, orig_freq: int, new_freq: int, lowpass_filter_width: int = 6, rolloff: float = 0.99, **_):
    return _audio.resample(waveform, int(orig_freq), int(new_freq), lowpass_filter_width, rolloff)
