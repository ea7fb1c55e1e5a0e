"""`Resample`, which torchfcpe imports: the official FCPE extractor feeds 16 kHz audio to a 16 kHz model, so only the
identity is needed; any other rate raises instead of silently differing from torchaudio (whose kernel is built in
float64, unlike `functional.resample`)."""

import torch


class Resample(torch.nn.Module):
    def __init__(self, orig_freq: int = 16000, new_freq: int = 16000, *args, **kwargs):
        super().__init__()
        if int(orig_freq) != int(new_freq):
            raise NotImplementedError(
                f"the torchaudio stand-in resamples only through functional.resample, not Resample({orig_freq}, "
                f"{new_freq})"
            )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return waveform
