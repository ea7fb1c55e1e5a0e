"""Fine-tune SPIRIT LM with the Hugging Face Trainer on word-aligned speech.

Each clip of the dataset becomes a speech-only, a text-only and a word-level interleaved training sequence, as in the
paper. The default data are the espeak-ng clips of `tests/fixtures/audio/aligned/` (their word times are exact: each
word was synthesised on its own), and the default model is a tiny random-weight SPIRIT LM built on the fly, so this
runs on a CPU in about a minute:

    python examples/finetune_spiritlm.py --max-steps 30 --output-dir runs/tiny

With a converted checkpoint and your own data (a folder with `words.jsonl`: one `{"audio": file, "words": [{"word",
"start", "end"}, ...]}` per line, times in seconds; an optional `"units"` field skips unit extraction):

    python examples/finetune_spiritlm.py --model path/to/spiritlm-base --data-dir my_data --output-dir runs/base \
        --max-steps 1000 --learning-rate 2e-5

`--output-dir` then holds the model, the processor files and `trainer_state.json`, and reloads with
`AutoModelForCausalLM.from_pretrained` / `AutoProcessor.from_pretrained`.
"""

import argparse
import json
import math
import tempfile
from pathlib import Path

import datasets
import torch
from transformers import AutoModelForCausalLM, AutoProcessor, Trainer, TrainingArguments

import transformers_spiritlm  # noqa: F401  (registers the SPIRIT LM Auto classes)
from transformers_spiritlm.data import (
    SEQUENCE_KINDS,
    SpiritLMDataCollator,
    SpiritLMSequenceBuilder,
    build_sequences,
    extract_units,
    tokenize_sequences,
)
from transformers_spiritlm.testing import build_tiny_repo


DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "audio" / "aligned"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", required=True, help="where the Trainer writes the fine-tuned model")
    parser.add_argument("--model", help="converted SPIRIT LM repo (default: a tiny random one built on the fly)")
    parser.add_argument(
        "--variant",
        choices=("base", "expressive"),
        default="base",
        help="variant of the tiny model (expressive needs pitch and style units)",
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="folder with words.jsonl and audio")
    parser.add_argument("--kinds", nargs="+", choices=SEQUENCE_KINDS, default=["speech", "text", "interleaved"])
    parser.add_argument(
        "--switch-probability", type=float, default=0.5, help="interleaving: switch at a word boundary"
    )
    parser.add_argument("--target-modality", choices=("text", "speech"), help="loss only on this modality")
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=6)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def load_aligned_dataset(data_dir: Path) -> datasets.Dataset:
    """`words.jsonl` of `data_dir` as a dataset with `audio` (absolute paths), `words` and, if given, `units`."""
    manifest = data_dir / "words.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found: the data folder needs a words.jsonl manifest (see --help)")
    records = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    for record in records:
        record["audio"] = str((data_dir / record["audio"]).resolve())
    return datasets.Dataset.from_list(records)


def main(argv=None) -> dict:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        repo = args.model or build_tiny_repo(
            Path(scratch) / "tiny-spiritlm", variant=args.variant, seed=args.seed, vocoder=False
        )
        processor = AutoProcessor.from_pretrained(repo)
        model = AutoModelForCausalLM.from_pretrained(repo)

    dataset = load_aligned_dataset(args.data_dir)
    if "units" not in dataset.column_names:
        if processor.speech_tokenizer is None:
            raise ValueError(f"{repo} has no speech tokenizer and {args.data_dir} gives no units")
        dataset = extract_units(dataset, processor.speech_tokenizer)
    builder = SpiritLMSequenceBuilder(args.switch_probability, unit_types=model.config.unit_types)
    sequences = build_sequences(dataset, kinds=args.kinds, builder=builder, seed=args.seed)
    train_dataset = tokenize_sequences(sequences, processor.tokenizer)
    print(
        f"{len(train_dataset)} training sequences, e.g. {sequences[min(2, len(sequences) - 1)]['sequence'][:120]}..."
    )

    training_args = TrainingArguments(
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=min(5, args.max_steps // 5),
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        dataloader_pin_memory=torch.cuda.is_available(),
        seed=args.seed,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=SpiritLMDataCollator(processor.tokenizer, target_modality=args.target_modality),
        processing_class=processor,
    )
    trainer.train()
    trainer.save_model()
    trainer.save_state()

    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    reloaded = AutoModelForCausalLM.from_pretrained(args.output_dir)
    summary = {"first_loss": losses[0], "last_loss": losses[-1], "steps": trainer.state.global_step}
    print(
        f"loss {summary['first_loss']:.3f} -> {summary['last_loss']:.3f} in {summary['steps']} steps; saved to "
        f"{args.output_dir} and reloaded as {type(reloaded).__name__}"
    )
    if not all(math.isfinite(loss) for loss in losses):
        raise RuntimeError(f"training diverged: losses {losses}")
    return summary


if __name__ == "__main__":
    main()
