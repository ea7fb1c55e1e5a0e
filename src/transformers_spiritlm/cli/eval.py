"""`spiritlm eval stsp | score | pairs`: the STSP benchmark (one process or many, resumable), its scoring, and
minimal-pair accuracy (sWUGGY / sBLIMP / StoryCloze style)."""

import json
import sys
from pathlib import Path

from .common import add_device_argument, add_gguf_argument, load_language_model


# evaluation.DIRECTIONS and evaluation.REDUCTIONS, written out so that building the parser does not import the
# evaluation package (torch, transformers); tests/test_cli.py checks that they agree.
DIRECTIONS = ("text_text", "text_speech", "speech_text", "speech_speech")
REDUCTIONS = ("sum", "mean")


def parse_label_map(text: str | None) -> dict[str, str] | None:
    """`"happy=positive,sad=negative"` or a JSON object -> dict."""
    if not text:
        return None
    if text.lstrip().startswith("{"):
        try:
            table = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"--label-map is not valid JSON ({error})") from None
        return {str(key): str(value) for key, value in table.items()}
    table = {}
    for item in text.split(","):
        label, sep, sentiment = item.partition("=")
        if not sep or not label.strip() or not sentiment.strip():
            raise ValueError(f"--label-map item {item!r} is not LABEL=SENTIMENT")
        table[label.strip()] = sentiment.strip()
    return table


def run_stsp(args) -> int:
    from transformers import AutoProcessor

    from ..corpus import distributed_state, finished_records, process_shard, sharded_output
    from ..evaluation import (
        SentimentClassifier,
        few_shot_prompt_from_manifest,
        predict_stsp,
        read_stsp_manifest,
        score_stsp,
        split_direction,
        write_records,
    )

    target = split_direction(args.input_output)[1]
    classifier_path = args.text_classifier if target == "text" else args.speech_classifier
    if classifier_path is None:
        raise ValueError(
            f"{args.input_output} outputs {target}: give --{target}-classifier (a Hugging Face model path)"
        )
    if args.few_shot and not args.few_shot_manifest:
        raise ValueError("--few-shot needs --few-shot-manifest (the official t2t/t2s/s2t/s2s.jsonl of this direction)")
    state = distributed_state()
    device = state.device if state.num_processes > 1 else args.device
    rows = read_stsp_manifest(args.manifest, args.input_output, args.data_root)
    label_map = parse_label_map(args.label_map)
    output = Path(args.output)
    inputs = [path for path in (args.manifest, args.few_shot_manifest, *(row.get("_audio") for row in rows)) if path]
    order = [str(row["id"]) for row in rows]
    written = 0
    with sharded_output(
        output, state, key="id", order=order, resume=args.resume, force=args.force, inputs=inputs
    ) as file:
        done = finished_records(output, "id") if args.resume else {}
        todo = [row for row in process_shard(rows, state) if str(row["id"]) not in done]
        classifier = SentimentClassifier.from_pretrained(
            classifier_path, target, label_map, tokenizer=args.text_classifier_tokenizer, device=device
        )
        if todo:
            processor = AutoProcessor.from_pretrained(args.repo)
            model = load_language_model(args.repo, device, args.gguf)
            if processor.speech_tokenizer is not None:
                processor.speech_tokenizer.to(device)
            vocoder = None
            if target == "speech":
                from ..vocoder import load_vocoder

                vocoder = load_vocoder(args.repo).to(device)
            few_shot = ""
            if args.few_shot:
                few_shot = few_shot_prompt_from_manifest(
                    processor,
                    args.few_shot_manifest,
                    args.input_output,
                    args.few_shot,
                    args.few_shot_data_root or args.data_root,
                    seed=args.seed,
                )
            records = predict_stsp(
                model,
                processor,
                todo,
                args.input_output,
                classifier,
                few_shot_prompt=few_shot,
                vocoder=vocoder,
                # llama.cpp generates item by item; each item samples from its own seed, so outputs are the same.
                batch_size=1 if args.gguf else args.batch_size,
                seed=args.seed,
                do_sample=not args.greedy,
                temperature=args.temperature,
                top_p=args.top_p,
                max_new_tokens=args.max_new_tokens,
                speaker_id=args.speaker_id,
                write_wav=args.write_wav,
                progress=state.is_main_process and not args.quiet,
            )
            written = write_records(records, file)
    shard = f" (process {state.process_index} of {state.num_processes})" if state.num_processes > 1 else ""
    skipped = f", {len(process_shard(rows, state)) - len(todo)} already done" if args.resume else ""
    print(f"predicted {written} items into {output}{shard}{skipped}", file=sys.stderr)
    if state.is_main_process:
        try:
            result = score_stsp(args.manifest, output)
        except ValueError as error:
            print(f"not scored: {error}", file=sys.stderr)
        else:
            print_score(result)
    return 0


