"""Speech tokenizer throughput, ours vs the official code: seconds of audio tokenized per second, full-size weights.

Both sides tokenize the same 8 espeak-ng clips (~41 s of 22.05 kHz speech, resampled to 16 kHz by each side) from
their files, with random full-size weights written in the official file formats by our `tools/official_formats/official_*.py`
writers (mHuBERT-base 25 Hz + its 500-unit quantizer; for EXPRESSIVE a wav2vec2-base-sized style encoder and the
F0 VQ-VAE) and the real FCPE weights of the torchfcpe wheel; ours converts them with `conversion/`. The official
`SpiritLMTokenizer` runs in its own environment (`--official-python`, see tools/official_reference/) in a
child process that stays loaded; the variants run interleaved (official, ours float32, ours bfloat16, then rotated),
2 torch threads on both sides, and medians are reported with ratios taken round by round.

The table also gives the achieved GFLOP/s (the FLOPs of one pass, counted by `torch.utils.flop_counter` on our
float32 model, over the median time) beside the matmul peak measured in the same run, and the agreement of the
bfloat16 units with the float32 ones. Ours in float32 must give the official units; the script checks it.

    python benchmarks/bench_speech_tokenizer.py --official-src SRC --official-python VENV/bin/python [--variant expressive] [--repeats 3] [--no-components]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools" / "official_formats"))  # our torch-only official-format writers
OFFICIAL_REFERENCE = REPO / "tools" / "official_reference"
THREADS = 2

# ~41 s of espeak-ng speech at its default rate, 3.9 s to 7.9 s per clip.
SENTENCES = [
    "Speech tokenizers turn a waveform into a short sequence of discrete units.",
    "The weather was cold, so we stayed inside and read old letters by the fire.",
    "Please call Stella and ask her to bring these things with her from the store: six spoons of fresh snow peas, "
    "five thick slabs of blue cheese.",
    "A language model trained on text and speech can continue a sentence in either modality.",
    "In the end, every benchmark measures one machine on one day, and the ratios matter more than the numbers.",
    "Because the arithmetic does not care what the numbers mean, only how many there are.",
    "The train left the station at seven, and by noon it had crossed the mountains and reached the sea.",
    "Thank you for listening to these sentences, which were chosen only for their length.",
]
# wav2vec2-base (what the official style encoder fine-tunes), as an official `Wav2Vec2ForSequenceClassification`.
FULL_STYLE = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "conv_dim": [512] * 7,
    "classifier_proj_size": 256,
}
# The official F0 VQ-VAE: 128 channels, 4 residual blocks per strided convolution, 64 codes of width 128.
FULL_VQVAE = {"width": 128, "depth": 4, "emb_width": 128}
STREAMS = ("hubert", "pitch", "style")
ANSWER = "@@answer "


def write_clips(directory: Path) -> list[Path]:
    """The benchmark clips, spoken by espeak-ng (22.05 kHz, 16-bit) into `directory`."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is needed to speak the benchmark clips: apt-get install espeak-ng")
    paths = []
    for index, sentence in enumerate(SENTENCES):
        paths.append(directory / f"clip{index}.wav")
        subprocess.run(["espeak-ng", "-w", str(paths[-1]), sentence], check=True)
    return paths


def write_official_checkpoints(directory: Path, variant: str) -> Path:
    """Full-size random official-format checkpoints under `directory/speech_tokenizer/`."""
    from official_hubert import FULL_HUBERT, write_official_hubert_checkpoints
    from official_pitch import tiny_official_vqvae_f0_config, write_official_vqvae_f0
    from official_style import tiny_official_style_config, write_official_style_encoder

    write_official_hubert_checkpoints(directory, **FULL_HUBERT)
    if variant == "expressive":
        speech = directory / "speech_tokenizer"
        write_official_vqvae_f0(speech / "vqvae_f0_quantizer", config=tiny_official_vqvae_f0_config(**FULL_VQVAE))
        write_official_style_encoder(
            speech / "style_encoder_w2v2", config={**tiny_official_style_config(), **FULL_STYLE}
        )
    return directory


