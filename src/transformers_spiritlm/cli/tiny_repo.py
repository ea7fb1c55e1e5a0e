"""`spiritlm tiny-repo`: write a tiny random-weight converted repo, to try the API without the official weights."""

import os
import shutil
import tempfile
from pathlib import Path


def run_tiny_repo(args) -> int:
    from ..testing import build_tiny_repo

    output = Path(args.output_dir)
    if output.exists() and not args.force:
        raise FileExistsError(f"{output} already exists; pass --force to replace it")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    try:
        build_tiny_repo(staging, variant=args.variant, seed=args.seed)
        if output.exists():
            shutil.rmtree(output) if output.is_dir() else output.unlink()
        os.replace(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote a tiny random-weight SPIRIT LM ({args.variant}) to {output}")
    return 0


def add_parser(commands) -> None:
    tiny_repo = commands.add_parser(
        "tiny-repo",
        help="write a tiny random-weight converted repo (no download) to try the API and the other commands",
        description=(
            "Writes a complete converted SPIRIT LM repo (language model, tokenizer, processor, speech tokenizer, "
            "vocoder; the layout of `spiritlm convert`) with tiny random weights to OUTPUT_DIR, in a few seconds and "
            "without any download. Every --repo and from_pretrained(...) example runs on it; its outputs are noise "
            "and gibberish. The same as `transformers_spiritlm.testing.build_tiny_repo(OUTPUT_DIR)`."
        ),
    )
    tiny_repo.add_argument("output_dir", help="folder to create (refused if it exists, unless --force)")
    tiny_repo.add_argument(
        "--variant", choices=("base", "expressive"), default="expressive", help="(default: %(default)s)"
    )
    tiny_repo.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: %(default)s)")
    tiny_repo.add_argument("--force", action="store_true", help="replace OUTPUT_DIR if it exists")
    tiny_repo.set_defaults(handler=run_tiny_repo)
