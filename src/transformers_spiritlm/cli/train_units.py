"""`spiritlm train-units`: k-means speech units over one layer of a HuBERT checkpoint -> a speech tokenizer repo."""

import sys

from .common import add_device_argument


def run_train_units(args) -> int:
    from ..speech_tokenizer.unit_training import train_units

    result = train_units(
        args.audio_dir,
        args.hubert,
        args.layer,
        args.units,
        args.output,
        seed=args.seed,
        epochs=args.epochs,
        batch_frames=args.batch_frames,
        max_steps=args.max_steps,
        device=args.device,
        resume=args.resume,
        force=args.force,
        progress=not args.quiet,
    )
    for path in result.skipped_files:
        print(f"skipped {path}: shorter than the speech tokenizer's minimum chunk", file=sys.stderr)
    if not result.finished:
        print(
            f"stopped after {result.steps} k-means steps ({result.frames} frames); --resume continues", file=sys.stderr
        )
        return 0
    print(f"wrote a speech tokenizer with {args.units} units to {args.output} ({result.frames} frames clustered)")
    return 0


def add_parser(commands) -> None:
    train_units = commands.add_parser(
        "train-units",
        help="learn speech units for a new language: k-means over HuBERT features -> speech tokenizer repo",
        description=(
            "Clusters the features of one layer of a transformers HuBERT checkpoint, over every audio file in "
            "AUDIO_DIR (searched recursively; any rate, resampled to 16 kHz), into K units with scikit-learn's "
            "mini-batch k-means (extra [train]), and writes a speech tokenizer folder that "
            "SpiritLMSpeechTokenizer.from_pretrained loads (put it in a repo's speech_tokenizer/ folder; give the "
            "language model the same K). Seeded; after every k-means step the run is checkpointed to "
            "<output>.checkpoint.safetensors, and the same command with --resume continues a killed run."
        ),
    )
    train_units.add_argument("audio_dir", help="folder of audio files (wav, flac, ogg, mp3)")
    train_units.add_argument(
        "--hubert", required=True, help="transformers HuBERT checkpoint folder (HuBERT-base layout)"
    )
    train_units.add_argument("--layer", type=int, required=True, help="layer whose output is clustered (1-based)")
    train_units.add_argument("--units", type=int, required=True, help="number of units K (at least 2)")
    train_units.add_argument("-o", "--output", required=True, help="speech tokenizer folder to write")
    train_units.add_argument("--seed", type=int, default=0, help="k-means and file-order seed (default: %(default)s)")
    train_units.add_argument("--epochs", type=int, default=1, help="passes over the audio (default: %(default)s)")
    train_units.add_argument(
        "--batch-frames", type=int, default=10_000, help="HuBERT frames per k-means step (default: %(default)s)"
    )
    train_units.add_argument("--max-steps", type=int, help="stop after this many steps (resume later with --resume)")
    train_units.add_argument("--resume", action="store_true", help="continue the run checkpointed beside --output")
    train_units.add_argument("--force", action="store_true", help="replace --output and discard an earlier checkpoint")
    train_units.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_argument(train_units)
    train_units.set_defaults(handler=run_train_units)
