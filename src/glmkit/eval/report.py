"""The run summary: overall, per-category and per-source means, failure counts, latency, tool use,
pass@k; as ``summary.json``, a markdown table (``summary.md``) and a terminal table.

Headline (un-dotted) scores count a crashed sample as 0; dotted sub-scores (``grounding.iou``) are
means over the samples that were scored. A sample's ``error`` means it has no score at all: its
model call, every metric or (with several attempts) every attempt failed; failures of some
attempts are counted under ``failed_attempts`` and those attempts count as incorrect.

The table shows a row per category when there are several, and a row per data source
(``source: NAME``) when there are several. Under it, every column is attributed to its scorer (the
reference implementation a metric reproduces, or that it is a lenient or glmkit-only variant), and
a column whose value came from an offline stand-in is labelled ``(not comparable)`` with the reason.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from glmkit.eval.metrics.passk import pass_at_k_table
from glmkit.scoring import DEFAULT_TAG, Verifier

LOWER_IS_BETTER_LABEL = "(lower is better)"
NOT_COMPARABLE_LABEL = "(not comparable)"
SOURCE_ROW_PREFIX = "source: "


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _group_summary(records: list[dict[str, Any]], score_keys: list[str], with_tools: bool) -> dict[str, Any]:
    n = len(records)
    errors = sum(1 for r in records if r.get("error"))
    scores: dict[str, float | None] = {}
    for key in score_keys:
        if "." in key:  # sub-score: over the samples that have it
            scores[key] = _mean([r["scores"][key] for r in records if key in r.get("scores", {})])
        else:  # headline: a crashed sample counts as 0
            scores[key] = sum(r.get("scores", {}).get(key, 0.0) for r in records) / n if n else None
    group: dict[str, Any] = {
        "n": n,
        "errors": errors,
        "scores": scores,
        "latency_s": _mean([r["latency_s"] for r in records if r.get("latency_s") is not None]),
    }
    failures: dict[str, int] = defaultdict(int)
    for r in records:
        for key in r.get("metric_failures", {}):
            failures[key] += 1
    if failures:
        group["metric_failures"] = dict(failures)
    if with_tools:
        with_calls = [r for r in records if r.get("tool_calls") is not None]
        group["tool_calls"] = _mean([float(r["tool_calls"]) for r in with_calls])
        group["turns"] = _mean([float(r["turns"]) for r in with_calls if r.get("turns") is not None])
        group["tool_use_rate"] = _mean([float(r["tool_calls"] > 0) for r in with_calls])
        usage: dict[str, int] = defaultdict(int)
        for r in records:
            for name in r.get("tools_used", []):
                usage[name] += 1
        group["tools_used"] = dict(sorted(usage.items()))
    pass_records = [r for r in records if "pass" in r]
    if pass_records:
        table = pass_at_k_table(
            [r["pass"]["n"] for r in pass_records], [r["pass"]["c"] for r in pass_records]
        )
        group["pass_at_k"] = {f"pass@{k}": v for k, v in table.items()}
    attempt_records = [r for r in records if "attempts" in r]
    if attempt_records:
        # Every failed attempt, whether or not its sample still got a score (those are in "errors").
        group["attempts"] = sum(len(r["attempts"]) for r in attempt_records)
        group["failed_attempts"] = sum(1 for r in attempt_records for a in r["attempts"] if "error" in a)
    return group


def lower_is_better_keys(metrics: Sequence[Verifier]) -> list[str]:
    """Score keys that are distances (lower is better): each metric's ``lower_is_better`` sub-scores."""
    return [f"{metric.key}.{name}" for metric in metrics for name in getattr(metric, "lower_is_better", ())]


def scorers(summary: dict[str, Any]) -> dict[str, str]:
    """``{metric key: the scorer behind its columns}`` from the metrics' ``describe()`` entries."""
    out = {}
    for m in summary.get("metrics") or []:
        key = m.get("key") or m.get("name")
        scorer = m.get("scorer")
        variant = m.get("variant")
        if scorer is None:
            out[key] = f"{m.get('name', key)} (no reference declared)"
        elif variant and variant != "reference":
            out[key] = f"{scorer} ({variant} variant, not a benchmark's reference)"
        else:
            out[key] = scorer
    return out


def not_comparable(summary: dict[str, Any]) -> dict[str, str]:
    """``{score key: why}`` for score columns that cannot be compared with published numbers."""
    out = {}
    for m in summary.get("metrics") or []:
        for key in m.get("not_comparable") or ():
            out[key] = m.get("why_not_comparable") or "an offline stand-in ran"
    return out


