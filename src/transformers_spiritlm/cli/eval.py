"""`spiritlm eval stsp | score | asr | tts | wer | report | pairs | swuggy | sblimp | storycloze | salmon`: the STSP
benchmark and its scoring, few-shot ASR and TTS, their word / character error rates, one report of all results beside
the published figures, and the minimal-pair benchmarks (each one process or many, resumable)."""

import json
import sys

from .common import add_device_argument, add_gguf_argument


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
    from ..evaluation import run_stsp

    run = run_stsp(
        args.repo,
        args.manifest,
        args.input_output,
        args.output,
        text_classifier=args.text_classifier,
        speech_classifier=args.speech_classifier,
        label_map=parse_label_map(args.label_map),
        text_classifier_tokenizer=args.text_classifier_tokenizer,
        data_root=args.data_root,
        few_shot=args.few_shot,
        few_shot_manifest=args.few_shot_manifest,
        few_shot_data_root=args.few_shot_data_root,
        device=args.device,
        resume=args.resume,
        force=args.force,
        progress=not args.quiet,
        batch_size=args.batch_size,
        seed=args.seed,
        do_sample=not args.greedy,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        speaker_id=args.speaker_id,
        write_wav=args.write_wav,
        gguf=args.gguf,
    )
    shard = f" (process {run.process_index} of {run.num_processes})" if run.num_processes > 1 else ""
    skipped = f", {run.already_done} already done" if args.resume else ""
    print(f"predicted {run.written} items into {args.output}{shard}{skipped}", file=sys.stderr)
    if run.score_error is not None:
        print(f"not scored: {run.score_error}", file=sys.stderr)
    elif run.score is not None:
        print_score(run.score)
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


def run_wer(args) -> int:
    from ..evaluation import score_transcripts

    try:
        result = score_transcripts(args.ref, args.pred, unit="char" if args.cer else "word")
    except ModuleNotFoundError as error:
        print(f"spiritlm eval: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
        return 0
    name = "CER" if args.cer else "WER"
    unit = "characters" if args.cer else "words"
    if args.per_item:
        for item in result["items"]:
            print(f"{item['id']}\t{100 * item['rate']:.2f}%\t{item['errors']} of {item['length']}")
    print(
        f"{name}: {100 * result['rate']:.2f}% ({result['errors']} errors in {result['length']} reference {unit}: "
        f"{result['substitutions']} substitutions, {result['deletions']} deletions, {result['insertions']} "
        f"insertions; {len(result['items'])} items)"
    )
    return 0


def add_sampling_arguments(parser, max_new_tokens: str) -> None:
    """The generation options of eval stsp / asr / tts: per-item seeded sampling (official settings) or greedy."""
    parser.add_argument("--batch-size", type=int, default=8, help="items generated together (default: %(default)s)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the per-item sampling (and of eval stsp's examples)"
    )
    parser.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default: %(default)s)")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling (default: %(default)s)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help=f"default: {max_new_tokens}")


def add_job_arguments(parser) -> None:
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run into the same --output")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_argument(parser)


def add_few_shot_arguments(parser, pairs: str) -> None:
    parser.add_argument("--few-shot-manifest", default=None, help=f"JSONL of examples ({pairs})")
    parser.add_argument("--shots", type=int, default=0, help="number of examples (default: %(default)s, zero-shot)")
    parser.add_argument(
        "--few-shot-seed", type=int, default=None, help="draw the examples with this seed (default: the first N rows)"
    )
    parser.add_argument(
        "--few-shot-data-root", default=None, help="wav root of the few-shot manifest (default: --data-root)"
    )


def generation_options(args, default_max_new_tokens: int) -> dict:
    return {
        "batch_size": args.batch_size,
        "seed": args.seed,
        "do_sample": not args.greedy,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "max_new_tokens": args.max_new_tokens or default_max_new_tokens,
    }


def report_job(result: dict, output: str, what: str) -> None:
    print(f"{what} {result['written']} items into {output}", file=sys.stderr)
    if result["skipped"]:
        print(f"{result['skipped']} items were already done", file=sys.stderr)


def run_asr(args) -> int:
    from ..evaluation import ASR_MAX_NEW_TOKENS, evaluate_asr

    result = evaluate_asr(
        args.repo, args.manifest, args.output, data_root=args.data_root, few_shot_manifest=args.few_shot_manifest,
        shots=args.shots, few_shot_seed=args.few_shot_seed, few_shot_data_root=args.few_shot_data_root,
        device=args.device, resume=args.resume, force=args.force, progress=not args.quiet,
        **generation_options(args, ASR_MAX_NEW_TOKENS),
    )  # fmt: skip
    report_job(result, args.output, "transcribed")
    return 0


