"""`spiritlm serve`: the web page (Gradio, extra `[web]`), on the tiny demo model or a converted repo."""

import os
import signal
import sys
from pathlib import Path

from ..extras import install_hint
from .common import add_device_argument, add_gguf_argument, default_cache_dir, load_pipeline
from .demo import demo_repo


def run_serve(args) -> int:
    if args.concurrency < 1:
        raise ValueError(f"--concurrency must be at least 1, got {args.concurrency}")
    for flag, value in [("--max-upload-mb", args.max_upload_mb), ("--max-audio-seconds", args.max_audio_seconds)]:
        if value <= 0:
            raise ValueError(f"{flag} must be positive, got {value}")
    if args.max_text_chars < 1:
        raise ValueError(f"--max-text-chars must be at least 1, got {args.max_text_chars}")
    # Offline by default: no usage reports to gradio.app.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        from .. import web
    except ModuleNotFoundError as error:
        if not (error.name or "").startswith("gradio"):
            raise
        print(f"spiritlm serve: error: the web page needs the [web] extra: {install_hint('web')}", file=sys.stderr)
        return 2
    repo = args.repo or demo_repo(Path(args.cache_dir))
    print(f"Loading model, processor (with speech tokenizer) and vocoder from {repo} ...")
    description = None
    if args.repo is None:
        description = (
            "This is the tiny random-weight demo model: its speech is noise and its text gibberish. "
            "Serve a converted checkpoint with `spiritlm serve --repo path/to/spiritlm-expressive`."
        )
    app = web.build_app(
        repo if args.gguf is None else load_pipeline(str(repo), args.device, args.gguf),
        device=args.device,
        concurrency_limit=args.concurrency,
        max_upload_mb=args.max_upload_mb,
        max_audio_seconds=args.max_audio_seconds,
        max_text_chars=args.max_text_chars,
        description=description,
    )
    # Stopped by SIGTERM as by Ctrl-C: gradio closes the server, and the answers' temporary files are removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    app.launch(
        server_name=args.host,
        server_port=args.port,
        max_file_size=int(args.max_upload_mb * 2**20),
        show_error=True,
    )
    return 0


def add_parser(commands) -> None:
    serve = commands.add_parser(
        "serve",
        help="a web page to talk to SPIRIT LM (speech or text in, streamed speech and text out)",
        description=(
            "Starts a Gradio web page: record or upload a spoken question and/or type one, and hear the answer as it "
            "is generated. Runs the tiny random-weight demo model (offline; noise and gibberish) unless --repo names "
            f"a converted checkpoint. Needs the [web] extra: {install_hint('web')}."
        ),
    )
    serve.add_argument("--repo", help="converted checkpoint folder or Hub repo (default: the tiny demo model)")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s, this machine only; 0.0.0.0 opens it to the network)",
    )
    serve.add_argument("--port", type=int, default=7860, help="port to listen on (default: %(default)s)")
    serve.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="answers generated at the same time, the others queue (default: %(default)s; raise it on a GPU only)",
    )
    serve.add_argument(
        "--max-upload-mb",
        type=float,
        default=20.0,
        help="largest audio upload or recording accepted, in MB (default: %(default)s)",
    )
    serve.add_argument(
        "--max-audio-seconds",
        type=float,
        default=60.0,
        help="longest spoken question accepted, in seconds (default: %(default)s)",
    )
    serve.add_argument(
        "--max-text-chars",
        type=int,
        default=10_000,
        help="longest written question accepted, in characters (default: %(default)s)",
    )
    serve.add_argument(
        "--cache-dir",
        default=str(default_cache_dir()),
        help="where the tiny demo checkpoint is kept (default: %(default)s)",
    )
    add_gguf_argument(serve)
    add_device_argument(serve)
    serve.set_defaults(handler=run_serve)
