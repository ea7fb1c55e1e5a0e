"""Stand-in for torchaudio (which does not load beside torch 2.13) with the two calls the official code makes:
`load` (soundfile, float32, `(channels, samples)`) and `functional.resample`."""

import soundfile
import torch

from . import functional, transforms


__all__ = ["functional", "load", "transforms"]


def load(path, *args, **kwargs) -> tuple[torch.Tensor, int]:
    data, sampling_rate = soundfile.read(path if hasattr(path, "read") else str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(data.T.copy()), sampling_rate
