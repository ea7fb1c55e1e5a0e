"""`spiritlm train-vocoder`: a unit HiFi-GAN with its duration predictor, on audio and a speech tokenizer's units."""

from .common import add_device_argument


def run_train_vocoder(args) -> int:
    from ..audio import find_audio_files
    from ..vocoder_training import train_vocoder

    validation = find_audio_files([args.validation_dir]) if args.validation_dir else ()

    result = train_vocoder(
        args.audio_dir,
        args.speech_tokenizer,
        args.output,
        args.steps,
        batch_size=args.batch_size,
        segment_frames=args.segment_frames,
        learning_rate=args.learning_rate,
        seed=args.seed,
        vocoder_config={"upsample_initial_channel": args.channels},
        discriminator_scale=args.discriminator_scale,
        speaker_folders=args.speaker_folders,
        checkpoint_every=args.checkpoint_every,
        validation_files=validation,
        device=args.device,
        resume=args.resume,
        force=args.force,
        progress=not args.quiet,
    )
    last = ", ".join(f"{name} {values[-1]:.4f}" for name, values in result.losses.items())
    print(f"wrote a vocoder to {args.output} after {args.steps} steps; last losses {last}")
    for step, value in result.validation:
        print(f"step {step}: mel L1 {value:.4f} on {args.validation_dir}")
    return 0


def add_parser(commands) -> None:
    train_vocoder = commands.add_parser(
        "train-vocoder",
        help="train a unit HiFi-GAN vocoder (with duration predictor) for a speech tokenizer's units",
        description=(
            "Trains a SpiritLMVocoder on every audio file in AUDIO_DIR (searched recursively) and the hubert units "
            "the speech tokenizer gives them, with the unit HiFi-GAN recipe (multi-period and multi-scale "
            "discriminators, mel L1, feature matching, least-squares adversarial losses, duration loss), and writes "
            "it with save_pretrained (put it in a repo's vocoder/ folder). Seeded; every --checkpoint-every steps the "
            "run is checkpointed to <output>.checkpoint.safetensors, and the same command with --resume continues a "
            "killed run with the losses of an uninterrupted one."
        ),
    )
    train_vocoder.add_argument("audio_dir", help="folder of audio files (wav, flac, ogg, mp3)")
    train_vocoder.add_argument(
        "--speech-tokenizer", required=True, help="speech tokenizer folder, or a repo with a speech_tokenizer/ folder"
    )
    train_vocoder.add_argument("-o", "--output", required=True, help="vocoder folder to write")
    train_vocoder.add_argument("--steps", type=int, required=True, help="training steps")
    train_vocoder.add_argument("--batch-size", type=int, default=16, help="segments per step (default: %(default)s)")
    train_vocoder.add_argument(
        "--segment-frames", type=int, default=14, help="units per training segment (default: %(default)s)"
    )
    train_vocoder.add_argument("--learning-rate", type=float, default=2e-4, help="AdamW rate (default: %(default)s)")
    train_vocoder.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    train_vocoder.add_argument(
        "--channels", type=int, default=512, help="generator width, upsample_initial_channel (default: %(default)s)"
    )
    train_vocoder.add_argument(
        "--discriminator-scale", type=float, default=1.0, help="discriminator width multiplier (default: %(default)s)"
    )
    train_vocoder.add_argument(
        "--speaker-folders", action="store_true", help="one speaker per first-level sub-folder of AUDIO_DIR"
    )
    train_vocoder.add_argument(
        "--checkpoint-every", type=int, default=100, help="steps between checkpoints (default: %(default)s)"
    )
    train_vocoder.add_argument(
        "--validation-dir", help="held-out audio: its mel L1 is printed for each checkpoint and the end"
    )
    train_vocoder.add_argument("--resume", action="store_true", help="continue the run checkpointed beside --output")
    train_vocoder.add_argument(
        "--force", action="store_true", help="replace --output and discard an earlier checkpoint"
    )
    train_vocoder.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_argument(train_vocoder)
    train_vocoder.set_defaults(handler=run_train_vocoder)
