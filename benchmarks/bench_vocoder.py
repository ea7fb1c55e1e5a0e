"""Vocoder throughput: seconds of 16 kHz audio generated per wall-clock second, ours vs the official code.

Both run full-size random weights (512 initial channels, resblock kernels 3/7/11, 128-dim embeddings) from the same
official-format checkpoint written by `transformers_spiritlm.testing.official_vocoder`; ours is its conversion. The
official `HifiGANVocoder` is loaded straight from its source file (it needs only torch and numpy), so both run in
this process on the same device.

    python benchmarks/bench_vocoder.py --variant expressive --seconds 10 [--official-src /root/official-src]
"""

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

import torch

from transformers_spiritlm.conversion.convert_vocoder import load_official_vocoder
from transformers_spiritlm.testing.official_vocoder import write_official_vocoder


FULL_SIZE = {
    "upsample_initial_channel": 512,
    "embedding_dim": 128,
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
}


def _time(function, repeats: int) -> tuple[float, torch.Tensor]:
    output = function()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        output = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats, output


def _official_vocoder(official_src: Path, checkpoint_dir: Path, device: str):
    path = official_src / "spiritlm" / "speech_tokenizer" / "hifigan" / "hifigan_vocoder.py"
    spec = importlib.util.spec_from_file_location("official_hifigan_vocoder", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.HifiGANVocoder(checkpoint_dir / "generator.pt", default_speaker=2, default_style=8).to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=("base", "expressive"), default="expressive")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length per sequence")
    parser.add_argument("--batch-size", type=int, default=4, help="sequences in the batched run of ours")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--official-src", type=Path, help="official spiritlm checkout, to time its vocoder too")
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    num_units = int(args.seconds * 25)
    hubert = torch.randint(0, 501, (num_units,), generator=generator)
    pitch = torch.randint(0, 64, (-(-num_units // 2),), generator=generator)
    style = torch.randint(0, 100, (-(-num_units // 25),), generator=generator)
    units = {"hubert": hubert} if args.variant == "base" else {"hubert": hubert, "pitch": pitch, "style": style}

    with torch.inference_mode(), tempfile.TemporaryDirectory() as tmp:
        checkpoint_dir = write_official_vocoder(Path(tmp) / args.variant, args.variant, **FULL_SIZE)
        ours = load_official_vocoder(checkpoint_dir).to(args.device)
        parameters = sum(parameter.numel() for parameter in ours.parameters()) / 1e6
        print(f"{args.variant} vocoder, {parameters:.1f} M parameters, {args.seconds:g} s of units, {args.device}")

        def run_ours():
            return ours(**units, dur_pred=False)

        seconds, waveform = _time(run_ours, args.repeats)
        audio = waveform.shape[-1] / ours.config.sampling_rate
        print(f"ours            {audio / seconds:8.1f} s audio / s  ({seconds:.3f} s per {audio:g} s)")

        batch = {key: [value] * args.batch_size for key, value in units.items()}
        seconds, _ = _time(lambda: ours(**batch, dur_pred=False), args.repeats)
        print(f"ours, batch {args.batch_size:<3} {audio * args.batch_size / seconds:8.1f} s audio / s")

        if args.official_src is not None:
            official = _official_vocoder(args.official_src, checkpoint_dir, args.device)

            def run_official():
                return official(
                    code=units["hubert"].tolist(),
                    f0_code=units["pitch"].tolist() if "pitch" in units else None,
                    style_code=units["style"].tolist() if "style" in units else None,
                    speaker_id=2,
                    dur_pred=False,
                    not_dedup_code=True,
                )

            seconds, official_waveform = _time(run_official, args.repeats)
            print(f"official        {audio / seconds:8.1f} s audio / s  ({seconds:.3f} s per {audio:g} s)")
            difference = (official_waveform.float().cpu() - waveform.cpu()).abs().max().item()
            print(f"max |ours - official| = {difference:.2e}")


if __name__ == "__main__":
    main()
