"""The `spiritlm` command line: demo | tiny-repo | tokenize | resynthesize | generate | convert | eval | serve | init |
train-units | train-vocoder | export-gguf.

One module per subcommand, each a thin layer over the library with an `add_parser(commands)` that registers it.
"""

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence

from .. import __version__, register_auto_classes
from ..extras import MissingExtraError
from . import (
    convert,
    demo,
    eval,
    export_gguf,
    generate,
    init,
    resynthesize,
    serve,
    tiny_repo,
    tokenize,
    train_units,
    train_vocoder,
)
from .common import check_device, check_repo, default_cache_dir, default_device, set_verbosity, write_wav
from .demo import DEMO_PROMPT_TEXT, DEMO_PROMPT_WAV
from .tokenize import AUDIO_EXTENSIONS


__all__ = [
    "AUDIO_EXTENSIONS",
    "DEMO_PROMPT_TEXT",
    "DEMO_PROMPT_WAV",
    "build_parser",
    "default_cache_dir",
    "default_device",
    "main",
    "write_wav",
]

# Library functions that lived here before the command line became parsing and printing only.
_MOVED = {
    "find_audio_files": "transformers_spiritlm.audio",
    "tokenize_files": "transformers_spiritlm.speech_tokenizer.files",
    "write_jsonl": "transformers_spiritlm.speech_tokenizer.files",
}


def __getattr__(name: str):
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"transformers_spiritlm.cli.{name} moved to {_MOVED[name]}.{name}; import it from there",
        FutureWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(_MOVED[name]), name)


SUBCOMMANDS = (
    demo,
    tiny_repo,
    tokenize,
    resynthesize,
    generate,
    convert,
    eval,
    serve,
    init,
    train_units,
    train_vocoder,
    export_gguf,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spiritlm",
        description=(
            "SPIRIT LM for Hugging Face Transformers: a language model that reads and writes both text and speech. "
            "Start with `spiritlm demo` (offline, tiny random model); the other commands take a converted "
            "checkpoint folder or Hub repo (--repo), made from the official weights with `spiritlm convert`."
        ),
    )
    parser.add_argument("--version", action="version", version=f"transformers-spiritlm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(commands)
    for name, subparser in commands.choices.items():
        if name != "convert":  # the conversion script's own parser takes every argument
            subparser.add_argument(
                "--verbose", action="store_true", help="show transformers' warnings and weight-loading progress bars"
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `spiritlm` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["convert"]:
        # Everything after `convert`, --help included, belongs to the conversion script's own parser.
        register_auto_classes()
        return convert.run_convert(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        # Checked before any subcommand loads a model, --repo before torch loads: bad input fails at once.
        if getattr(args, "repo", None) is not None:
            check_repo(args.repo)
        if "device" in args:
            args.device = args.device or default_device()
            check_device(args.device)
        register_auto_classes()
        set_verbosity(args.verbose)
        return args.handler(args)
    # Bad input (files, repos, values) and a missing extra; bugs keep their traceback.
    except (OSError, ValueError, MissingExtraError) as error:
        print(f"spiritlm {args.command}: error: {error}", file=sys.stderr)
        return 2
