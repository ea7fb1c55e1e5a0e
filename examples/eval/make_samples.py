"""Writes the sample benchmark folders of examples/eval/ in their published layouts, with speech from espeak-ng
(run once; the WAVs are committed, 16 kHz mono 16-bit):

    python examples/eval/make_samples.py

- `swuggy/`: an sLM21 lexical split (`gold.csv` + wavs with random names, as released);
- `sblimp/`: an sLM21 syntactic split (`gold.csv` + wavs);
- `storycloze/spoken/`: the spoken StoryCloze layout (`<n>_correct.wav`, `<n>_incorrect.wav`, whole stories);
- `storycloze/cross_modal/`: the cross-modal layout (`<n>_mutual`, `<n>_correct`, `<n>_incorrect`, `.txt` and `.wav`);
- `salmon/`: two SALMon parts (`sample_<n>_0.wav` positive, `sample_<n>_1.wav` negative).

tests/fixtures/likelihood/record_likelihood.py records the official scores of these folders.
"""

import csv
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import torch

from transformers_spiritlm.audio import resample, write_wav


HERE = Path(__file__).resolve().parent
RATE = 16000
SPEED = 240  # words per minute: short files
WORDS = [("1", "table", "tadle", 312), ("2", "garden", "gorben", 48), ("3", "thimble", "thimpel", 0)]
SENTENCES = [
    ("morphology", "noun_verb_agreement", "1", "the dogs bark", "the dogs barks"),
    ("syntax", "argument_structure", "2", "she saw him", "she saw he"),
]
STORIES = [
    ("Tom was hungry.", "He ate a sandwich.", "He painted the sky."),
    ("Anna lost her keys.", "She looked under the bed.", "The moon sang loudly."),
]


def speak(text: str, voice: str = "en-us") -> np.ndarray:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(SPEED), "-w", str(path), text], check=True)
        audio, rate = soundfile.read(path, dtype="float32")
    audio = resample(torch.from_numpy(audio), rate, RATE).numpy()
    # espeak-ng pads with silence: keep 50 ms of it on each side.
    voiced = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[max(voiced[0] - RATE // 20, 0) : voiced[-1] + RATE // 20]


def name(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(11))


def write_gold(folder: Path, columns: list[str], rows: list[dict]) -> None:
    with open(folder / "gold.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    rng = random.Random(0)
    for folder in ("swuggy", "sblimp", "storycloze", "salmon"):
        shutil.rmtree(HERE / folder, ignore_errors=True)

    folder = HERE / "swuggy"
    folder.mkdir()
    rows = []
    for pair_id, word, non_word, frequency in WORDS:
        for text, correct in ((word, 1), (non_word, 0)):
            filename = name(rng)
            write_wav(folder / f"{filename}.wav", speak(text), RATE)
            rows.append({"id": pair_id, "filename": filename, "correct": correct, "frequency": frequency if correct else "",
                         "voice": "en-us", "word": text})  # fmt: skip
    rng.shuffle(rows)  # the pairing comes from id and voice, never from the order of the rows
    write_gold(folder, ["id", "filename", "correct", "frequency", "voice", "word"], rows)

    folder = HERE / "sblimp"
    folder.mkdir()
    rows = []
    for kind, subtype, pair_id, good, bad in SENTENCES:
        for text, correct in ((good, 1), (bad, 0)):
            filename = name(rng)
            write_wav(folder / f"{filename}.wav", speak(text), RATE)
            rows.append({"filename": filename, "type": kind, "subtype": subtype, "correct": correct, "id": pair_id,
                         "voice": "en-us", "transcription": text})  # fmt: skip
    rng.shuffle(rows)
    write_gold(folder, ["filename", "type", "subtype", "correct", "id", "voice", "transcription"], rows)

    spoken = HERE / "storycloze" / "spoken"
    cross = HERE / "storycloze" / "cross_modal"
    spoken.mkdir(parents=True)
    cross.mkdir(parents=True)
    for number, (beginning, good, bad) in enumerate(STORIES):
        write_wav(spoken / f"{number}_correct.wav", speak(f"{beginning} {good}"), RATE)
        write_wav(spoken / f"{number}_incorrect.wav", speak(f"{beginning} {bad}"), RATE)
        for part, text in (("mutual", beginning), ("correct", good), ("incorrect", bad)):
            (cross / f"{number}_{part}.txt").write_text(text + "\n")
            write_wav(cross / f"{number}_{part}.wav", speak(text), RATE)

    for part, (first, second) in {
        "speaker_consistency": ("en-us", "en-gb+f3"),
        "gender_consistency": ("en-us+m3", "en-us+f4"),
    }.items():
        folder = HERE / "salmon" / part
        folder.mkdir(parents=True)
        for number, (start, end) in enumerate([("I bought bread", "and some milk."),
                                               ("The train was late", "again today.")]):  # fmt: skip
            write_wav(
                folder / f"sample_{number}_0.wav", np.concatenate([speak(start, first), speak(end, first)]), RATE
            )
            write_wav(
                folder / f"sample_{number}_1.wav", np.concatenate([speak(start, first), speak(end, second)]), RATE
            )


if __name__ == "__main__":
    main()
