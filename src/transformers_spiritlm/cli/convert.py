"""`spiritlm convert`: every argument goes to the conversion script's own parser."""

import argparse


def run_convert(argv: list[str]) -> int:
    try:
        from ..conversion.convert_spiritlm_to_hf import main as convert_main
    except ImportError as error:
        raise SystemExit(f"spiritlm convert: the conversion script is not available ({error})") from None
    status = convert_main(argv)
    return status if isinstance(status, int) else 0


def add_parser(commands) -> None:
    convert = commands.add_parser(
        "convert",
        help="official checkpoints -> converted Hugging Face repo (run `spiritlm convert --help`)",
        add_help=False,
        description="Converts the official SPIRIT LM checkpoints; all arguments go to the conversion script.",
    )
    convert.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the conversion script")