def print_score(result: dict) -> None:
    print(f"accuracy: {100 * result['accuracy']:.2f}% ({result['correct']} of {result['total']})")
    for label, counts in result["per_class"].items():
        print(f"  {label}: {counts['correct']} of {counts['total']} correct")


def run_score(args) -> int:
    from ..evaluation import score_stsp

    result = score_stsp(args.ref, args.pred, label=args.label)
    if args.json:
        print(json.dumps(result))
    else:
        print_score(result)
    return 0


def _resolve_audio(item, data_root: str | None, location: str):
    """Speech segments of a pairs line with `audio` paths relative to --data-root."""
    if isinstance(item, str):
        return item
    segments = [item] if isinstance(item, dict) else item
    if not isinstance(segments, list):
        raise ValueError(f"{location}: an item is a SPIRIT LM string, a segment dict or a list of them")
    resolved = []
    for segment in segments:
        if isinstance(segment, dict) and isinstance(segment.get("audio"), str):
            path = Path(data_root or ".") / segment["audio"]
            if not path.is_file():
                raise FileNotFoundError(f"{location}: audio file {path} does not exist (relative to --data-root)")
            segment = {**segment, "audio": path}
        resolved.append(segment)
    return resolved


def run_pairs(args) -> int:
    from transformers import AutoModelForCausalLM, AutoProcessor

    from ..evaluation import minimal_pair_accuracy, read_jsonl

    lines = read_jsonl(args.pairs, "pairs file")
    pairs, prompts = [], []
    for line in lines:
        location = f"pairs file {args.pairs}, line {line['_line']}"
        if "correct" not in line or "wrong" not in line:
            raise ValueError(f"{location}: a pair needs 'correct' and 'wrong' (and optionally 'prompt')")
        pairs.append(tuple(_resolve_audio(line[key], args.data_root, location) for key in ("correct", "wrong")))
        prompt = line.get("prompt")
        prompts.append(None if prompt is None else _resolve_audio(prompt, args.data_root, location))
    processor = AutoProcessor.from_pretrained(args.repo)
    model = AutoModelForCausalLM.from_pretrained(args.repo).to(args.device).eval()
    if processor.speech_tokenizer is not None:
        processor.speech_tokenizer.to(args.device)
    accuracy = minimal_pair_accuracy(
        model, processor, pairs, prompts=prompts, batch_size=args.batch_size, reduction=args.reduction
    )
    print(f"accuracy: {100 * accuracy:.2f}% ({round(accuracy * len(pairs))} of {len(pairs)} pairs)")
    return 0


