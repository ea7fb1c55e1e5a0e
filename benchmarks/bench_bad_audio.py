"""Work done on audio that is small on disk but huge once decoded or resampled, before and after the bounds of issue 25:
wall-clock seconds and peak RSS of each call, in a child process per call, killed past a time or memory limit.

The files (written here, seeded):

- a 64 KB WAV whose header says 1 Hz (32000 samples: 9 hours once resampled to 16 kHz);
- a 180 KB FLAC holding an hour of silence at 16 kHz (57.6M samples, 230 MB as float32);
- one second of a tone at 44101 Hz (a rate coprime with 16000: torchaudio's filter bank has 16000 x 44135 taps).

Each goes through the call that the issue reports: the speech tokenizer's `encode_string` for the WAVs, the web page's
answer handler (`build_app(...)` on a loaded pipeline, the function behind its Answer button) for the FLAC, on the
tiny random-weight EXPRESSIVE repo; the FLAC also through `encode_string`, which has no length limit (an hour of audio
is a library caller's to tokenize). "before" imports the package from `--before-src` (e.g. main's `src/`), "after"
from this checkout. A call that runs past `--timeout` seconds or `--max-rss-gb` of resident memory is killed, and its
figures are those at the kill.

    git archive main src | tar -x -C /tmp/before    # the code to compare against
    python benchmarks/bench_bad_audio.py --before-src /tmp/before/src [--timeout 60] [--max-rss-gb 6]
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile


sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
src, case, path, repo = sys.argv[1:]
sys.path.insert(0, src)
import transformers_spiritlm
assert transformers_spiritlm.__file__.startswith(src), transformers_spiritlm.__file__


def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS:"))


if case == "encode_string":
    from transformers_spiritlm import SpiritLMSpeechTokenizer

    model = SpiritLMSpeechTokenizer.from_pretrained(repo, subfolder="speech_tokenizer")
    run = lambda: model.encode_string(path)
else:
    from transformers import pipeline
    from transformers_spiritlm.web import PROMPT_ORDERS, build_app

    app = build_app(pipeline("spirit-lm", model=repo, device="cpu"))
    (handler,) = [function.fn for function in app.fns.values() if function.api_name == "answer"]
    run = lambda: list(handler(path, "", PROMPT_ORDERS[0], "speech", 2, 0.8, 0.95, 30, 0, True))
print(json.dumps({"rss_before_mb": rss_mb()}), flush=True)
start = time.perf_counter()
try:
    run()
    outcome = "answered"
except Exception as error:
    outcome = f"{type(error).__name__}: {getattr(error, 'message', None) or error}"
seconds = time.perf_counter() - start
print(json.dumps({"outcome": outcome, "seconds": seconds, "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
"""


def write_files(folder: Path) -> dict[str, Path]:
    one_hz = folder / "one-hz.wav"
    rng = np.random.default_rng(0)
    soundfile.write(one_hz, rng.integers(-3000, 3000, 32000).astype(np.int16), 1, subtype="PCM_16")
    hour = folder / "hour-of-silence.flac"
    with soundfile.SoundFile(hour, "w", 16000, 1, subtype="PCM_16") as file:
        for _ in range(60):
            file.write(np.zeros(60 * 16000, np.int16))
    coprime = folder / "tone-44101hz.wav"
    soundfile.write(coprime, 0.5 * np.sin(2 * np.pi * 440 * np.arange(44101) / 44101), 44101, subtype="PCM_16")
    return {"one_hz": one_hz, "hour": hour, "coprime": coprime}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before-src", required=True, help="the src/ folder of the code to compare against")
    parser.add_argument("--timeout", type=float, default=60, help="seconds after which a call is killed")
    parser.add_argument("--max-rss-gb", type=float, default=6, help="resident memory at which a call is killed")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from transformers_spiritlm.testing import build_tiny_repo

    common.print_header(
        "bench_bad_audio: small files that decode or resample to hours, before and after the bounds of issue 25",
        notes=[
            f"a call is killed after {args.timeout:g} s or at {args.max_rss_gb:g} GB RSS",
            "tiny random-weight EXPRESSIVE repo; peak RSS includes the ~0.5 GB of torch, transformers and the model",
        ],
    )
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        files = write_files(folder)
        repo = build_tiny_repo(folder / "repo", variant="expressive")
        cases = [
            ("64 KB WAV, header says 1 Hz", "encode_string", files["one_hz"]),
            ("180 KB FLAC, 1 h of silence", "page", files["hour"]),
            ("180 KB FLAC, 1 h of silence", "encode_string", files["hour"]),
            ("1 s at 44101 Hz (coprime)", "encode_string", files["coprime"]),
        ]
        rows = []
        for name, case, path in cases:
            for side, src in [("before", Path(args.before_src).resolve()), ("after", REPO / "src")]:
                result = common.run_child(
                    [sys.executable, "-c", CHILD, str(src), case, str(path), str(repo)],
                    timeout=args.timeout,
                    max_rss=int(args.max_rss_gb * 2**30),
                )
                lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
                report = {key: value for line in lines for key, value in line.items()}
                peak = f"{result.peak_rss / 2**30:.2f} GB"
                if "outcome" in report:
                    seconds, outcome = f"{report['seconds']:.3f}", report["outcome"]
                elif result.returncode < 0 and result.peak_rss >= args.max_rss_gb * 2**30:
                    seconds, outcome, peak = (
                        f"killed at {result.seconds:.0f}",
                        "killed: over the RSS limit",
                        f">{peak}",
                    )
                elif result.returncode < 0:
                    seconds, outcome = f">{args.timeout:g}", "killed: over the time limit (RSS at the kill)"
                else:
                    raise RuntimeError(f"{side} {name} failed:\n{result.stderr[-3000:]}")
                size = f"{path.stat().st_size / 1024:.0f} KB"
                before = f"{report['rss_before_mb'] / 1024:.2f} GB" if "rss_before_mb" in report else "-"
                rows.append([name, size, side, case, seconds, before, peak, outcome[:150]])
                print(f"{name} / {side}: {seconds} s, peak {peak}", flush=True)
    common.print_table(
        ["input", "file", "code", "call", "seconds", "RSS before the call", "peak RSS", "outcome"], rows
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