# ---------------------------------------------------------------------------------------------- official side


def official_worker(official_src: str, checkpoints: str, variant: str, clip_dir: str) -> None:
    """Runs in the official environment: loads the official tokenizer once, then answers commands from stdin, one
    JSON line each: `run` (tokenize every clip from its file), `components` (each model alone on the loaded
    16 kHz audio), `flops`."""
    torch.set_num_threads(THREADS)
    sys.path.insert(0, str(OFFICIAL_REFERENCE))
    import official_env

    official_env.setup(official_src, checkpoints_dir=checkpoints)
    from spiritlm.speech_tokenizer import SpiritLMTokenizer, spiritlm_hubert
    from spiritlm.speech_tokenizer.f0 import spiritlm_expressive_f0
    from spiritlm.speech_tokenizer.style_encoder import spiritlm_expressive_style_encoder_w2v2

    models = {"hubert": spiritlm_hubert()}
    if variant == "expressive":
        models.update(pitch=spiritlm_expressive_f0(), style=spiritlm_expressive_style_encoder_w2v2())
    tokenizer = SpiritLMTokenizer(
        hubert_model=models["hubert"], pitch_model=models.get("pitch"), style_model=models.get("style")
    )
    clips = sorted(Path(clip_dir).glob("clip*.wav"))
    audio = [tokenizer.load_audio(str(clip)).squeeze(0) for clip in clips]

    def reply(answer: dict) -> None:
        # The official code prints to stdout too: answers are the lines that start with the marker.
        print(ANSWER + json.dumps(answer), flush=True)

    def tokenize():
        return [tokenizer.encode_units(str(clip)) for clip in clips]

    reply({"ready": True})
    for line in sys.stdin:
        command = line.strip()
        if command == "run":
            wall, cpu, units = timed(tokenize)
            units = [{key: [int(unit) for unit in item[key].split()] for key in models} for item in units]
            reply({"wall": wall, "cpu": cpu, "units": units})
        elif command == "components":
            times = {name: timed(lambda m=model: [m(wave) for wave in audio])[0] for name, model in models.items()}
            reply(times)
        elif command == "flops":
            reply({name: count_flops(lambda m=model: [m(wave) for wave in audio]) for name, model in models.items()})
        elif command == "quit":
            return