def summarize(
    records: list[dict[str, Any]], metrics: Sequence[Verifier], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Overall, per-category and per-source summary of sample records (see the module docstring)."""
    keys: list[str] = []
    for metric in metrics:
        keys.append(metric.key)
    seen = {k for r in records for k in r.get("scores", {})}
    keys += sorted(k for k in seen if k not in keys)
    with_tools = any(r.get("tool_calls") is not None for r in records)
    by_cat: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_cat[str(r.get("category", DEFAULT_TAG))].append(r)
        by_source[str(r.get("source", DEFAULT_TAG))].append(r)
    summary = {
        **(extra or {}),
        "primary": metrics[0].key if metrics else None,
        "score_keys": keys,
        "lower_is_better": [k for k in lower_is_better_keys(metrics) if k in keys],
        "overall": _group_summary(records, keys, with_tools),
        "categories": {cat: _group_summary(rs, keys, with_tools) for cat, rs in sorted(by_cat.items())},
        "sources": {src: _group_summary(rs, keys, with_tools) for src, rs in sorted(by_source.items())},
        "metrics": [m.describe() for m in metrics],
    }
    summary["scorers"] = scorers(summary)
    summary["not_comparable"] = not_comparable(summary)
    return summary


def _fmt(value: Any, pct: bool = True) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{100 * value:.1f}" if pct else f"{value:.3g}"
    return str(value)


def summary_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary table: overall, then each category and each source when there
    are several (scores in percent; a distance column, where lower is better, says so in its label)."""
    keys = summary["score_keys"]
    lower = set(summary.get("lower_is_better", ()))
    overall = summary["overall"]
    tools = "tool_calls" in overall
    passk = list(overall.get("pass_at_k", {}))
    subs = [k.split(".", 1)[1] for k in keys if "." in k]
    labels = [k.split(".", 1)[1] if "." in k and subs.count(k.split(".", 1)[1]) == 1 else k for k in keys]
    labels = [
        f"{label} {LOWER_IS_BETTER_LABEL}" if k in lower else label
        for k, label in zip(keys, labels, strict=True)
    ]
    stand_ins = not_comparable(summary)
    labels = [
        f"{label} {NOT_COMPARABLE_LABEL}" if k in stand_ins else label
        for k, label in zip(keys, labels, strict=True)
    ]
    header = ["split", "n", "errors", *labels, *passk, "latency s"]
    if tools:
        header += ["tool calls", "turns", "tool use"]

    def row(name: str, group: dict[str, Any]) -> list[str]:
        cells = [name, str(group["n"]), str(group["errors"])]
        cells += [_fmt(group["scores"].get(k)) for k in keys]
        cells += [_fmt(group.get("pass_at_k", {}).get(k)) for k in passk]
        latency = group.get("latency_s")
        cells.append("-" if latency is None else f"{latency:.3f}")
        if tools:
            cells += [
                _fmt(group.get("tool_calls"), pct=False),
                _fmt(group.get("turns"), pct=False),
                _fmt(group.get("tool_use_rate")),
            ]
        return cells

    rows = [row("overall", overall)]
    if len(summary["categories"]) > 1:
        rows += [row(cat, g) for cat, g in summary["categories"].items()]
    sources = summary.get("sources") or {}
    if len(sources) > 1:
        rows += [row(SOURCE_ROW_PREFIX + src, g) for src, g in sources.items()]
    return header, rows


def scorer_lines(summary: dict[str, Any]) -> list[str]:
    """One line per metric naming the scorer behind its columns (headline and dotted sub-scores)."""
    keys = summary.get("score_keys") or []
    lines = []
    for metric_key, scorer in scorers(summary).items():
        columns = [k for k in keys if k == metric_key or k.startswith(f"{metric_key}.")] or [metric_key]
        lines.append(f"{', '.join(columns)}: {scorer}")
    return lines


def _notes(summary: dict[str, Any]) -> list[str]:
    """Lines printed under the table: stand-ins, metric fallbacks and failed attempts."""
    overall = summary["overall"]
    notes = []
    stand_ins = not_comparable(summary)
    if stand_ins:
        reasons = sorted(set(stand_ins.values()))
        notes.append(f"Not comparable with published numbers: {', '.join(stand_ins)} ({'; '.join(reasons)})")
    failures = overall.get("metric_failures")
    if failures:
        notes.append(
            "Metric failures (fallback scores used): " + ", ".join(f"{k}: {v}" for k, v in failures.items())
        )
    if overall.get("failed_attempts"):
        notes.append(
            f"Failed attempts (counted as incorrect): {overall['failed_attempts']} of {overall['attempts']}"
        )
    return notes


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as a markdown document (title, table, failure notes)."""
    header, rows = summary_rows(summary)
    intro = "Scores in percent (higher is better unless a column says otherwise); "
    lines = [
        f"# {summary.get('benchmark', 'benchmark')} - {summary.get('model', {}).get('spec', '')}",
        "",
        intro + "headline scores count crashed samples as 0.",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    for note in _notes(summary):
        lines += ["", note]
    scorer_rows = scorer_lines(summary)
    if scorer_rows:
        lines += ["", "Scorer of each column:", *[f"- {row}" for row in scorer_rows]]
    tools = summary["overall"].get("tools_used")
    if tools:
        lines += ["", "Samples using each tool: " + ", ".join(f"{k}: {v}" for k, v in tools.items())]
    for key, value in (summary.get("extra") or {}).items():
        lines.append(f"- {key}: {_fmt(value, pct=False) if not isinstance(value, dict) else value}")
    return "\n".join(lines) + "\n"


def print_summary(summary: dict[str, Any]) -> None:
    """Print the summary table with rich (plain markdown when rich is unavailable)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(summary_markdown(summary))
        return
    header, rows = summary_rows(summary)
    table = Table(
        title=f"{summary.get('benchmark')} - {summary.get('model', {}).get('spec', '')} (scores in %)"
    )
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*r)
    console = Console()
    if not console.is_terminal:  # logs and pipes: do not squeeze the table into 80 columns
        console = Console(width=max(console.width, 160))
    console.print(table)
    for note in _notes(summary):
        console.print(note, markup=False, highlight=False)
    for row in scorer_lines(summary):
        console.print(f"scorer of {row}", markup=False, highlight=False)
