"""Vocoder throughput, ours vs the official code: seconds of 16 kHz audio synthesised per second, full-size weights.

Both sides synthesise the same 8 unit sequences (41.6 s of audio, the lengths of `bench_speech_tokenizer.py`'s
clips; random units at their own rates: hubert 25 Hz, and for EXPRESSIVE pitch 12.5 Hz and style 1 Hz, resynthesis
mode, no duration prediction) one at a time, from the same official-format checkpoint with full-size random weights
(512 initial channels, resblock kernels 3/7/11, 128-dim embeddings), written by `tools/official_formats/official_vocoder.py`; ours
converts it with `conversion/convert_vocoder.py` and loads it with `from_pretrained` in float32 and in bfloat16
(`dtype=torch.bfloat16`). The official `HifiGANVocoder` runs in its own environment (`--official-python`) in a child
process that stays loaded; variants run interleaved (official, ours float32, ours bfloat16, then rotated), 2 torch
threads on both sides, medians reported, ratios taken round by round.

The table gives the achieved GFLOP/s (FLOPs of one pass counted on our float32 model, over the median time) beside
the matmul peak measured in the same run; below it, how far ours is from the official waveforms (float32) and the
signal-to-noise ratio of the bfloat16 waveforms against the float32 ones.

    python benchmarks/bench_vocoder.py --official-src SRC --official-python VENV/bin/python [--variants base expressive] [--repeats 3] [--batched]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools" / "official_formats"))  # our torch-only official-format writers
THREADS = 2
ANSWER = "@@answer "
# Lengths (s) of the 8 espeak-ng clips of bench_speech_tokenizer.py.
SECONDS = (4.41, 4.42, 7.88, 5.01, 5.66, 4.42, 5.38, 4.45)
FULL_SIZE = {
    "upsample_initial_channel": 512,
    "embedding_dim": 128,
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
}


def unit_sequences(variant: str, seed: int = 0) -> list[dict[str, list[int]]]:
    """Random frame-rate units of `SECONDS`-long utterances."""
    generator = torch.Generator().manual_seed(seed)
    sequences = []
    for seconds in SECONDS:
        frames = int(seconds * 25)
        units = {"hubert": torch.randint(0, 501, (frames,), generator=generator).tolist()}
        if variant == "expressive":
            units["pitch"] = torch.randint(0, 64, (-(-frames // 2),), generator=generator).tolist()
            units["style"] = torch.randint(0, 100, (-(-frames // 25),), generator=generator).tolist()
        sequences.append(units)
    return sequences


def timed(function):
    """`(wall seconds, CPU seconds of this process, result)` of one call."""
    import time

    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def official_worker(official_src: str, checkpoint_dir: str, variant: str, output: str) -> None:
    """Runs in the official environment: loads the official vocoder once, then answers `run` (synthesise every
    sequence, waveforms saved to `output`) from stdin, one JSON line each."""
    import importlib.util

    torch.set_num_threads(THREADS)
    path = Path(official_src) / "spiritlm" / "speech_tokenizer" / "hifigan" / "hifigan_vocoder.py"
    spec = importlib.util.spec_from_file_location("official_hifigan_vocoder", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    vocoder = module.HifiGANVocoder(Path(checkpoint_dir) / "generator.pt", default_speaker=2, default_style=8)
    sequences = unit_sequences(variant)

    def synthesise():
        with torch.inference_mode():
            return [
                vocoder(
                    code=units["hubert"],
                    f0_code=units.get("pitch"),
                    style_code=units.get("style"),
                    speaker_id=2,
                    dur_pred=False,
                    not_dedup_code=True,
                )
                for units in sequences
            ]

    print(ANSWER + json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            return
        wall, cpu, waveforms = timed(synthesise)
        np.savez(output, *[waveform.float().numpy() for waveform in waveforms])
        print(ANSWER + json.dumps({"wall": wall, "cpu": cpu}), flush=True)


class OfficialChild:
    """The official vocoder loaded in a child process of `python` (the official environment)."""

    def __init__(self, python: str, official_src: str, checkpoint_dir: Path, variant: str, output: Path):
        command = [python, __file__, "--official-worker", official_src, str(checkpoint_dir), variant, str(output)]
        env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
        self.output = output
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self._read()

    def _read(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(ANSWER):
                return json.loads(line[len(ANSWER) :])
        raise RuntimeError(f"the official worker stopped (exit status {self.process.wait()})")

    def run(self) -> tuple[float, float, list[np.ndarray]]:
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        answer = self._read()
        with np.load(self.output) as saved:
            waveforms = [saved[f"arr_{index}"] for index in range(len(saved.files))]
        return answer["wall"], answer["cpu"], waveforms

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
            self.process.wait(timeout=60)


def snr_db(signal: np.ndarray, reference: np.ndarray) -> float:
    """10 log10(|reference|^2 / |signal - reference|^2), over all samples."""
    noise = float(np.sum((signal.astype(np.float64) - reference) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(reference.astype(np.float64) ** 2)) / noise)


def bench_variant(variant: str, args, common, peaks, work: Path) -> None:
    from bench_speech_tokenizer import count_flops, raise_peaks
    from official_vocoder import write_official_vocoder

    from transformers_spiritlm import SpiritLMVocoder
    from transformers_spiritlm.conversion.convert_vocoder import load_official_vocoder

    checkpoint_dir = write_official_vocoder(work / "official" / variant, variant, **FULL_SIZE)
    converted = work / "converted" / variant
    load_official_vocoder(checkpoint_dir).save_pretrained(converted)
    ours = {
        "ours fp32": SpiritLMVocoder.from_pretrained(converted).eval(),
        "ours bf16": SpiritLMVocoder.from_pretrained(converted, dtype=torch.bfloat16).eval(),
    }
    sequences = unit_sequences(variant)
    audio_seconds = sum(len(units["hubert"]) for units in sequences) * ours["ours fp32"].config.hop_length / 16000

    def synthesise(model):
        return [model.decode_units(**units, dur_pred=False) for units in sequences]

    variants = {name: (lambda model=model: synthesise(model)) for name, model in ours.items()}
    if args.batched:
        batch = {key: [units[key] for units in sequences] for key in sequences[0]}
        variants["ours fp32, one batch"] = lambda: ours["ours fp32"].decode_units(**batch, dur_pred=False)
    official = OfficialChild(
        args.official_python, args.official_src, checkpoint_dir, variant, work / f"official_{variant}.npz"
    )
    try:
        names = ["official", *variants]
        seconds = {name: [] for name in names}
        waveforms = {}

        def run(name: str) -> float:
            if name == "official":
                wall, _, waveforms[name] = official.run()
            else:
                wall, _, waveforms[name] = timed(variants[name])
            return wall

        for name in names:  # warm-up
            run(name)
        for round_index in range(args.repeats):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                seconds[name].append(run(name))
    finally:
        official.close()

    flops = count_flops(variants["ours fp32"])
    peak_text = raise_peaks(common, peaks)
    parameters = sum(parameter.numel() for parameter in ours["ours fp32"].parameters()) / 1e6
    rows = []
    for name in names:
        wall = statistics.median(seconds[name])
        peak = peaks[torch.bfloat16 if "bf16" in name else torch.float32]
        rows.append(
            [
                name,
                f"{audio_seconds / wall:.1f}",
                f"{1 / common.paired_ratio(seconds, name, 'official'):.2f}x",
                f"{flops / wall / 1e9:.0f} of {peak:.0f}",
            ]
        )
    print()
    print(
        f"{variant.upper()} vocoder, {parameters:.1f} M parameters, {audio_seconds:.1f} s of audio in "
        f"{len(sequences)} sequences ({args.repeats} interleaved rounds, medians; {flops / 1e9:.0f} GFLOP per pass; "
        f"peak: the best matmul peak of the run, {peak_text})"
    )
    common.print_table(["variant", "audio s / wall s", "speed vs official", "GFLOP/s (of peak)"], rows)
    reference = [waveform.float().numpy() for waveform in waveforms["ours fp32"]]
    difference = max(float(np.abs(a - b).max()) for a, b in zip(reference, waveforms["official"]))
    bf16 = np.concatenate([waveform.float().numpy() for waveform in waveforms["ours bf16"]])
    print(
        f"ours fp32 vs official: max |difference| {difference:.1e}, "
        f"SNR {snr_db(np.concatenate(reference), np.concatenate(waveforms['official'])):.0f} dB"
    )
    print(f"ours bf16 vs ours fp32: SNR {snr_db(bf16, np.concatenate(reference)):.1f} dB")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", choices=("base", "expressive"), default=["base", "expressive"])
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (median reported); one warm-up first")
    parser.add_argument("--batched", action="store_true", help="also time ours on all sequences as one padded batch")
    parser.add_argument("--official-src", help="a checkout of facebookresearch/spiritlm")
    parser.add_argument("--official-python", help="VENV/bin/python of tools/official_reference/setup.sh VENV")
    parser.add_argument("--official-worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.official_worker:
        official_worker(*args.official_worker)
        return 0
    if not (args.official_src and args.official_python):
        parser.error("the following arguments are required: --official-src, --official-python")

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import common

    common.set_threads(THREADS)
    peaks = common.matmul_peaks()
    common.print_header(
        "vocoder, ours vs official",
        peaks,
        notes=["full-size random weights; random frame-rate units, resynthesis (no duration prediction)"],
    )
    with tempfile.TemporaryDirectory() as directory:
        for variant in args.variants:
            bench_variant(variant, args, common, peaks, Path(directory))
    return 0


if __name__ == "__main__":
    sys.exit(main())
