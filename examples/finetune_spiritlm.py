"""Fine-tune SPIRIT LM with the Hugging Face Trainer on word-aligned speech.

Each clip of the dataset becomes a speech-only, a text-only and a word-level interleaved training sequence, as in the
paper. The default data are the espeak-ng clips of `tests/fixtures/audio/aligned/` (their word times are exact: each
word was synthesised on its own), and the default model is a tiny random-weight SPIRIT LM built on the fly, so this
runs on a CPU in about a minute:

    python examples/finetune_spiritlm.py --max-steps 30 --output-dir runs/tiny

With a converted checkpoint and your own data (a folder with `words.jsonl`: one `{"audio": file, "words": [{"word",
"start", "end"}, ...]}` per line, times in seconds, or `{"audio": file, "textgrid": file}` with a Montreal Forced
Aligner TextGrid instead of `"words"`; an optional `"units"` field skips unit extraction):

    python examples/finetune_spiritlm.py --model path/to/spiritlm-base --data-dir my_data --output-dir runs/base \
        --max-steps 1000 --learning-rate 2e-5

ASR / TTS fine-tuning: `--task asr` trains on `[Speech]units[Text]transcript` pairs, `--task tts` on
`[Text]transcript[Speech]units`, with the loss on the answer (and the end-of-sequence token) only, from a manifest of
`{"audio": file, "text": transcript}` lines (`--manifest`, a file of `--data-dir`; the default one has both):

    python examples/finetune_spiritlm.py --task asr --data-dir my_data --manifest pairs.jsonl --output-dir runs/asr

The fine-tuned model then transcribes with the pipeline (after `--task tts`, it speaks with
`[{"type": "text", "text": ...}]` and `output_modality="speech"`):

    pipeline("spirit-lm", model="runs/asr")([{"type": "speech", "audio": "clip.wav"}], output_modality="text")

`--output-dir` then holds the model, the processor files and `trainer_state.json`, and reloads with
`AutoModelForCausalLM.from_pretrained` / `AutoProcessor.from_pretrained`.

LoRA (`pip install 'transformers-spiritlm[train]'`, from a clone `pip install -e '.[train]'`): `--lora` trains
adapters only (`--lora-modules-to-save embed_tokens lm_head` also trains the embeddings, e.g. for a new voice);
`--output-dir` then holds the adapter, which reloads with `PeftModel.from_pretrained(base_model, output_dir)`, and
`--merged-output-dir DIR` writes the base model with the adapter merged in, which reloads with
`AutoModelForCausalLM.from_pretrained(DIR)`.

The script runs unchanged on several processes, e.g. with the accelerate configs beside it:

    accelerate launch --config_file examples/accelerate_ddp.yaml examples/finetune_spiritlm.py --output-dir runs/ddp
    accelerate launch --config_file examples/accelerate_fsdp.yaml examples/finetune_spiritlm.py --output-dir runs/fsdp
    torchrun --nproc_per_node 2 examples/finetune_spiritlm.py --output-dir runs/ddp

`--batch-size` is per process. `--padding-free` packs each batch into one row with per-sequence `position_ids`
instead of padding it, `--gradient-checkpointing` trades compute for activation memory, and `--streaming` reads the
manifest as a `datasets.IterableDataset` (units are then extracted on the fly; `--max-steps` sets the length).
"""

import argparse
import dataclasses
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import datasets
import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoProcessor,
    PrinterCallback,
    ProgressCallback,
    Trainer,
    TrainingArguments,
)

import transformers_spiritlm  # noqa: F401  (registers the SPIRIT LM Auto classes)
from transformers_spiritlm.alignments import read_textgrid
from transformers_spiritlm.data import (
    SEQUENCE_KINDS,
    TASKS,
    SpiritLMDataCollator,
    SpiritLMSequenceBuilder,
    build_sequences,
    extract_units,
    tokenize_sequences,
    tokenize_task_pairs,
)
from transformers_spiritlm.extras import install_hint
from transformers_spiritlm.testing import build_tiny_repo


DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "audio" / "aligned"


