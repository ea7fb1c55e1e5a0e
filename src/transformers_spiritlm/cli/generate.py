"""`spiritlm generate`: continue a prompt of text, audio and unit segments with text and/or speech."""

import argparse
import struct
import time
from pathlib import Path

import numpy as np

from ..modalities import OUTPUT_MODALITIES
from ..units import string_to_units
from .common import add_device_argument, add_gguf_argument, describe_segment, load_pipeline, write_wav


class ProgressiveWav:
    """
    A 16-bit mono WAV file written chunk by chunk, valid and playable at every moment: each `write` appends the
    samples, then rewrites the two sizes of the header. Refuses an existing file unless `force`.
    """

    def __init__(self, path: Path, sampling_rate: int, force: bool = False):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.file = open(path, "wb" if force else "xb")
        except FileExistsError:
            raise FileExistsError(f"{path} exists; choose another --output or pass --force to overwrite it") from None
        self.path, self.num_bytes = path, 0
        fmt = struct.pack("<HHIIHH", 1, 1, sampling_rate, sampling_rate * 2, 2, 16)
        self.file.write(b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + struct.pack("<I", 16) + fmt)
        self.file.write(b"data" + struct.pack("<I", 0))
        self.file.flush()

    def write(self, audio: np.ndarray) -> None:
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).round().astype("<i2").tobytes()
        self.file.write(pcm)
        self.num_bytes += len(pcm)
        self.file.seek(4)
        self.file.write(struct.pack("<I", 36 + self.num_bytes))
        self.file.seek(40)
        self.file.write(struct.pack("<I", self.num_bytes))
        self.file.seek(0, 2)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _speech_path(output: Path, index: int) -> Path:
    return output if index == 1 else output.with_name(f"{output.stem}-{index}{output.suffix}")


def _refuse_existing(path: Path) -> None:
    if path.exists():
        raise FileExistsError(f"{path} exists; choose another --output or pass --force to overwrite it")


def _no_speech(output_modality: str, output: Path) -> None:
    if output_modality != "text":
        print(f"no speech came: nothing written to {output}")


def stream_to_files(pipe, segments: list[dict], output_modality: str, output: Path, force: bool, **kwargs) -> int:
    """`--stream`: prints text as it comes and writes speech to WAV files (`output`, then OUTPUT-2.wav, ...) that
    grow while the model generates; prints the time to first audio."""
    start = time.perf_counter()
    wav, speech_index, previous, first_audio, seconds = None, 0, None, None, 0.0
    try:
        for chunk in pipe.stream(segments, output_modality=output_modality, **kwargs):
            if chunk["type"] == "text":
                print(("text:   " if previous != "text" else "") + chunk["text"], end="", flush=True)
            elif not len(chunk.get("audio", ())):
                # Too short to keep, or without the units the vocoder needs: units but no audio.
                print(("\n" if previous == "text" else "") + f"speech: no audio from units {chunk['units']}")
            else:
                if previous != "speech" or wav is None:
                    if wav is not None:
                        wav.close()
                    speech_index += 1
                    wav = ProgressiveWav(_speech_path(output, speech_index), chunk["sampling_rate"], force)
                    print(("\n" if previous == "text" else "") + f"speech: -> {wav.path}", flush=True)
                if first_audio is None:
                    first_audio = time.perf_counter() - start
                    print(f"  first audio after {first_audio:.2f} s", flush=True)
                wav.write(chunk["audio"])
                seconds += len(chunk["audio"]) / chunk["sampling_rate"]
            previous = chunk["type"] if "audio" in chunk or chunk["type"] == "text" else None
    finally:
        if wav is not None:
            wav.close()
    if previous == "text":
        print()
    total = time.perf_counter() - start
    if first_audio is None:
        _no_speech(output_modality, output)
    else:
        print(f"time to first audio: {first_audio:.2f} s; {seconds:.2f} s of audio in {total:.2f} s")
    return 0


