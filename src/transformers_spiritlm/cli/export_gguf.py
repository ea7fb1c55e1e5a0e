"""`spiritlm export-gguf`: the language model of a converted repo as a GGUF file for llama.cpp (extra `[gguf]`)."""

from ..extras import install_hint


# llama_cpp_backend.GGUF_TYPES, written out so that building the parser imports no torch;
# tests/test_llama_cpp_backend.py checks that they agree.
GGUF_TYPES = ("f32", "f16", "q8_0", "q4_0", "q4_K_M")


def run_export_gguf(args) -> int:
    from ..llama_cpp_backend import export_gguf

    print(f"Writing the language model of {args.repo} as {args.type} GGUF ...")
    path = export_gguf(args.repo, args.output, args.type, force=args.force, n_threads=args.threads)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


def add_parser(commands) -> None:
    export = commands.add_parser(
        "export-gguf",
        help="write the language model as a GGUF file for llama.cpp (quantized to run on a laptop)",
        description=(
            "Writes the language model of a converted repo as a GGUF file (LLaMA layout, text vocabulary, markers "
            "and unit tokens), optionally quantized by llama.cpp. Generate with it through `spiritlm generate | "
            "serve | eval ... --repo REPO --gguf OUT.gguf` (the repo still gives the processor and vocoder). Needs "
            f"the [gguf] extra: {install_hint('gguf')}."
        ),
    )
    export.add_argument("--repo", required=True, help="converted SPIRIT LM checkpoint (BASE or EXPRESSIVE)")
    export.add_argument("-o", "--output", required=True, help="GGUF file to write")
    export.add_argument(
        "--type",
        default="f32",
        choices=GGUF_TYPES,
        help="f32 (exact), f16, q8_0 (near-exact), q4_0 or q4_K_M (smallest, fastest) (default: %(default)s)",
    )
    export.add_argument("--threads", type=int, help="threads for the quantization (default: llama.cpp's choice)")
    export.add_argument("--force", action="store_true", help="overwrite an existing output file")
    export.set_defaults(handler=run_export_gguf)