class QuietProgressCallback(ProgressCallback):
    """The Trainer's progress bar without the line it prints for every logged step (`--verbose` keeps them); the
    losses still reach `trainer.state.log_history`."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", required=True, help="where the Trainer writes the fine-tuned model")
    parser.add_argument(
        "--model", help="converted SPIRIT LM repo (default: a tiny random one, written to OUTPUT_DIR/base-model)"
    )
    parser.add_argument(
        "--variant",
        choices=("base", "expressive"),
        default="base",
        help="variant of the tiny model (expressive needs pitch and style units)",
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="folder with the manifest and audio")
    parser.add_argument(
        "--manifest", default="words.jsonl", help="JSONL manifest in --data-dir (default: %(default)s)"
    )
    parser.add_argument("--kinds", nargs="+", choices=SEQUENCE_KINDS, help="default: speech text interleaved")
    parser.add_argument(
        "--task", choices=TASKS, help="train on ASR or TTS pairs of the manifest's audio and text, loss on the answer"
    )
    parser.add_argument(
        "--switch-probability", type=float, default=0.5, help="interleaving: switch at a word boundary"
    )
    parser.add_argument("--target-modality", choices=("text", "speech"), help="loss only on this modality")
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=6)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--padding-free", action="store_true", help="pack batches with position_ids, no padding")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations in backward")
    parser.add_argument("--streaming", action="store_true", help="read the data as a datasets.IterableDataset")
    parser.add_argument("--verbose", action="store_true", help="print the Trainer's log line for every step")
    lora = parser.add_argument_group(f"LoRA (needs peft: {install_hint('train')})")
    lora.add_argument("--lora", action="store_true", help="train LoRA adapters instead of every weight")
    lora.add_argument("--lora-r", type=int, default=8, help="adapter rank")
    lora.add_argument("--lora-alpha", type=float, default=16.0, help="adapter scaling numerator")
    lora.add_argument("--lora-dropout", type=float, default=0.0)
    lora.add_argument(
        "--lora-target-modules", nargs="+", default=["q_proj", "k_proj", "v_proj", "o_proj"], help="layers to adapt"
    )
    lora.add_argument(
        "--lora-modules-to-save",
        nargs="+",
        default=None,
        help="modules trained in full beside the adapters, e.g. embed_tokens lm_head (the unit-token embeddings)",
    )
    lora.add_argument("--merged-output-dir", type=Path, help="also write the base model with the adapter merged in")
    args = parser.parse_args(argv)
    if args.task and (args.kinds or args.target_modality):
        parser.error(f"--task trains on {args.task} pairs only: drop --{'kinds' if args.kinds else 'target-modality'}")
    args.kinds = args.kinds or ["speech", "text", "interleaved"]
    lora_only = [name for name in ("lora_modules_to_save", "merged_output_dir") if getattr(args, name)]
    if lora_only and not args.lora:
        parser.error(f"--{lora_only[0].replace('_', '-')} needs --lora")
    if args.lora:
        try:
            import peft  # noqa: F401
        except ImportError:
            parser.error(f"--lora needs peft: {install_hint('train')}")
    return args


def load_aligned_dataset(
    data_dir: Path, streaming: bool = False, manifest: str = "words.jsonl"
) -> datasets.Dataset | datasets.IterableDataset:
    """
    The `manifest` of `data_dir` as a dataset with `audio` (absolute paths) and its other fields (`words`, `text`,
    `units`...); with `streaming=True` an `IterableDataset` that reads the manifest as it goes.
    """
    manifest = data_dir / manifest
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found: the data folder needs a {manifest.name} manifest (see --help)")
    root = data_dir.resolve()

    def resolve_audio(record):
        resolved = {"audio": str(root / record["audio"])}
        if record.get("textgrid"):
            resolved["words"] = [dataclasses.asdict(word) for word in read_textgrid(root / record["textgrid"])]
        return resolved

    if streaming:
        return datasets.load_dataset("json", data_files=str(manifest), split="train", streaming=True).map(
            resolve_audio
        )
    records = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    return datasets.Dataset.from_list([{**record, **resolve_audio(record)} for record in records])


def add_lora_adapters(model, args: argparse.Namespace):
    """Wraps `model` in a peft LoRA model as the `--lora-*` options say."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        task_type="CAUSAL_LM",
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=args.lora_target_modules,
        modules_to_save=args.lora_modules_to_save,
    )
    return get_peft_model(model, config)


