"""`spiritlm resynthesize`: audio -> speech units -> audio."""

import sys
from pathlib import Path

from .common import add_device_argument, write_wav


def run_resynthesize(args) -> int:
    from transformers import AutoModel

    from ..audio import check_audio_path
    from ..configuration_spiritlm import SPEECH_TOKENIZER_SUBFOLDER
    from ..units import units_to_string
    from ..vocoder import load_vocoder

    check_audio_path(args.input)
    speech_tokenizer = (
        AutoModel.from_pretrained(args.repo, subfolder=SPEECH_TOKENIZER_SUBFOLDER).to(args.device).eval()
    )
    vocoder = load_vocoder(args.repo).to(args.device)
    units = speech_tokenizer.encode_units(args.input)
    string = units_to_string(units)
    if args.through_string:
        audio = vocoder.decode_string(string, speaker_id=args.speaker_id)
    else:
        audio = vocoder.decode_units(**units, speaker_id=args.speaker_id, dur_pred=False)
    write_wav(Path(args.output), audio.cpu().numpy(), vocoder.config.sampling_rate)
    print(string)
    print(f"wrote {args.output} ({len(audio) / vocoder.config.sampling_rate:.2f} s)", file=sys.stderr)
    return 0


def add_parser(commands) -> None:
    resynthesize = commands.add_parser(
        "resynthesize",
        help="audio -> speech units -> audio (hear what the units keep)",
        description=(
            "Encodes an audio file into speech units, prints their SPIRIT LM string, and synthesises speech back from "
            "them with the vocoder. By default the frame-rate units are used as they are (timing kept); "
            "--through-string decodes the deduplicated string with duration prediction, as generated speech is."
        ),
    )
    resynthesize.add_argument("input", help="audio file (wav, flac, ogg, mp3; any rate, mono or stereo)")
    resynthesize.add_argument("--repo", required=True, help="converted SPIRIT LM checkpoint")
    resynthesize.add_argument("-o", "--output", default="resynthesized.wav", help="output WAV (default: %(default)s)")
    resynthesize.add_argument("--speaker-id", type=int, default=2, help="vocoder speaker (default: %(default)s)")
    resynthesize.add_argument("--through-string", action="store_true", help="decode the deduplicated unit string")
    add_device_argument(resynthesize)
    resynthesize.set_defaults(handler=run_resynthesize)
