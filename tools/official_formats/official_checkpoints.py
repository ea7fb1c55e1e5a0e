"""A whole tiny official SPIRIT LM `checkpoints/` tree (the layout of Meta's download, listed in
`conversion/convert_spiritlm_to_hf.py`), random weights, for conversion tests.

`write_official_checkpoints(checkpoints_dir)` calls each component's official-format writer: the HuBERT tokenizer,
the F0 VQ-VAE, the style encoder, both vocoders and both language models. FCPE weights are not part of the official
download (they ship in the torchfcpe wheel): [`write_official_fcpe`] writes a random stand-in in torchfcpe's format
for `--fcpe-checkpoint`.
"""

from pathlib import Path

import torch
from official_hubert import write_official_hubert_checkpoints
from official_lm import OFFICIAL_LM_DIRS, write_official_lm
from official_pitch import random_fcpe_checkpoint, write_official_vqvae_f0
from official_style import write_official_style_encoder
from official_vocoder import write_official_vocoders


SPEECH_TOKENIZER_DIR = Path("speech_tokenizer")


def write_official_checkpoints(
    checkpoints_dir: str | Path,
    variants: tuple[str, ...] = ("base", "expressive"),
    unit_storage: str = "sentencepiece",
    legacy: bool | None = None,
    seed: int = 0,
    lm_dtype: torch.dtype = torch.float32,
    sentencepiece_model: bytes | None = None,
) -> Path:
    """
    Writes the official `checkpoints/` tree with tiny random weights into `checkpoints_dir` and returns it:
    `speech_tokenizer/` (HuBERT + quantizer, F0 VQ-VAE, style encoder, both vocoders) and
    `spiritlm_model/spirit-lm-{variant}-7b/` for each of `variants`, their tokenizers storing the units as
    `unit_storage` (see [`write_official_lm`]).
    """
    checkpoints_dir = Path(checkpoints_dir)
    speech_dir = checkpoints_dir / SPEECH_TOKENIZER_DIR
    write_official_hubert_checkpoints(checkpoints_dir, seed=seed)
    write_official_vqvae_f0(speech_dir / "vqvae_f0_quantizer", seed=seed)
    write_official_style_encoder(speech_dir / "style_encoder_w2v2", seed=seed)
    write_official_vocoders(checkpoints_dir, seed=seed)
    for variant in variants:
        if variant not in OFFICIAL_LM_DIRS:
            raise ValueError(f"unknown variant {variant!r}; use 'base' or 'expressive'")
        write_official_lm(
            checkpoints_dir,
            variant,
            unit_storage=unit_storage,
            legacy=legacy,
            seed=seed,
            dtype=lm_dtype,
            sentencepiece_model=sentencepiece_model,
        )
    return checkpoints_dir


def write_official_fcpe(path: str | Path, seed: int = 0) -> Path:
    """Writes a random FCPE checkpoint in torchfcpe's `.pt` format to `path` and returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_fcpe_checkpoint(seed=seed), path)
    return path


__all__ = ["write_official_checkpoints", "write_official_fcpe"]
