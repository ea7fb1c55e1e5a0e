"""`spiritlm generate`: continue a prompt of text, audio and unit segments with text and/or speech."""

import argparse
from pathlib import Path

from ..audio import check_audio_path
from ..units import string_to_units
from .common import add_device_argument, describe_segment, load_pipeline, write_wav


def run_generate(args) -> int:
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
    pipe = load_pipeline(args.repo, args.device)
    kwargs = {"max_new_tokens": args.max_new_tokens, "do_sample": not args.greedy, "speaker_id": args.speaker_id}
    for name in ("seed", "temperature", "top_p"):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    result = pipe(list(args.segments), output_modality=args.output_modality, return_prompt=True, **kwargs)
    if args.print_prompt:
        print(f"prompt: {result['prompt']}")
    output = Path(args.output)
    speech_index = 0
    for segment in result["segments"]:
        print(describe_segment(segment))
        if "audio" in segment:
            speech_index += 1
            path = output if speech_index == 1 else output.with_name(f"{output.stem}-{speech_index}{output.suffix}")
            write_wav(path, segment["audio"], segment["sampling_rate"])
            print(f"  -> {path}")
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
        choices=("text", "speech", "arbitrary"),
        help="what to generate; 'arbitrary' lets the model switch (default: %(default)s)",
    )
    generate.add_argument(
        "-o", "--output", default="generated.wav", help="WAV file for speech output (default: %(default)s)"
    )
    generate.add_argument("--max-new-tokens", type=int, default=200, help="tokens to generate (default: %(default)s)")
    generate.add_argument("--greedy", action="store_true", help="pick the most likely token instead of sampling")
    generate.add_argument("--temperature", type=float, help="sampling temperature")
    generate.add_argument("--top-p", type=float, help="nucleus sampling threshold")
    generate.add_argument("--seed", type=int, help="random seed, for reproducible sampling")
    generate.add_argument("--speaker-id", type=int, default=2, help="vocoder speaker (default: %(default)s)")
    generate.add_argument("--print-prompt", action="store_true", help="print the prompt string given to the model")
    add_device_argument(generate)
    generate.set_defaults(handler=run_generate, segments=[])