def add_parser(commands) -> None:
    evaluate = commands.add_parser("eval", help="STSP benchmark, its scoring, minimal-pair accuracy")
    tasks = evaluate.add_subparsers(dest="task", required=True, metavar="TASK")

    stsp = tasks.add_parser(
        "stsp",
        help="Speech-Text Sentiment Preservation: generate, classify, write the official prediction JSONL",
        description=(
            "Continues each prompt of an STSP manifest (official JSONL: id, wav_path, emotion/sentiment, asr) in the "
            "output modality, classifies the sentiment of each continuation and writes the official prediction JSONL "
            '({"id", "pred", "generation"}), then prints the accuracy when the manifest has labels. Official '
            "settings by default: sampling at temperature 0.8, top-p 0.95, 50 (text) / 300 (speech) new tokens, up "
            "to 3 attempts; every item samples from its own seed. Under `accelerate launch` / `torchrun` each "
            "process takes a shard of the manifest and appends finished items to <output>.part-<i>-of-<n>; process "
            "0 merges them in manifest order. After a crash or a kill, the same command with --resume skips the "
            "items already predicted. A second job on the same --output stops at once (<output>.lock)."
        ),
    )
    stsp.add_argument("--repo", required=True, help="converted SPIRIT LM checkpoint")
    stsp.add_argument("--manifest", required=True, help="STSP manifest (e.g. manifest/emov/emov.test.jsonl)")
    stsp.add_argument("--data-root", default=None, help="folder the manifest's wav_path are relative to")
    stsp.add_argument("--input-output", required=True, choices=DIRECTIONS, help="direction")
    stsp.add_argument("--few-shot", type=int, default=0, help="number of few-shot examples (official: 3, 6, 9)")
    stsp.add_argument("--few-shot-manifest", default=None, help="few-shot manifest (manifest/few_shot/s2t.jsonl ...)")
    stsp.add_argument(
        "--few-shot-data-root", default=None, help="wav root of the few-shot manifest (default: --data-root)"
    )
    stsp.add_argument("--text-classifier", default=None, help="text-classification model path for text outputs")
    stsp.add_argument("--text-classifier-tokenizer", default=None, help="its tokenizer, when not in the model folder")
    stsp.add_argument("--speech-classifier", default=None, help="audio-classification model path for speech outputs")
    stsp.add_argument(
        "--label-map",
        default=None,
        help="classifier label -> sentiment, 'LABEL=SENTIMENT,...' or JSON (default: official emotion table)",
    )
    stsp.add_argument("-o", "--output", required=True, help="prediction JSONL")
    stsp.add_argument("--write-wav", default=None, help="folder for speech outputs (<id>.wav)")
    stsp.add_argument("--batch-size", type=int, default=8, help="items generated together (default: %(default)s)")
    stsp.add_argument("--seed", type=int, default=0, help="seed of the per-item sampling and few-shot sample")
    stsp.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    stsp.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default: %(default)s)")
    stsp.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling (default: %(default)s)")
    stsp.add_argument("--max-new-tokens", type=int, default=None, help="default: 50 for text, 300 for speech")
    stsp.add_argument("--speaker-id", type=int, default=2, help="vocoder speaker of speech outputs")
    stsp.add_argument("--resume", action="store_true", help="continue an interrupted run into the same --output")
    stsp.add_argument("--force", action="store_true", help="overwrite an existing --output")
    stsp.add_argument("--quiet", action="store_true", help="no progress bar")
    add_gguf_argument(stsp)
    add_device_argument(stsp)
    stsp.set_defaults(handler=run_stsp)

    score = tasks.add_parser(
        "score",
        help="accuracy of an STSP prediction JSONL against a reference manifest",
        description="Accuracy as the official eval_stsp.py, plus per-class counts. Ids must match one to one.",
    )
    score.add_argument("--ref", required=True, help="reference manifest (with sentiment or emotion)")
    score.add_argument("--pred", required=True, help="prediction JSONL ({'id', 'pred'})")
    score.add_argument("--label", default="sentiment", help="reference field to compare with (default: %(default)s)")
    score.add_argument("--json", action="store_true", help="print the result as one JSON object")
    score.set_defaults(handler=run_score)

    pairs = tasks.add_parser(
        "pairs",
        help="minimal-pair accuracy (sWUGGY / sBLIMP / StoryCloze style) over a JSONL of pairs",
        description=(
            'Each line: {"correct": ITEM, "wrong": ITEM, "prompt": ITEM (optional)}, an ITEM being a SPIRIT LM string '
            '("[Text]a cat", "[Speech][Hu12][Hu7]") or segments ({"type": "speech", "audio": "clip.wav"}, audio '
            "relative to --data-root). A pair is right when the correct item is strictly more likely."
        ),
    )
    pairs.add_argument("--repo", required=True, help="converted SPIRIT LM checkpoint")
    pairs.add_argument("--pairs", required=True, help="JSONL of pairs")
    pairs.add_argument("--data-root", default=None, help="folder audio paths are relative to")
    pairs.add_argument("--batch-size", type=int, default=8, help="sequences scored together (default: %(default)s)")
    pairs.add_argument("--reduction", choices=REDUCTIONS, default="sum", help="log-likelihood sum or mean per token")
    add_device_argument(pairs)
    pairs.set_defaults(handler=run_pairs)


__all__ = ["parse_label_map"]