def merge_lora_adapters(base_repo, adapter_dir, merged_dir: Path, processor) -> None:
    """Reloads the saved adapter on its base model, merges it and saves a plain SPIRIT LM repo to `merged_dir`."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_repo), adapter_dir)
    model.merge_and_unload().save_pretrained(merged_dir)
    processor.save_pretrained(merged_dir)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if not args.verbose:  # transformers' warnings and weight-loading bars; the training bar stays
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" and not torch.accelerator.is_available():
        raise RuntimeError(
            "accelerate applies FSDP only to processes with an accelerator (GPU); on a CPU-only machine launch with "
            "examples/accelerate_ddp.yaml instead"
        )
    with tempfile.TemporaryDirectory() as scratch:
        # Each process builds the same tiny model (same seed), before any process group exists.
        repo = args.model or build_tiny_repo(
            Path(scratch) / "tiny-spiritlm", variant=args.variant, seed=args.seed, vocoder=False
        )
        processor = AutoProcessor.from_pretrained(repo)
        model = AutoModelForCausalLM.from_pretrained(repo)
        if args.model is None and args.lora:
            # The adapter needs its base model later on: keep the tiny one beside it.
            repo = Path(args.output_dir) / "base-model"
            if int(os.environ.get("RANK", "0")) == 0:
                shutil.copytree(Path(scratch) / "tiny-spiritlm", repo, dirs_exist_ok=True)
            model.name_or_path = str(repo)  # what the adapter's config names as its base model
    if args.lora:
        model = add_lora_adapters(model, args)

    dataset = load_aligned_dataset(args.data_dir, streaming=args.streaming, manifest=args.manifest)
    if "units" not in (dataset.column_names or next(iter(dataset))):
        if processor.speech_tokenizer is None:
            raise ValueError(f"{repo} has no speech tokenizer and {args.data_dir} gives no units")
        dataset = extract_units(dataset, processor.speech_tokenizer)
    builder = SpiritLMSequenceBuilder(args.switch_probability, unit_types=model.config.unit_types)
    if args.task:
        train_dataset = tokenize_task_pairs(dataset, processor.tokenizer, args.task, builder=builder)
        if not args.streaming:
            print(f"{len(train_dataset)} {args.task.upper()} pairs")
    else:
        sequences = build_sequences(dataset, kinds=args.kinds, builder=builder, seed=args.seed)
        train_dataset = tokenize_sequences(sequences, processor.tokenizer)
        if not args.streaming:
            example = sequences[min(2, len(sequences) - 1)]["sequence"]
            print(f"{len(train_dataset)} training sequences, e.g. {example[:120]}...")

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
        # Without an accelerator, processes launched together join one gloo process group only when told to use
        # the CPU; otherwise each would train alone.
        use_cpu=not torch.accelerator.is_available(),
        activation_checkpointing=args.gradient_checkpointing,
        ddp_find_unused_parameters=False,  # every weight takes part in every forward pass
        seed=args.seed,
    )
    collator = SpiritLMDataCollator(
        processor.tokenizer, target_modality=args.target_modality, padding_free=args.padding_free
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=collator,
        processing_class=processor,
    )
    if not args.verbose:
        # With transformers' progress bars off the Trainer picks PrinterCallback (a line per step) instead.
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(QuietProgressCallback)
    num_processes = trainer.accelerator.num_processes
    if num_processes != int(os.environ.get("WORLD_SIZE", "1")):
        raise RuntimeError(
            f"launched as {os.environ['WORLD_SIZE']} processes but the Trainer sees {num_processes}: the processes "
            "did not join one process group"
        )
    trainer.train()
    trainer.save_model()
    trainer.save_state()
    trainer.accelerator.wait_for_everyone()

    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    summary = {
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "steps": trainer.state.global_step,
        "losses": losses,
        "activation_checkpointing": trainer.accelerator.unwrap_model(trainer.model).is_activation_checkpointing,
    }
    if args.lora:
        summary["base_model"] = str(repo)
        if args.merged_output_dir and trainer.is_world_process_zero():
            merge_lora_adapters(repo, args.output_dir, args.merged_output_dir, processor)
        trainer.accelerator.wait_for_everyone()
        saved = f"a LoRA adapter for {repo} saved to {args.output_dir}"
        if args.merged_output_dir:
            saved += f", reloaded and merged into {args.merged_output_dir}"
    else:
        reloaded = AutoModelForCausalLM.from_pretrained(args.output_dir)
        saved = f"saved to {args.output_dir} and reloaded as {type(reloaded).__name__}"
    if trainer.is_world_process_zero():
        print(f"trained with {trainer.accelerator.distributed_type.value} over {num_processes} process(es)")
        print(f"loss {summary['first_loss']:.3f} -> {summary['last_loss']:.3f} in {summary['steps']} steps; {saved}")
    if not all(math.isfinite(loss) for loss in losses):
        raise RuntimeError(f"training diverged: losses {losses}")
    return summary


if __name__ == "__main__":
    main()
