"""A longer unit-vocoder training run than the test's: held-out mel L1 over the steps, and seconds per step.

Speaks the 8 sentences of `bench_speech_tokenizer.py` with espeak-ng (one voice), learns `--units` k-means units on
layer `--layer` of a HuBERT checkpoint (`--hubert`; default: a tiny random one, whose units still follow the
spectrum) from the first 7 clips with `spiritlm train-units`' library function, then trains a vocoder on them
(`train_vocoder`, `--channels` wide, discriminators at `--discriminator-scale`) and measures the log-mel L1 on the
held-out 8th clip at every checkpoint, against the untrained generator of the same seed.

    python benchmarks/bench_vocoder_training.py [--steps 2000] [--checkpoint-every 250] [--channels 128]
        [--discriminator-scale 0.25] [--units 100] [--hubert DIR --layer 6] [--device cpu] [--threads 2]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_speech_tokenizer import write_clips  # noqa: E402
from common import print_header, print_table, set_threads  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--channels", type=int, default=128, help="generator upsample_initial_channel (official 512)")
    parser.add_argument("--discriminator-scale", type=float, default=0.25)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--units", type=int, default=100)
    parser.add_argument("--hubert", help="transformers HuBERT checkpoint (default: a tiny random one)")
    parser.add_argument("--layer", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    set_threads(args.threads)

    from transformers_spiritlm import SpiritLMSpeechTokenizer, SpiritLMVocoder, SpiritLMVocoderConfig
    from transformers_spiritlm.speech_tokenizer.unit_training import train_units
    from transformers_spiritlm.testing.speech_tokenizer import write_tiny_hubert_checkpoint
    from transformers_spiritlm.vocoder_training import load_unit_audio, mel_l1, train_vocoder

    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        (root / "train").mkdir()
        clips = write_clips(root / "train")
        held_out = clips[-1].rename(root / "held_out.wav")
        hubert = args.hubert or write_tiny_hubert_checkpoint(root / "hubert")
        train_units(root / "train", hubert, args.layer, args.units, root / "units", batch_frames=500, progress=False)
        vocoder_config = {"upsample_initial_channel": args.channels}
        torch.manual_seed(0)  # the initial weights of the run
        untrained = SpiritLMVocoder(SpiritLMVocoderConfig(num_hubert_units=args.units, **vocoder_config))
        items = load_unit_audio([held_out], SpiritLMSpeechTokenizer.from_pretrained(root / "units"))
        before = mel_l1(untrained, items)

        print_header(
            "unit vocoder training (train_vocoder)",
            notes=[
                f"{len(clips) - 1} espeak-ng clips for training, 1 held out; {args.units} units of HuBERT layer "
                f"{args.layer} ({args.hubert or 'tiny random HuBERT'})",
                f"generator {args.channels} channels, discriminators x{args.discriminator_scale}, batch "
                f"{args.batch_size} x 14 units, AdamW {args.learning_rate}, device {args.device}",
            ],
        )
        wall, cpu = time.perf_counter(), time.process_time()
        result = train_vocoder(
            root / "train",
            root / "units",
            root / "vocoder",
            args.steps,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            vocoder_config=vocoder_config,
            discriminator_scale=args.discriminator_scale,
            checkpoint_every=args.checkpoint_every,
            validation_files=[held_out],
            device=args.device,
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rows = [[0, f"{before:.3f}", "1.00"]]
    rows += [[step, f"{value:.3f}", f"{before / value:.2f}"] for step, value in result.validation]
    print_table(["step", "held-out mel L1", "lower by"], rows)
    print(f"{wall / args.steps:.3f} s per step wall, {cpu / args.steps:.3f} s CPU (validation included)")


if __name__ == "__main__":
    main()
