"""One report of evaluation runs: every metric of the given per-item result files in a markdown table, beside the
published SPIRIT LM figures (BASE and EXPRESSIVE) of `assets/published_results.csv`, and optionally a bar chart.

Which task a result file belongs to is said by its argument, `TASK=PATH` or `TASK:SUBSET=PATH` (e.g.
`asr:librispeech-test-clean=asr.jsonl`, `stsp:speech_text=pred.jsonl`, `salmon=salmon.jsonl`), or else by the start
of its file name: the task name followed by `.`, `-` or `_` (`asr.jsonl`, `sblimp-base.jsonl`, `tts_10shot.jsonl`).
What each task's records hold:
- `asr`, `tts`: `{"id", "hyp", "ref"}` (`eval asr` / `eval tts`) -> WER and CER ([`error_rates`]).
- `swuggy`, `sblimp`, `storycloze`, `salmon`, `pairs`: `{"id", "score_correct", "score_wrong", "correct"}`
  (`correct` 1, 0.5 on a tie, 0) -> accuracy, over the file and, when records carry a `subset` field (e.g. SALMon's
  parts), per subset.
- `stsp`: the official prediction JSONL (`{"id", "pred"}`, `eval stsp`) -> accuracy against `stsp_reference`.
"""

import csv
import math
import os
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from ..extras import import_extra
from .manifest import read_jsonl, where
from .stsp import score_stsp
from .wer import error_rates


TRANSCRIPT_TASKS = ("asr", "tts")
LIKELIHOOD_TASKS = ("swuggy", "sblimp", "storycloze", "salmon", "pairs")
TASKS = (*TRANSCRIPT_TASKS, *LIKELIHOOD_TASKS, "stsp")
VARIANTS = ("base", "expressive")
# Error rates and accuracies are shown in percent.
_PERCENT = 100
_TAGGED = re.compile(r"^(?P<task>[a-z]+)(?::(?P<subset>[^=]+))?=(?P<path>.+)$")


def parse_result_argument(argument: str) -> tuple[str, str, Path]:
    """`"TASK[:SUBSET]=PATH"` or a `PATH` whose file name starts with a task name -> `(task, subset, path)`."""
    tagged = _TAGGED.match(argument)
    if tagged and tagged["task"] in TASKS:
        return tagged["task"], tagged["subset"] or "", Path(tagged["path"])
    if tagged:
        raise ValueError(f"unknown task {tagged['task']!r} in {argument!r}; use one of {', '.join(TASKS)}")
    path = Path(argument)
    named = re.match(r"^([a-z]+)(?:[._-]|$)", path.name.lower())
    if named is None or named[1] not in TASKS:
        raise ValueError(
            f"cannot tell the task of {argument}: give it as TASK=PATH (TASK one of {', '.join(TASKS)}) or name the "
            "file after its task (asr.jsonl, swuggy-base.jsonl, ...)"
        )
    return named[1], "", path


def read_published(path: str | os.PathLike | None = None) -> dict[tuple[str, str, str], dict[str, tuple[str, str]]]:
    """The published figures, `{(task, subset, metric): {variant: (value, source)}}`, of a CSV with columns `task`,
    `subset`, `metric`, `variant`, `value`, `source` (default: the package's `assets/published_results.csv`, where a
    figure nobody could source from the paper stays empty)."""
    text = (
        Path(path).read_text(encoding="utf-8")
        if path is not None
        else resources.files("transformers_spiritlm").joinpath("assets/published_results.csv").read_text("utf-8")
    )
    table: dict[tuple[str, str, str], dict[str, tuple[str, str]]] = {}
    for row in csv.DictReader(text.splitlines()):
        key = (row["task"], row["subset"], row["metric"])
        table.setdefault(key, {})[row["variant"]] = (row["value"], row["source"])
    return table


def _likelihood_metrics(records: list[dict], path: Path) -> list[tuple[str, str, float, int]]:
    groups: dict[str, list[float]] = {}
    for record in records:
        correct = record.get("correct")
        if isinstance(correct, bool) or correct not in (0, 0.5, 1):
            raise ValueError(f"{where(record, path, 'results')}: 'correct' must be 1, 0.5 or 0, got {correct!r}")
        groups.setdefault("", []).append(correct)
        if "subset" in record:
            groups.setdefault(str(record["subset"]), []).append(correct)
    return [
        (subset, "accuracy", _PERCENT * sum(values) / len(values), len(values)) for subset, values in groups.items()
    ]


def _transcript_metrics(records: list[dict], path: Path) -> list[tuple[str, str, float, int]]:
    for record in records:
        if not all(isinstance(record.get(field), str) for field in ("hyp", "ref")) or "id" not in record:
            raise ValueError(f"{where(record, path, 'results')}: a transcript record needs 'id', 'hyp' and 'ref'")
    references, hypotheses = [r["ref"] for r in records], [r["hyp"] for r in records]
    ids = [r["id"] for r in records]
    return [
        ("", metric, _PERCENT * error_rates(references, hypotheses, ids, unit)["rate"], len(records))
        for metric, unit in (("WER", "word"), ("CER", "char"))
    ]


