"""SALMon (Suite for Acoustic Language Model evaluation): is a recording whose acoustics stay consistent (speaker,
sentiment, background, room) or agree with what is said more likely than one where they change or disagree? Read from
the published layout: one folder per part, holding `sample_<n>_0.wav` (the positive) and `sample_<n>_1.wav` (the
negative) for every sample `n`."""

import os
import re
from pathlib import Path

from .pairs import Pair, check_pairs


PARTS = (
    "bg_alignment",
    "bg_all_consistency",
    "bg_domain_consistency",
    "gender_consistency",
    "rir_consistency",
    "sentiment_alignment",
    "sentiment_consistency",
    "speaker_consistency",
)
_SAMPLE = re.compile(r"sample_(\d+)_(\d+)")


def read_salmon(data_dir: str | os.PathLike, parts: list[str] | None = None) -> list[Pair]:
    """
    The (positive, negative) pairs of the SALMon parts found in `data_dir` (or of the given `parts`, each of which
    must be there): in each part folder, `sample_<n>_0.wav` is the positive and `sample_<n>_1.wav` the negative of
    sample `n` (the suffix decides, never the listing order). Pair ids are `"<part>/<n>"`, subsets the parts.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"salmon: data folder {data_dir} does not exist")
    if parts is None:
        parts = [part for part in PARTS if (data_dir / part).is_dir()]
        if not parts:
            raise ValueError(
                f"salmon: {data_dir} holds none of the SALMon part folders ({', '.join(PARTS)}): give the folder the "
                "benchmark unzips into (salmon_benchmark)"
            )
    pairs = []
    for part in parts:
        folder = data_dir / part
        if part not in PARTS:
            raise ValueError(f"salmon: unknown part {part!r}; the parts are {', '.join(PARTS)}")
        if not folder.is_dir():
            raise FileNotFoundError(f"salmon: {data_dir} has no {part} folder")
        samples: dict[int, dict[int, Path]] = {}
        for wav in folder.glob("*.wav"):
            match = _SAMPLE.fullmatch(wav.stem)
            if match is None:
                raise ValueError(f"salmon: {wav} is not named sample_<n>_<0 or 1>.wav, as the SALMon files are")
            samples.setdefault(int(match[1]), {})[int(match[2])] = wav
        if not samples:
            raise ValueError(f"salmon: {folder} holds no sample_<n>_<k>.wav file")
        for number, files in sorted(samples.items()):
            if sorted(files) != [0, 1]:
                found = ", ".join(path.name for _, path in sorted(files.items()))
                raise ValueError(
                    f"salmon: sample {number} of {part} has {found}; a sample is exactly sample_{number}_0.wav (the "
                    f"positive) and sample_{number}_1.wav (the negative): the folder is unpaired"
                )
            pairs.append(
                Pair(
                    id=f"{part}/{number}",
                    correct={"type": "speech", "audio": files[0]},
                    wrong={"type": "speech", "audio": files[1]},
                    subset=part,
                )
            )
    check_pairs(pairs, f"salmon {data_dir}")
    return pairs


__all__ = ["PARTS", "read_salmon"]
