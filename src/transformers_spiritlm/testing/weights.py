"""Seeded random weights that keep a tiny network's activations at a useful size.

Default initialisations (transformers' `normal(0, 0.02)`, small embeddings) make a random tiny vocoder nearly silent and
a random style or pitch classifier give one class for every input. The tiny checkpoints instead draw every weight
matrix from N(0, 1 / fan-in), so each layer roughly keeps the scale of its input, as a trained network does.
"""

import torch
from torch import nn


def randomize_weights_(module: nn.Module, seed: int) -> nn.Module:
    """
    Overwrites every parameter of `module` in place, from a generator seeded with `seed`, and returns `module`:
    embedding tables ~ N(0, 1); other weights of two or more dimensions ~ N(0, 1 / fan-in), fan-in being the size of
    one slice along the first axis; norm scales and weight-norm gains ~ 1 + N(0, 0.02²); biases ~ N(0, 0.1²).
    """
    generator = torch.Generator().manual_seed(seed)
    embeddings = {f"{name}.weight" for name, child in module.named_modules() if isinstance(child, nn.Embedding)}
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if name in embeddings:
                value = noise
            elif name.endswith("bias"):
                value = 0.1 * noise
            elif parameter.dim() == 1 or name.endswith("original0"):
                value = 1.0 + 0.02 * noise
            else:
                value = noise / (parameter[0].numel() ** 0.5)
            parameter.copy_(value.to(parameter.dtype))
    return module


__all__ = ["randomize_weights_"]
