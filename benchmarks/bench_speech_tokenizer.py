"""Speech tokenizer throughput: seconds of audio encoded per second, full-size (mHuBERT-base 25 Hz) random weights.

Compares `SpiritLMSpeechTokenizer.encode_units` on a list of clips (padded batches) with one clip at a time, and,
with `--official-src`, with the official `SpiritLMTokenizer` run in its own environment (`--official-python`) on
random full-size weights in the official file formats. Clips are cut from the espeak-ng fixtures (varied lengths) and
written as 16 kHz wav files, which every variant reads from disk.

    python benchmarks/bench_speech_tokenizer.py [--clips 8] [--device cpu] [--official-src /root/official-src]
"""

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch


REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO / "tests" / "fixtures" / "audio" / "speech_7s_16k.wav"
WRITER = REPO / "src" / "transformers_spiritlm" / "testing" / "official_hubert.py"


def write_clips(directory: Path, count: int, min_seconds: float, max_seconds: float) -> list[Path]:
    """`count` clips with lengths spread evenly over [min_seconds, max_seconds], cut from the 7 s fixture."""
    speech, rate = soundfile.read(SPEECH, dtype="float32")
    paths = []
    for index, seconds in enumerate(np.linspace(min_seconds, max_seconds, count)):
        samples = int(seconds * rate)
        clip = np.tile(speech, -(-samples // len(speech)))[:samples]
        paths.append(directory / f"clip{index}.wav")
        soundfile.write(paths[-1], clip, rate, subtype="FLOAT")
    return paths


def best_of(function, repeats: int) -> tuple[float, float]:
    """Median wall time and median CPU time (all threads) of `repeats` calls, after one warm-up call. CPU time is
    the steadier figure on a shared machine."""
    function()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def run_ours(clips: list[Path], device: str, dtype: str, repeats: int) -> dict[str, tuple[float, float]]:
    from transformers_spiritlm import SpiritLMSpeechTokenizer, SpiritLMSpeechTokenizerConfig

    torch.manual_seed(0)
    model = SpiritLMSpeechTokenizer(SpiritLMSpeechTokenizerConfig()).to(device, getattr(torch, dtype)).eval()
    return {
        "ours, batched": best_of(lambda: model.encode_units(clips), repeats),
        "ours, one clip at a time": best_of(lambda: [model.encode_units(clip) for clip in clips], repeats),
    }


def official_worker(official_src: str, clip_dir: str, repeats: int) -> None:
    """Runs inside the official environment: times the official tokenizer and prints JSON."""
    spec = importlib.util.spec_from_file_location("official_hubert", WRITER)
    writer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(writer)
    checkpoints = Path(tempfile.mkdtemp())
    writer.write_official_hubert_checkpoints(checkpoints, **writer.FULL_HUBERT)
    sys.path.insert(0, str(REPO.parent / "shared" / "official-reference"))
    import official_env

    official_env.setup(official_src, checkpoints_dir=checkpoints)
    from spiritlm.speech_tokenizer import spiritlm_hubert
    from spiritlm.speech_tokenizer.spiritlm_tokenizer import SpiritLMTokenizer

    tokenizer = SpiritLMTokenizer(hubert_model=spiritlm_hubert())
    clips = sorted(Path(clip_dir).glob("clip*.wav"))
    elapsed = best_of(lambda: [tokenizer.encode_units(str(clip)) for clip in clips], repeats)
    print(json.dumps({"official, one clip at a time": elapsed}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=8, help="number of clips (default 8)")
    parser.add_argument("--min-seconds", type=float, default=1.5)
    parser.add_argument("--max-seconds", type=float, default=6.0)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant, median reported")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--official-src", help="official spiritlm checkout: also time the official tokenizer")
    parser.add_argument("--official-python", default="/root/spiritlm-official-venv/bin/python")
    parser.add_argument("--official-worker", nargs=2, metavar=("SRC", "CLIPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.official_worker:
        official_worker(*args.official_worker, args.repeats)
        return

    with tempfile.TemporaryDirectory() as directory:
        clips = write_clips(Path(directory), args.clips, args.min_seconds, args.max_seconds)
        audio_seconds = sum(soundfile.info(clip).duration for clip in clips)
        timings = run_ours(clips, args.device, args.dtype, args.repeats)
        if args.official_src:
            command = [args.official_python, __file__, "--official-worker", args.official_src, directory]
            result = subprocess.run(
                [*command, "--repeats", str(args.repeats)], capture_output=True, text=True, check=True
            )
            timings.update(json.loads(result.stdout.strip().splitlines()[-1]))

    print(
        f"{args.clips} clips, {audio_seconds:.1f} s of audio; {args.device} {args.dtype} for ours, "
        f"{torch.get_num_threads()} torch threads"
    )
    print(f"{'':28s} {'audio s / wall s':>16s} {'audio s / CPU s':>16s}")
    for name, (wall, cpu) in timings.items():
        print(f"{name:28s} {audio_seconds / wall:16.2f} {audio_seconds / cpu:16.2f}")


if __name__ == "__main__":
    main()