def run_generate(args) -> int:
    from ..audio import check_audio_path

    if not args.segments:
        raise ValueError("give the prompt with --text, --speech and/or --units (in order)")
    # The processor's own checks, before the model loads.
    for index, segment in enumerate(args.segments):
        try:
            if "audio" in segment:
                check_audio_path(segment["audio"])
            elif "units" in segment:
                string_to_units(segment["units"], strict=True)
        except (OSError, ValueError) as error:
            raise type(error)(f"prompt 0, segment {index}: {error}") from None
    if not args.force and args.output_modality != "text":
        _refuse_existing(Path(args.output))
    pipe = load_pipeline(args.repo, args.device, args.gguf)
    kwargs = {"max_new_tokens": args.max_new_tokens, "do_sample": not args.greedy, "speaker_id": args.speaker_id}
    for name in ("seed", "temperature", "top_p"):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    if args.stream:
        return stream_to_files(
            pipe, list(args.segments), args.output_modality, Path(args.output), args.force, **kwargs
        )
    result = pipe(list(args.segments), output_modality=args.output_modality, return_prompt=True, **kwargs)
    if args.print_prompt:
        print(f"prompt: {result['prompt']}")
    output = Path(args.output)
    speech_index = 0
    for segment in result["segments"]:
        print(describe_segment(segment))
        if len(segment.get("audio", ())):
            speech_index += 1
            path = _speech_path(output, speech_index)
            if not args.force:
                _refuse_existing(path)
            write_wav(path, segment["audio"], segment["sampling_rate"])
            print(f"  -> {path}")
    if not speech_index:
        _no_speech(args.output_modality, output)
    return 0


class _AppendSegment(argparse.Action):
    """Appends `{"type": ..., ...}` to `namespace.segments`, keeping the order of --text / --speech / --units."""

    def __call__(self, parser, namespace, value, option_string=None):
        segments = list(getattr(namespace, "segments", None) or [])
        if option_string == "--text":
            segments.append({"type": "text", "text": value})
        elif option_string == "--speech":
            segments.append({"type": "speech", "audio": Path(value)})
        else:
            segments.append({"type": "speech", "units": value})
        namespace.segments = segments


def add_parser(commands) -> None:
    generate = commands.add_parser(
        "generate",
        help="continue a text/speech prompt with text and/or speech",
        description=(
            "Builds a prompt from --text, --speech and --units arguments, in the order given, and lets SPIRIT LM "
            "continue it. Text output is printed; speech output is written to --output (then OUTPUT-2.wav, ...). "
            'Example: spiritlm generate --repo ./spiritlm-expressive --speech question.wav --text " The answer is" '
            "--output-modality speech"
        ),
    )
    generate.add_argument("--repo", required=True, help="converted SPIRIT LM checkpoint")
    generate.add_argument("--text", action=_AppendSegment, dest="segments", metavar="TEXT", help="a text segment")
    generate.add_argument(
        "--speech", action=_AppendSegment, dest="segments", metavar="AUDIO", help="a speech segment (audio file)"
    )
    generate.add_argument(
        "--units", action=_AppendSegment, dest="segments", metavar="UNITS", help="a speech segment as a unit string"
    )
    generate.add_argument(
        "--output-modality",
        default="arbitrary",
        choices=OUTPUT_MODALITIES,
        help="what to generate; 'arbitrary' lets the model switch (default: %(default)s)",
    )
    generate.add_argument(
        "-o",
        "--output",
        default="generated.wav",
        help="WAV file for speech output, written only if speech comes (default: %(default)s)",
    )
    generate.add_argument("--max-new-tokens", type=int, default=200, help="tokens to generate (default: %(default)s)")
    generate.add_argument("--greedy", action="store_true", help="pick the most likely token instead of sampling")
    generate.add_argument("--temperature", type=float, help="sampling temperature")
    generate.add_argument("--top-p", type=float, help="nucleus sampling threshold")
    generate.add_argument("--seed", type=int, help="random seed, for reproducible sampling")
    generate.add_argument("--speaker-id", type=int, default=2, help="vocoder speaker (default: %(default)s)")
    generate.add_argument("--print-prompt", action="store_true", help="print the prompt string given to the model")
    generate.add_argument(
        "--stream",
        action="store_true",
        help="print text and write speech while generating (the WAV is valid at every moment); prints the time to "
        "first audio",
    )
    generate.add_argument("--force", action="store_true", help="overwrite existing output WAV files")
    add_gguf_argument(generate)
    add_device_argument(generate)
    generate.set_defaults(handler=run_generate, segments=[])
