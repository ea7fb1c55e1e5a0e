"""`spiritlm demo`: the whole data path offline, on a tiny random checkpoint built once in the cache."""

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import __version__
from .common import add_device_argument, default_cache_dir, load_pipeline, print_segments, write_wav
from .generate import stream_to_files


# Made once with espeak-ng 1.51 and sox: `espeak-ng -v en-us -s 160 -w q.wav "What is the capital of France?"` then
# `sox q.wav -r 16000 -b 16 -c 1 demo_prompt_16k.wav`.
DEMO_PROMPT_WAV = Path(__file__).parent.parent / "assets" / "demo_prompt_16k.wav"
DEMO_PROMPT_TEXT = "What is the capital of France?"
_DEMO_MARKER = "demo-complete.txt"


def demo_repo(cache_dir: Path) -> Path:
    """The tiny random expressive repo of the demo, built once in the cache."""
    from ..testing import build_tiny_repo

    # The cache key covers the builder's source, so a changed builder never serves a stale checkpoint.
    builder_sources = sorted((Path(__file__).parent.parent / "testing").glob("*.py"))
    fingerprint = hashlib.sha256(b"".join(path.read_bytes() for path in builder_sources)).hexdigest()[:12]
    repo = cache_dir / f"demo-tiny-expressive-{__version__}-{fingerprint}"
    if (repo / _DEMO_MARKER).is_file():
        print(f"Using the cached tiny checkpoint in {repo}")
        return repo
    print(f"Building a tiny random-weight SPIRIT LM (expressive) in {repo} (first run only) ...")
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="building-", dir=cache_dir))
    build_tiny_repo(staging)
    (staging / _DEMO_MARKER).write_text(f"built by transformers-spiritlm {__version__}\n")
    shutil.rmtree(repo, ignore_errors=True)
    os.replace(staging, repo)
    return repo


def run_demo(args) -> int:
    if args.repo is None and args.no_cache:
        from ..testing import build_tiny_repo

        with tempfile.TemporaryDirectory(prefix="spiritlm-demo-") as directory:
            print(f"Building a tiny random-weight SPIRIT LM (expressive) in {directory} (removed at the end) ...")
            return _run_demo(args, build_tiny_repo(Path(directory) / "tiny-expressive"))
    return _run_demo(args, args.repo or demo_repo(Path(args.cache_dir)))


def _run_demo(args, repo: str | Path) -> int:
    start = time.perf_counter()
    print(f"Loading model, processor (with speech tokenizer) and vocoder from {repo} ...")
    pipe = load_pipeline(str(repo), args.device)
    generation = {"max_new_tokens": args.max_new_tokens, "do_sample": True, "seed": args.seed}

    speech_prompt = [{"type": "speech", "audio": DEMO_PROMPT_WAV}]
    print(f"\nSpeech prompt: {DEMO_PROMPT_WAV.name} (espeak-ng: {DEMO_PROMPT_TEXT!r})")
    print(f"  as SPIRIT LM tokens: {pipe.processor.build_prompt(speech_prompt)[:100]}...")

    output = Path(args.output)
    if args.stream:
        print("\n1) speech -> speech (output_modality='speech'), streamed: audio is written while generating")
        # The demo rewrites its own output file on every run, streamed or not.
        stream_to_files(pipe, speech_prompt, "speech", output, True, speaker_id=args.speaker_id, **generation)
    else:
        print("\n1) speech -> speech (output_modality='speech')")
        speech = pipe(speech_prompt, output_modality="speech", speaker_id=args.speaker_id, **generation)
        print_segments(speech)
        audio = [segment["audio"] for segment in speech if "audio" in segment]
        write_wav(output, np.concatenate(audio) if audio else np.zeros(0, np.float32), 16000)
        print(f"  wrote {output} ({sum(map(len, audio)) / 16000:.2f} s, 16 kHz)")

    print("\n2) speech -> text (output_modality='text')")
    print_segments(pipe(speech_prompt, output_modality="text", **generation))

    print("\n3) text + speech -> anything (output_modality='arbitrary')")
    mixed = [{"type": "text", "text": "Answer:"}, *speech_prompt]
    print_segments(pipe(mixed, output_modality="arbitrary", speaker_id=args.speaker_id, **generation))

    if args.repo is None:
        print(
            "\nThe demo model has random weights: its speech is noise and its text gibberish. The same commands run a "
            "converted checkpoint with --repo path/to/spiritlm-expressive; `spiritlm tiny-repo DIR` writes a tiny "
            "random one to try the Python API on (README, Usage)."
        )
    print(f"Done in {time.perf_counter() - start:.1f} s.")
    return 0


def add_parser(commands) -> None:
    demo = commands.add_parser(
        "demo",
        help="try everything offline on a tiny random model: speech -> speech, speech -> text",
        description=(
            "Builds a tiny random-weight SPIRIT LM (expressive) checkpoint once in the cache folder, tokenizes a "
            "bundled spoken question (espeak-ng), generates a spoken continuation (written to --output) and text, "
            "and prints every segment. No download, about a minute on a laptop CPU. The outputs are noise and "
            "gibberish (random weights): the demo shows the data path, not model quality."
        ),
    )
    demo.add_argument(
        "-o", "--output", default="out.wav", help="WAV file for the generated speech (default: %(default)s)"
    )
    demo.add_argument(
        "--cache-dir",
        default=str(default_cache_dir()),
        help="where the tiny checkpoint is kept (default: %(default)s)",
    )
    demo.add_argument(
        "--no-cache", action="store_true", help="build the tiny checkpoint in a temporary folder, removed at the end"
    )
    demo.add_argument("--repo", help="run the demo on this converted checkpoint instead of the tiny random one")
    demo.add_argument(
        "--max-new-tokens", type=int, default=100, help="tokens to generate per step (default: %(default)s)"
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed of the sampling (default: %(default)s)")
    demo.add_argument("--speaker-id", type=int, default=2, help="vocoder speaker (default: %(default)s)")
    demo.add_argument("--stream", action="store_true", help="stream the spoken answer: audio written while generating")
    add_device_argument(demo)
    demo.set_defaults(handler=run_demo)