def run_tts(args) -> int:
    from ..evaluation import TTS_MAX_NEW_TOKENS, evaluate_tts

    result = evaluate_tts(
        args.repo, args.manifest, args.output, args.asr_model, args.write_wav,
        few_shot_manifest=args.few_shot_manifest, shots=args.shots, few_shot_seed=args.few_shot_seed,
        few_shot_data_root=args.few_shot_data_root, device=args.device, resume=args.resume, force=args.force,
        progress=not args.quiet, speaker_id=args.speaker_id, **generation_options(args, TTS_MAX_NEW_TOKENS),
    )  # fmt: skip
    report_job(result, args.output, "synthesised")
    return 0


def run_report(args) -> int:
    from ..evaluation import write_report

    try:
        rows = write_report(
            args.results, args.output, args.plot, args.stsp_reference, force=args.force, published=args.published
        )
    except ModuleNotFoundError as error:
        print(f"spiritlm eval: error: {error}", file=sys.stderr)
        return 2
    written = f"{args.output}" + (f" and {args.plot}" if args.plot else "")
    print(f"{len(rows)} metrics of {len(args.results)} result files into {written}", file=sys.stderr)
    return 0


def print_pair_accuracy(result: dict | None, output: str | None) -> None:
    if result is None:  # not the main process
        return
    where = f" (per pair: {output})" if output else ""
    print(f"accuracy: {100 * result['accuracy']:.2f}% ({result['correct']:g} of {result['total']} pairs){where}")
    for subset, counts in result["subsets"].items():
        print(f"  {subset}: {100 * counts['accuracy']:.2f}% ({counts['correct']:g} of {counts['total']})")


def _evaluate_pairs(args, pairs: list, inputs: tuple = ()) -> int:
    from ..evaluation import evaluate_pairs, pair_inputs

    result = evaluate_pairs(
        args.repo,
        pairs,
        args.output,
        batch_size=args.batch_size,
        reduction=args.reduction,
        device=args.device,
        resume=args.resume,
        force=args.force,
        inputs=[*inputs, *pair_inputs(pairs)],
        progress=not args.quiet,
    )
    print_pair_accuracy(result, args.output)
    return 0


def run_pairs(args) -> int:
    from ..evaluation import read_pairs_jsonl

    return _evaluate_pairs(args, read_pairs_jsonl(args.pairs, args.data_root), inputs=(args.pairs,))


def run_swuggy(args) -> int:
    from ..evaluation import read_swuggy

    return _evaluate_pairs(args, read_swuggy(args.data_dir))


def run_sblimp(args) -> int:
    from ..evaluation import read_sblimp

    return _evaluate_pairs(args, read_sblimp(args.data_dir))


def run_storycloze(args) -> int:
    from ..evaluation import read_storycloze

    return _evaluate_pairs(args, read_storycloze(args.data_dir, args.prompt_modality, args.continuation_modality))


def run_salmon(args) -> int:
    from ..evaluation import read_salmon

    return _evaluate_pairs(args, read_salmon(args.data_dir, args.parts))


def add_pair_arguments(parser, output_required: bool = True) -> None:
    """The options every minimal-pair task shares."""
    parser.add_argument("--repo", required=True, help="converted SPIRIT LM checkpoint")
    parser.add_argument(
        "-o",
        "--output",
        required=output_required,
        default=None,
        help='per-pair JSONL: {"id", "score_correct", "score_wrong", "correct": 1 | 0.5 (tie) | 0, "subset"}',
    )
    parser.add_argument("--batch-size", type=int, default=8, help="pairs scored together (default: %(default)s)")
    parser.add_argument("--reduction", choices=REDUCTIONS, default="sum", help="log-likelihood sum or mean per token")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run into the same --output")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_argument(parser)


_PAIRS_SHARDING = (
    "Both items of every pair of a batch go through one left-padded forward pass. Under `accelerate launch` / "
    "`torchrun` each process scores a share of the batches into <output>.part-<i>-of-<n> and process 0 merges them "
    "in pair order; after a crash or a kill, the same command with --resume completes the file as an uninterrupted "
    "run writes it."
)