class OfficialChild:
    """The official tokenizer loaded in a child process of `python` (the official environment)."""

    def __init__(self, python: str, official_src: str, checkpoints: Path, variant: str, clip_dir: Path):
        command = [python, __file__, "--official-worker", official_src, str(checkpoints), variant, str(clip_dir)]
        env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self._read()

    def _read(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(ANSWER):
                return json.loads(line[len(ANSWER) :])
        raise RuntimeError(f"the official worker stopped (exit status {self.process.wait()})")

    def ask(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
            self.process.wait(timeout=60)


def timed(function):
    """`(wall seconds, CPU seconds of this process, result)` of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def count_flops(function) -> int:
    """FLOPs of the matrix products and convolutions that `function` runs (attention scores on CPU excepted: torch's
    formulas do not cover its CPU kernel, and they are < 1 % here), by torch's own per-operator formulas.
    `FlopCounterMode` itself cannot be used: its module tracker fails on weight-norm parametrizations under
    `torch.inference_mode`."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Counter(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            formula = flop_registry.get(func._overloadpacket)
            # Under inference mode composite ops (linear, conv1d, ...) arrive whole: count what they decompose to.
            if formula is None and torch._C._dispatch_has_kernel_for_dispatch_key(
                func.name(), "CompositeImplicitAutograd"
            ):
                with self:
                    out = func.decompose(*args, **kwargs)
                if out is not NotImplemented:
                    return out
            out = func(*args, **kwargs)
            if formula is not None:
                Counter.total += formula(*args, **kwargs, out_val=out)
            return out

    with Counter():
        function()
    return Counter.total


def raise_peaks(common, peaks: dict[torch.dtype, float]) -> str:
    """Measures the matmul peaks again and keeps the higher figure of each dtype: a peak measured while another
    process held a core understates the machine. Returns them as text for the table captions."""
    for dtype, gflops in common.matmul_peaks(tuple(peaks)).items():
        peaks[dtype] = max(peaks[dtype], gflops)
    return ", ".join(f"{common.dtype_name(dtype)} {gflops:.0f}" for dtype, gflops in peaks.items())


# ---------------------------------------------------------------------------------------------- our side


def load_ours(converted: Path, dtype: torch.dtype):
    from transformers_spiritlm import SpiritLMSpeechTokenizer

    return SpiritLMSpeechTokenizer.from_pretrained(converted, dtype=dtype).eval()


def our_components(model, waveforms: list[torch.Tensor]) -> dict[str, callable]:
    """One callable per model of ours, each over all waveforms in the padded batches `encode_units` uses."""
    from transformers_spiritlm.speech_tokenizer.hubert import hubert_layer_features

    batches = []
    for batch in model._batches([len(wave) for wave in waveforms], max_batch_seconds=200):
        values = torch.nn.utils.rnn.pad_sequence([waveforms[index] for index in batch], batch_first=True)
        lengths = torch.tensor([len(waveforms[index]) for index in batch])
        batches.append((values, lengths))

    @torch.inference_mode()
    def hubert():
        for values, lengths in batches:
            features, _ = hubert_layer_features(model.hubert, values, lengths)
            model.quantizer(features)

    @torch.inference_mode()
    def pitch():
        for values, lengths in batches:
            model.pitch_encoder(values, lengths)

    @torch.inference_mode()
    def style():
        for values, lengths in batches:
            mask = torch.arange(values.shape[1]) < lengths[:, None]
            model.style_encoder(values, attention_mask=mask.long())

    components = {"hubert": hubert}
    if model.pitch_encoder is not None:
        components.update(pitch=pitch, style=style)
    return components


@torch.inference_mode()
def frame_units(model, waveforms: list[torch.Tensor]) -> list[torch.Tensor]:
    """HuBERT quantizer argmax of every frame of each waveform, before the official blank filling."""
    from transformers_spiritlm.speech_tokenizer.hubert import hubert_layer_features

    units = []
    for waveform in waveforms:
        features, _ = hubert_layer_features(model.hubert, waveform[None], torch.tensor([len(waveform)]))
        units.append(model.quantizer(features)[0].float().argmax(-1))
    return units


def agreement(units: list[dict], reference: list[dict], stream: str) -> float:
    """Share of positions where `units` equal `reference` (over all clips; a length difference counts as misses)."""
    same = total = 0
    for item, expected in zip(units, reference):
        a, b = np.array(item[stream]), np.array(expected[stream])
        length = min(len(a), len(b))
        same += int((a[:length] == b[:length]).sum())
        total += max(len(a), len(b))
    return same / max(total, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=("base", "expressive"), default="expressive")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (median reported); one warm-up first")
    parser.add_argument("--no-components", action="store_true", help="skip the per-model breakdown")
    parser.add_argument("--no-bf16", action="store_true", help="time ours in float32 only")
    parser.add_argument("--official-src", help="a checkout of facebookresearch/spiritlm")
    parser.add_argument("--official-python", help="VENV/bin/python of tools/official_reference/setup.sh VENV")
    parser.add_argument("--work-dir", type=Path, help="keep clips and checkpoints here (reused when present)")
    parser.add_argument("--official-worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.official_worker:
        official_worker(*args.official_worker)
        return 0
    if not (args.official_src and args.official_python):
        parser.error("the following arguments are required: --official-src, --official-python")

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import common
    from official_pitch import FCPE_DOWNLOAD_COMMAND, find_fcpe_checkpoint

    from transformers_spiritlm.audio import prepare_audio
    from transformers_spiritlm.conversion.convert_speech_tokenizer import convert_speech_tokenizer

    common.set_threads(THREADS)
    temporary = None
    if args.work_dir is None:
        temporary = tempfile.TemporaryDirectory()
        args.work_dir = Path(temporary.name)
    work = args.work_dir / args.variant
    clip_dir, checkpoints, converted = work / "clips", work / "checkpoints", work / "converted"
    if not converted.exists():
        for folder in (clip_dir, checkpoints):
            folder.mkdir(parents=True, exist_ok=True)
        write_clips(clip_dir)
        write_official_checkpoints(checkpoints, args.variant)
        fcpe = None
        if args.variant == "expressive":
            fcpe = find_fcpe_checkpoint(download=True)
            if fcpe is None:
                raise SystemExit(f"the real FCPE weights are needed: {FCPE_DOWNLOAD_COMMAND}")
        convert_speech_tokenizer(checkpoints, converted, variant=args.variant, fcpe_checkpoint=fcpe)
    converted = converted / "speech_tokenizer"
    clips = sorted(clip_dir.glob("clip*.wav"))
    waveforms = prepare_audio(clips, None, 16000)
    audio_seconds = sum(len(wave) for wave in waveforms) / 16000

    peaks = common.matmul_peaks()
    common.print_header(
        f"speech tokenizer ({args.variant.upper()}), ours vs official",
        peaks,
        notes=[
            f"{len(clips)} espeak-ng clips, {audio_seconds:.1f} s of speech at 22.05 kHz, tokenized from their files",
            "full-size random weights (mHuBERT-base 25 Hz"
            + (", wav2vec2-base style encoder, F0 VQ-VAE; real FCPE)" if args.variant == "expressive" else ")"),
        ],
    )

    dtypes = (
        {"ours fp32": torch.float32} if args.no_bf16 else {"ours fp32": torch.float32, "ours bf16": torch.bfloat16}
    )
    ours = {name: load_ours(converted, dtype) for name, dtype in dtypes.items()}
    official = OfficialChild(args.official_python, args.official_src, checkpoints, args.variant, clip_dir)
    try:
        # "one clip at a time" calls encode_units per file, as the official loop does: no padded batches.
        one_by_one = "ours fp32, one clip at a time"
        results: dict[str, list[tuple[float, float]]] = {
            "official": [], **{name: [] for name in ours}, one_by_one: []
        }  # fmt: skip
        units: dict[str, list[dict]] = {}

        def run(name: str) -> tuple[float, float]:
            if name == "official":
                answer = official.ask("run")
                units[name] = answer["units"]
                return answer["wall"], answer["cpu"]
            if name == one_by_one:
                wall, cpu, units[name] = timed(lambda: [ours["ours fp32"].encode_units(clip) for clip in clips])
            else:
                wall, cpu, units[name] = timed(lambda: ours[name].encode_units(clips))
            return wall, cpu

        names = list(results)
        for name in names:  # warm-up
            run(name)
        for round_index in range(args.repeats):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                results[name].append(run(name))

        flops = count_flops(lambda: ours["ours fp32"].encode_units(clips))
        official_flops = sum(official.ask("flops").values())
        peak_text = raise_peaks(common, peaks)
        walls = {name: [wall for wall, _ in values] for name, values in results.items()}
        cpus = {name: [cpu for _, cpu in values] for name, values in results.items()}
        rows = []
        for name in names:
            wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
            peak = peaks[torch.bfloat16 if "bf16" in name else torch.float32]
            count = official_flops if name == "official" else flops
            rows.append(
                [
                    name,
                    f"{audio_seconds / wall:.2f}",
                    f"{audio_seconds / cpu:.2f}",
                    f"{1 / common.paired_ratio(walls, name, 'official'):.2f}x",
                    f"{count / wall / 1e9:.0f} of {peak:.0f}",
                ]
            )
        print()
        print(
            f"Whole tokenization ({args.repeats} interleaved rounds, medians; {flops / 1e9:.0f} GFLOP per pass, "
            f"official {official_flops / 1e9:.0f}; peak: the best matmul peak of the run, {peak_text})"
        )
        common.print_table(
            ["variant", "audio s / wall s", "audio s / CPU s", "speed vs official", "GFLOP/s (of peak)"], rows
        )

        print()
        reference = units["official"]
        streams = [stream for stream in STREAMS if stream in reference[0]]
        for name in ("ours fp32", one_by_one):
            exact = all(units[name][i][s] == reference[i][s] for i in range(len(clips)) for s in streams)
            print(f"{name}: units == official units on all clips: {exact}")
        for name in ours:
            if name != "ours fp32":
                figures = ", ".join(
                    f"{stream} {100 * agreement(units[name], units['ours fp32'], stream):.1f} %" for stream in streams
                )
                print(f"{name} units agreeing with fp32: {figures}")
        if "ours bf16" in ours:
            # How sensitive these random weights are: the units of float32 on audio rounded to bfloat16, and the
            # frame-level argmax before blank filling (a blank takes the unit before it, so one changed unit
            # changes a whole run of blanks after it).
            exact = ours["ours fp32"]
            rounded = [waveform.bfloat16().float() for waveform in waveforms]
            rounded_units = exact.encode_units(rounded, sampling_rate=16000)
            frames = frame_units(exact, waveforms)
            frames_bf16 = torch.cat(frame_units(ours["ours bf16"], waveforms))
            blank = exact.config.blank_unit
            print(
                "sensitivity of these random weights: float32 on the audio rounded to bfloat16 keeps "
                f"{100 * agreement(rounded_units, units['ours fp32'], 'hubert'):.1f} % of the hubert units; "
                f"{100 * float((torch.cat(frames) == blank).float().mean()):.0f} % of the frames are blank; "
                f"before blank filling bf16 keeps {100 * float((frames_bf16 == torch.cat(frames)).float().mean()):.1f}"
                " % of the frame units"
            )
        sys.stdout.flush()

        if not args.no_components:
            component_rows = []
            timings = {name: our_components(model, waveforms) for name, model in ours.items()}
            per_stream = {stream: {"official": []} for stream in timings["ours fp32"]}
            for stream in per_stream:
                for name in ours:
                    per_stream[stream][name] = []
            flops_by_stream = {stream: count_flops(function) for stream, function in timings["ours fp32"].items()}
            for round_index in range(args.repeats):
                order = ["official", *ours]
                shift = round_index % len(order)
                for name in order[shift:] + order[:shift]:
                    if name == "official":
                        for stream, seconds in official.ask("components").items():
                            per_stream[stream]["official"].append(seconds)
                    else:
                        for stream, function in timings[name].items():
                            per_stream[stream][name].append(timed(function)[0])
            peak_text = raise_peaks(common, peaks)
            labels = {"hubert": "HuBERT + quantizer", "pitch": "FCPE F0 + VQ-VAE", "style": "style encoder"}
            for stream, seconds in per_stream.items():
                for name, values in seconds.items():
                    wall = statistics.median(values)
                    peak = peaks[torch.bfloat16 if "bf16" in name else torch.float32]
                    component_rows.append(
                        [
                            labels[stream],
                            name,
                            f"{audio_seconds / wall:.1f}",
                            f"{1 / common.paired_ratio(seconds, name, 'official'):.2f}x",
                            f"{flops_by_stream[stream] / wall / 1e9:.0f} of {peak:.0f}",
                        ]
                    )
            print()
            print(
                "Each model alone on the loaded 16 kHz audio (medians; GFLOP/s from our fp32 count: "
                + ", ".join(f"{stream} {count / 1e9:.0f} GFLOP" for stream, count in flops_by_stream.items())
                + f"; peak: the best matmul peak of the run, {peak_text})"
            )
            common.print_table(
                ["model", "variant", "audio s / wall s", "speed vs official", "GFLOP/s (of peak)"], component_rows
            )
    finally:
        official.close()
        if temporary is not None:
            temporary.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
