"""`spiritlm init`: a SPIRIT LM repo started from a LLaMA-architecture text model."""


def run_init(args) -> int:
    from ..init_repo import init_spiritlm_repo

    output = init_spiritlm_repo(
        args.text_model,
        args.output_dir,
        variant=args.variant,
        num_hubert_units=args.units,
        speech_tokenizer=args.speech_tokenizer,
        vocoder=args.vocoder,
        seed=args.seed,
        force=args.force,
    )
    print(f"wrote a SPIRIT LM ({args.variant}) started from {args.text_model} to {output}")
    return 0


def add_parser(commands) -> None:
    init = commands.add_parser(
        "init",
        help="start a SPIRIT LM from a LLaMA-architecture text model (Llama 2 / 3, TinyLlama, SmolLM...)",
        description=(
            "Writes a SPIRIT LM repo to -o OUTPUT_DIR: the text model's weights with [Text], [Speech] and the unit "
            "tokens appended after its vocabulary (new rows: mean of the text rows plus small seeded noise), its "
            "tokenizer extended to match, the processor files and, when given, a speech tokenizer and a vocoder. "
            "Train it next (examples/finetune_spiritlm.py --model OUTPUT_DIR)."
        ),
    )
    init.add_argument("--text-model", required=True, help="folder or Hub id of a LlamaForCausalLM and its tokenizer")
    init.add_argument("--variant", choices=("base", "expressive"), default="base", help="(default: %(default)s)")
    init.add_argument(
        "-o", "--output-dir", required=True, help="folder to create (refused if it exists, unless --force)"
    )
    init.add_argument(
        "--units",
        type=int,
        help="number of hubert units (default: the speech tokenizer's, else 501, the official count)",
    )
    init.add_argument(
        "--speech-tokenizer",
        help="speech tokenizer folder to include (e.g. from `spiritlm train-units`); without it the processor takes "
        "text and unit strings only",
    )
    init.add_argument("--vocoder", help="SpiritLMVocoder folder to include (written to vocoder/)")
    init.add_argument("--seed", type=int, default=0, help="seed of the new rows' noise (default: %(default)s)")
    init.add_argument("--force", action="store_true", help="replace OUTPUT_DIR if it exists")
    init.set_defaults(handler=run_init)
