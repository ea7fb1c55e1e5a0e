"""Spoken and topic StoryCloze (sStoryCloze, tStoryCloze): is the true ending of a short story more likely than a
false one? Read from the published layouts: the spoken releases (`<n>_correct.wav` / `<n>_incorrect.wav`, each the
whole story spoken) and the cross-modal ones, where `<n>_mutual` is the story's beginning and `<n>_correct` /
`<n>_incorrect` its two endings, each as `.wav` and `.txt`."""

import os
import re
from pathlib import Path

from ..modalities import SPEECH, TEXT
from .pairs import Pair, check_pairs


MODALITIES = (TEXT, SPEECH)
_EXTENSIONS = {TEXT: ".txt", SPEECH: ".wav"}


def _natural_order(path: Path) -> list:
    """`2_correct` before `10_correct`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.as_posix())]


def _item(path: Path, modality: str, after: str | None) -> dict:
    if modality == SPEECH:
        return {"type": SPEECH, "audio": path}
    text = path.read_text(encoding="utf-8").strip()
    if not text:
        raise ValueError(f"storycloze: {path} is empty")
    # Text after text goes on the way the story is written: one space between its sentences.
    return {"type": TEXT, "text": " " + text if after == TEXT else text}


def read_storycloze(
    data_dir: str | os.PathLike, prompt_modality: str | None = None, continuation_modality: str | None = None
) -> list[Pair]:
    """
    The (true ending, false ending) pairs of a StoryCloze folder (its files directly in it or in subfolders, one per
    speaker). Without modalities, the spoken releases: `<n>_correct.wav` and `<n>_incorrect.wav`, each a whole
    story, scored without a prompt. With `prompt_modality` and `continuation_modality` (`"text"` or `"speech"`),
    the cross-modal layout: the prompt is `<n>_mutual` and the endings `<n>_correct` / `<n>_incorrect`, as `.txt` for
    text and `.wav` for speech. Which ending is true comes from the file names. Pair ids are `<n>` with its subfolder
    (`"spk1/12"`); subsets are the subfolders, when there are any.
    """
    data_dir = Path(data_dir)
    if (prompt_modality is None) != (continuation_modality is None):
        raise ValueError("give both --prompt-modality and --continuation-modality (cross-modal), or neither (spoken)")
    for name, modality in (("prompt", prompt_modality), ("continuation", continuation_modality)):
        if modality is not None and modality not in MODALITIES:
            raise ValueError(f"unknown {name} modality {modality!r}; use one of {', '.join(MODALITIES)}")
    if not data_dir.is_dir():
        raise FileNotFoundError(f"storycloze: data folder {data_dir} does not exist")
    extension = _EXTENSIONS[continuation_modality or SPEECH]
    correct_files = sorted(
        [*data_dir.glob(f"*_correct{extension}"), *data_dir.glob(f"*/*_correct{extension}")], key=_natural_order
    )
    if not correct_files:
        raise ValueError(
            f"storycloze: {data_dir} has no <n>_correct{extension} file (nor its subfolders): give a StoryCloze "
            "release folder (sSC, tSC, or a cross-modal one with _mutual files)"
        )
    pairs = []
    for correct in correct_files:
        stem = correct.name[: -len(f"_correct{extension}")]
        files = {"wrong": correct.with_name(f"{stem}_incorrect{extension}")}
        if prompt_modality is not None:
            files["prompt"] = correct.with_name(f"{stem}_mutual{_EXTENSIONS[prompt_modality]}")
        for path in files.values():
            if not path.is_file():
                raise FileNotFoundError(
                    f"storycloze: {correct.name} has no {path.name} beside it: the folder is unpaired"
                )
        subfolder = correct.parent.relative_to(data_dir).as_posix()
        pair = Pair(id=stem if subfolder == "." else f"{subfolder}/{stem}")
        if prompt_modality is not None:
            pair["prompt"] = _item(files["prompt"], prompt_modality, None)
        pair["correct"] = _item(correct, continuation_modality or SPEECH, prompt_modality)
        pair["wrong"] = _item(files["wrong"], continuation_modality or SPEECH, prompt_modality)
        if subfolder != ".":
            pair["subset"] = subfolder
        pairs.append(pair)
    for wrong in sorted(data_dir.glob(f"*_incorrect{extension}")) + sorted(data_dir.glob(f"*/*_incorrect{extension}")):
        if not wrong.with_name(wrong.name[: -len(f"_incorrect{extension}")] + f"_correct{extension}").is_file():
            raise FileNotFoundError(f"storycloze: {wrong} has no _correct file beside it: the folder is unpaired")
    check_pairs(pairs, f"storycloze {data_dir}")
    return pairs


__all__ = ["MODALITIES", "read_storycloze"]