def collect_metrics(results: Sequence[str], stsp_reference: str | os.PathLike | None = None) -> list[dict]:
    """
    The metrics of each result argument ([`parse_result_argument`]), in argument order: `[{"task", "subset",
    "metric", "value" (percent), "items", "file"}, ...]`. A record that does not fit its task is a `ValueError`
    naming the file and the line.
    """
    rows = []
    for argument in results:
        task, subset, path = parse_result_argument(argument)
        if task == "stsp":
            if stsp_reference is None:
                raise ValueError(f"{path}: STSP predictions are scored against their manifest: give --stsp-reference")
            score = score_stsp(stsp_reference, path)
            metrics = [("", "accuracy", _PERCENT * score["accuracy"], score["total"])]
        else:
            records = read_jsonl(path, "results")
            reader = _transcript_metrics if task in TRANSCRIPT_TASKS else _likelihood_metrics
            metrics = reader(records, path)
        for own_subset, metric, value, items in metrics:
            full_subset = ":".join(part for part in (subset, own_subset) if part)
            rows.append({"task": task, "subset": full_subset, "metric": metric, "value": value, "items": items,
                         "file": str(path)})  # fmt: skip
    return rows


def markdown_report(rows: Sequence[dict], published: dict | None = None) -> str:
    """The markdown table of [`collect_metrics`] rows beside the published figures (`—` where none is sourced)."""
    published = read_published() if published is None else published
    lines = [
        "| task | subset | metric | this run (%) | items | BASE published (%) | EXPRESSIVE published (%) | source |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        figures = published.get((row["task"], row["subset"], row["metric"]), {})
        cells = [figures.get(variant, ("", ""))[0] or "—" for variant in VARIANTS]
        sources = "; ".join(dict.fromkeys(source for _, source in figures.values() if source)) or "—"
        lines.append(
            f"| {row['task']} | {row['subset'] or '—'} | {row['metric']} | {row['value']:.2f} | {row['items']} | "
            f"{cells[0]} | {cells[1]} | {sources} |"
        )
    lines.append("")
    lines.append(
        "Error rates (WER, CER) are lower-is-better, accuracies higher-is-better. Published figures come from "
        "`assets/published_results.csv`, each with the table it comes from; `—` marks a figure not sourced there."
    )
    return "\n".join(lines) + "\n"


def plot_report(rows: Sequence[dict], path: str | os.PathLike, published: dict | None = None) -> None:
    """A bar chart of the rows' values (percent), with the published BASE / EXPRESSIVE figure beside each where one
    is sourced. Needs matplotlib (the `[eval]` extra)."""
    matplotlib = import_extra("matplotlib", "eval")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    published = read_published() if published is None else published
    labels = [" ".join(part for part in (row["task"], row["subset"], row["metric"]) if part) for row in rows]
    series = {"this run": [row["value"] for row in rows]}
    for variant in VARIANTS:
        values = []
        for row in rows:
            figure = published.get((row["task"], row["subset"], row["metric"]), {}).get(variant, ("", ""))[0]
            values.append(float(figure) if figure else math.nan)
        if not all(math.isnan(value) for value in values):
            series[f"{variant.upper()} published"] = values
    width = 0.8 / len(series)
    figure, axes = plt.subplots(figsize=(max(4.0, 1.2 * len(rows) + 2), 4))
    for index, (name, values) in enumerate(series.items()):
        axes.bar([x + index * width for x in range(len(rows))], values, width, label=name)
    axes.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(rows))], labels, rotation=30, ha="right")
    axes.set_ylabel("%")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_report(
    results: Sequence[str],
    output: str | os.PathLike,
    plot: str | os.PathLike | None = None,
    stsp_reference: str | os.PathLike | None = None,
    force: bool = False,
    published: str | os.PathLike | None = None,
) -> list[dict]:
    """
    `spiritlm eval report`: the table of [`markdown_report`] into `output` (and the chart of [`plot_report`] into
    `plot`), each written under a temporary name then renamed; an existing file is refused unless `force`.
    `published`: a CSV of published figures instead of the package's ([`read_published`]). Returns the rows.
    """
    targets = [Path(output)] + ([Path(plot)] if plot is not None else [])
    for target in targets:
        if target.exists() and not force:
            raise FileExistsError(f"{target} exists; pass --force to overwrite it")
    inputs = {Path(parse_result_argument(argument)[2]).resolve() for argument in results}
    if any(target.resolve() in inputs for target in targets):
        raise ValueError("the report would overwrite one of its result files; give another output")
    rows = collect_metrics(results, stsp_reference)
    figures = read_published(published)
    if plot is not None:
        import_extra("matplotlib", "eval")
    text = markdown_report(rows, figures)
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(output).with_name(f"{Path(output).name}.tmp")
    picture = Path(plot).with_name(f"{Path(plot).stem}.tmp{Path(plot).suffix}") if plot is not None else None
    try:
        staging.write_text(text, encoding="utf-8")
        if picture is not None:
            plot_report(rows, picture, figures)
            os.replace(picture, plot)
        os.replace(staging, output)
    finally:
        for leftover in (staging, picture):
            if leftover is not None:
                leftover.unlink(missing_ok=True)
    return rows


__all__ = [
    "TASKS",
    "collect_metrics",
    "markdown_report",
    "parse_result_argument",
    "plot_report",
    "read_published",
    "write_report",
]