def add_parser(commands) -> None:
    evaluate = commands.add_parser("eval", help="STSP, few-shot ASR / TTS, WER / CER, report, minimal-pair benchmarks")
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
    add_sampling_arguments(stsp, "50 for text, 300 for speech")
    stsp.add_argument("--speaker-id", type=int, default=2, help="vocoder speaker of speech outputs")
    add_job_arguments(stsp)
    add_gguf_argument(stsp)
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

    asr = tasks.add_parser(
        "asr",
        help="few-shot speech recognition: transcribe a manifest of clips, write {'id', 'hyp', 'ref'} JSONL",
        description=(
            "Few-shot ASR as in the paper: each clip of the manifest (JSONL: id, wav_path relative to --data-root, "
            "text) is prompted after --shots examples of --few-shot-manifest (same fields; the first N rows, or a "
            "draw with --few-shot-seed) in the official few-shot layout ([Speech]units[Text]transcript, one example a "
            "line), then [Speech]units[Text]; the hypothesis is the text answer up to its first newline. Writes "
            '{"id", "hyp", "ref"} per line; score it with `spiritlm eval wer`. Sharded under accelerate launch / '
            "torchrun and resumable (--resume) as eval stsp."
        ),
    )
    asr.add_argument("--repo", required=True, help="converted SPIRIT LM checkpoint")
    asr.add_argument("--manifest", required=True, help="JSONL of id, wav_path, text")
    asr.add_argument("--data-root", default=None, help="folder the manifest's wav_path are relative to")
    add_few_shot_arguments(asr, "id, wav_path, text")
    asr.add_argument("-o", "--output", required=True, help="prediction JSONL")
    add_sampling_arguments(asr, "100")
    add_job_arguments(asr)
    asr.set_defaults(handler=run_asr)

    tts = tasks.add_parser(
        "tts",
        help="few-shot speech synthesis: speak a manifest of texts, transcribe it with an ASR model",
        description=(
            "Few-shot TTS as in the paper: each text of the manifest (JSONL: id, text) is prompted after --shots "
            "examples of --few-shot-manifest (id, wav_path, text) in the official few-shot layout ([Text]transcript"
            "[Speech]units, one example a line), then [Text]text[Speech]; the speech answer is vocoded into "
            "--write-wav (one WAV per id) and transcribed by --asr-model (any transformers automatic-speech-"
            'recognition model). Writes {"id", "hyp", "ref", "wav", "units"} per line; score it with `spiritlm eval '
            "wer` (--cer for the paper's CER). Sharded and resumable as eval stsp."
        ),
    )
    tts.add_argument("--repo", required=True, help="converted SPIRIT LM checkpoint (with its vocoder/)")
    tts.add_argument("--manifest", required=True, help="JSONL of id, text")
    tts.add_argument("--asr-model", required=True, help="speech recognition model (folder or Hub id)")
    tts.add_argument("--write-wav", required=True, help="folder for the generated speech (<id>.wav)")
    add_few_shot_arguments(tts, "id, wav_path, text")
    tts.add_argument("-o", "--output", required=True, help="prediction JSONL")
    add_sampling_arguments(tts, "500")
    tts.add_argument("--speaker-id", type=int, default=2, help="vocoder speaker (default: %(default)s)")
    add_job_arguments(tts)
    tts.set_defaults(handler=run_tts)

    wer = tasks.add_parser(
        "wer",
        help="word (or character) error rate of transcripts against a reference manifest",
        description=(
            "WER (--cer: CER) of a prediction JSONL ({'id', 'hyp'}, as eval asr / tts write) against a reference "
            "manifest ({'id', 'text'}), per item and over the corpus (all edits over all reference words). Both "
            "sides are normalised first: Unicode NFKC, lowercased, punctuation (but an apostrophe inside a word) "
            "made a space, whitespace collapsed. Ids must match one to one. Needs the [eval] extra (jiwer)."
        ),
    )
    wer.add_argument("--ref", required=True, help="reference manifest (with 'text')")
    wer.add_argument("--pred", required=True, help="prediction JSONL (with 'hyp')")
    wer.add_argument("--cer", action="store_true", help="character error rate (spaces count) instead of WER")
    wer.add_argument("--per-item", action="store_true", help="also print each item's rate")
    wer.add_argument("--json", action="store_true", help="print the result as one JSON object")
    wer.set_defaults(handler=run_wer)

    report = tasks.add_parser(
        "report",
        help="one markdown table (and bar chart) of result files beside the published SPIRIT LM figures",
        description=(
            "Reads per-item result files and writes every metric in one markdown table beside the published BASE "
            "and EXPRESSIVE figures (each with the paper table it comes from; empty where none is sourced). A "
            "result is TASK=PATH or TASK:SUBSET=PATH, or a PATH whose file name starts with its task "
            "(asr.jsonl, swuggy-base.jsonl). asr / tts files ({id, hyp, ref}) give WER and CER; swuggy / sblimp / "
            "storycloze / salmon / pairs files ({id, score_correct, score_wrong, correct}) give accuracy, per "
            "'subset' field too; stsp prediction files give accuracy against --stsp-reference. --plot needs the "
            "[eval] extra (matplotlib)."
        ),
    )
    report.add_argument("results", nargs="+", metavar="RESULT", help="TASK[:SUBSET]=PATH, or PATH named TASK...")
    report.add_argument("-o", "--output", required=True, help="markdown file to write")
    report.add_argument("--plot", default=None, help="bar chart to write (.png, .svg, .pdf)")
    report.add_argument("--stsp-reference", default=None, help="STSP manifest that stsp results are scored against")
    report.add_argument(
        "--published", default=None, help="CSV of published figures (task,subset,metric,variant,value,source)"
    )
    report.add_argument("--force", action="store_true", help="overwrite existing report files")
    report.set_defaults(handler=run_report)

    pairs = tasks.add_parser(
        "pairs",
        help="minimal-pair accuracy (sWUGGY / sBLIMP / StoryCloze style) over a JSONL of pairs",
        description=(
            'Each line: {"correct": ITEM, "wrong": ITEM, "prompt": ITEM (optional), "id" (optional, default: the line '
            'number), "subset" (optional)}, an ITEM being a SPIRIT LM string ("[Text]a cat", "[Speech][Hu12][Hu7]") or '
            'segments ({"type": "speech", "audio": "clip.wav"}, audio relative to --data-root). A pair is right when '
            "the correct item is strictly more likely (a tie counts half). " + _PAIRS_SHARDING
        ),
    )
    pairs.add_argument("--pairs", required=True, help="JSONL of pairs")
    pairs.add_argument("--data-root", default=None, help="folder audio paths are relative to")
    add_pair_arguments(pairs, output_required=False)
    pairs.set_defaults(handler=run_pairs)

    swuggy = tasks.add_parser(
        "swuggy",
        help="sWUGGY: spoken words against non-words (ZeroSpeech 2021 sLM21 lexical layout)",
        description=(
            "Scores the (word, non-word) pairs of an sLM21 lexical split folder (lexical/dev: .wav files and gold.csv; "
            "pairs by id and voice, the word being correct=1) and prints the accuracy, overall and per frequency "
            "band. " + _PAIRS_SHARDING
        ),
    )
    swuggy.add_argument("data_dir", metavar="DATA_DIR", help="sLM21 lexical split folder holding gold.csv")
    add_pair_arguments(swuggy)
    swuggy.set_defaults(handler=run_swuggy)

    sblimp = tasks.add_parser(
        "sblimp",
        help="sBLIMP: spoken grammatical against ungrammatical sentences (ZeroSpeech 2021 sLM21 syntactic layout)",
        description=(
            "Scores the sentence pairs of an sLM21 syntactic split folder (syntactic/dev: .wav files and gold.csv; "
            "pairs by type, subtype, id and voice, the grammatical one being correct=1) and prints the accuracy, "
            "overall and per type. " + _PAIRS_SHARDING
        ),
    )
    sblimp.add_argument("data_dir", metavar="DATA_DIR", help="sLM21 syntactic split folder holding gold.csv")
    add_pair_arguments(sblimp)
    sblimp.set_defaults(handler=run_sblimp)

    storycloze = tasks.add_parser(
        "storycloze",
        help="spoken / topic StoryCloze, and its cross-modal variants",
        description=(
            "Scores the true against the false ending of each story. Spoken releases (sSC, tSC): <n>_correct.wav and "
            "<n>_incorrect.wav, each the whole story, no prompt. With --prompt-modality and --continuation-modality, "
            "the cross-modal layout: the prompt <n>_mutual and the endings <n>_correct / <n>_incorrect, each as .txt "
            "(text) and .wav (speech). Files may sit in subfolders (one per speaker), whose accuracy is also printed. "
            + _PAIRS_SHARDING
        ),
    )
    storycloze.add_argument("data_dir", metavar="DATA_DIR", help="StoryCloze release folder")
    storycloze.add_argument("--prompt-modality", choices=("text", "speech"), default=None, help="cross-modal: prompt")
    storycloze.add_argument(
        "--continuation-modality", choices=("text", "speech"), default=None, help="cross-modal: endings"
    )
    add_pair_arguments(storycloze)
    storycloze.set_defaults(handler=run_storycloze)

    salmon = tasks.add_parser(
        "salmon",
        help="SALMon: acoustic consistency and alignment, per part",
        description=(
            "Scores sample_<n>_0.wav (positive) against sample_<n>_1.wav (negative) in each SALMon part folder "
            "(bg_alignment, ..., speaker_consistency) and prints the accuracy per part. " + _PAIRS_SHARDING
        ),
    )
    salmon.add_argument("data_dir", metavar="DATA_DIR", help="SALMon folder (salmon_benchmark) holding the parts")
    salmon.add_argument("--parts", nargs="+", default=None, help="parts to score (default: every part present)")
    add_pair_arguments(salmon)
    salmon.set_defaults(handler=run_salmon)


__all__ = ["add_pair_arguments", "parse_label_map"]
