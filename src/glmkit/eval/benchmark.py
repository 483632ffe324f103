"""Benchmarks: the registry, the runner and the result files (report section 5).

The built-in benchmarks are registered in :mod:`glmkit.eval.benchmarks`, the demo ones in
:mod:`glmkit.eval.demo`; ``import glmkit.eval`` registers both.

A :class:`Benchmark` is data: which metrics score it, how a sample becomes a prompt, where its
JSONL lives (or how a demo builds it), and which tools an agent gets. :func:`run_benchmark` runs a
model adapter over it and writes, in the output directory:

* ``samples.jsonl``: one record per sample, appended and flushed as each sample finishes (the
  prediction, per-metric scores, metric failures, latency, tool calls, turns; for ``num_samples``
  > 1 every attempt and the pass@k counts). A crash inside one sample (model or metric) is
  recorded in that sample's record and the run goes on; a crash of the whole process loses only
  the samples in flight. ``resume=True`` skips ids that already have a successful record and
  retries the ones that failed; when a file holds an id twice, the last record wins. A last line
  torn by a crash is repaired before anything is appended (see :func:`glmkit.jsonl.repair_torn_tail`).
* ``summary.json`` and ``summary.md``: overall and per-category means, error and failure counts,
  latency, tool use, pass@k. Headline (un-dotted) scores count a crashed sample as 0; dotted
  sub-scores (``grounding.iou``) are means over the samples that were scored.

A sample's ``error`` means it has no score at all: its model call, every metric or (with
``num_samples`` > 1) every attempt failed. With several attempts, failures of some of them are
listed under ``attempt_errors`` instead; such a sample counts as done for ``resume`` and its failed
attempts count as incorrect (score 0, not passing), as in :func:`evaluate_sample`.
"""

from __future__ import annotations

import datetime as _dt
import json
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glmkit.eval.metrics.base import METRICS, SampleMetric
from glmkit.eval.metrics.passk import pass_at_k_table
from glmkit.eval.sample import DataError, RowParser, Sample, load_samples, parse_sample
from glmkit.jsonl import dumps_utf8, json_line, repair_torn_tail
from glmkit.registry import declare

if TYPE_CHECKING:
    from glmkit.eval.adapters import ModelAdapter

BENCHMARKS = declare("benchmarks", "evaluation benchmarks (glmkit eval --benchmark NAME)")

SAMPLES_FILE = "samples.jsonl"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"

MetricSpec = tuple[str, dict[str, Any]]

LOWER_IS_BETTER_LABEL = "(lower is better)"


@dataclass
class Benchmark:
    """What a benchmark is: data, prompt, metrics and (for agents) tools.

    Args:
        name: the registry name.
        metrics: ``(registered metric name, kwargs)`` pairs; the first is the primary metric
            (its score decides pass/fail for pass@k and is what the ``oracle`` adapter answers).
        prompt: template filled with ``question``, ``category`` and the sample's metadata keys.
        data: default JSONL path (``None``: the user passes ``--data``, or ``make_data`` builds it).
        make_data: ``directory -> JSONL path`` for procedurally generated (demo) benchmarks.
        system_prompt: system message for chat adapters.
        pass_threshold: primary score at or above which an attempt counts as correct for pass@k.
        tools: ``(tool name, kwargs)`` an agent adapter gets; string kwargs may use ``{data_dir}``.
        parse_row: turns one decoded JSONL row into a :class:`Sample` (for foreign formats).
        summary_extra: ``(records, primary key) -> dict`` added to the summary under ``extra``.
        description: one line for ``--list``.
    """

    name: str
    metrics: Sequence[MetricSpec]
    prompt: str = "{question}"
    data: str | Path | None = None
    make_data: Callable[[Path], Path] | None = None
    system_prompt: str | None = None
    pass_threshold: float = 1.0
    tools: Sequence[tuple[str, dict[str, Any]]] = ()
    parse_row: RowParser = parse_sample
    summary_extra: Callable[[list[dict[str, Any]], str], dict[str, Any]] | None = None
    description: str = ""

    def build_metrics(self, overrides: dict[str, Any] | None = None) -> list[SampleMetric]:
        """Instantiate the metrics; ``overrides`` (e.g. ``judge_url``) go to the metrics that accept them."""
        import inspect

        if not self.metrics:
            raise ValueError(f"benchmark {self.name!r} has no metrics")
        built = []
        for name, kwargs in self.metrics:
            cls = METRICS.get(name)
            params = inspect.signature(cls).parameters
            extra = {k: v for k, v in (overrides or {}).items() if k in params and v is not None}
            built.append(cls(**{**kwargs, **extra}))
        keys = [m.key for m in built]
        if len(set(keys)) != len(keys):
            raise ValueError(f"benchmark {self.name!r}: metric keys must be unique, got {keys}; set key=...")
        return built

    def format_prompt(self, sample: Sample) -> str:
        """The text sent to the model for ``sample``."""
        fields = {k: v for k, v in sample.metadata.items() if isinstance(k, str)}
        fields.update(question=sample.question, category=sample.category)
        try:
            return self.prompt.format_map(fields)
        except (KeyError, IndexError, ValueError) as exc:
            raise DataError(
                f"benchmark {self.name!r}: prompt template {self.prompt!r} cannot be filled for sample "
                f"{sample.id!r} ({type(exc).__name__}: {exc})"
            ) from None

    def load(self, path: str | Path, metrics: Sequence[SampleMetric]) -> list[Sample]:
        """Read and validate the JSONL at ``path`` (answers checked by every metric)."""

        def check(sample: Sample) -> None:
            for metric in metrics:
                metric.check_answer(sample)

        return load_samples(path, parse_row=self.parse_row, check_answer=check)

    def resolve_data(self, data: str | Path | None, out_dir: Path) -> Path:
        """The JSONL to read: ``data``, else the default, else a demo built under ``out_dir/data``."""
        if data is not None:
            return Path(data)
        if self.data is not None:
            return Path(self.data)
        if self.make_data is not None:
            return Path(self.make_data(out_dir / "data"))
        raise DataError(f"benchmark {self.name!r} has no default data: pass --data path/to/benchmark.jsonl")

    def tool_specs(self, data_dir: Path) -> list[tuple[str, dict[str, Any]]]:
        """The agent tools with ``{data_dir}`` filled into string arguments."""
        return [
            (name, {k: v.format(data_dir=data_dir) if isinstance(v, str) else v for k, v in kwargs.items()})
            for name, kwargs in self.tools
        ]


def get_benchmark(name: str) -> Benchmark:
    """Build the benchmark registered as ``name``."""
    import glmkit.eval  # noqa: F401  (registers the built-in benchmarks)

    factory = BENCHMARKS.get(name)
    bench = factory()
    if not isinstance(bench, Benchmark):
        raise TypeError(f"benchmark factory {name!r} returned {type(bench).__name__}, not a Benchmark")
    return bench


# ------------------------------------------------------------------------------------- records


@dataclass
class RunResult:
    """What :func:`run_benchmark` produced."""

    summary: dict[str, Any]
    records: list[dict[str, Any]]
    out_dir: Path
    skipped: int = 0

    @property
    def samples_path(self) -> Path:
        """The per-sample JSONL."""
        return self.out_dir / SAMPLES_FILE


def read_records(path: Path) -> dict[str, dict[str, Any]]:
    """Records of a ``samples.jsonl`` by id (last one wins); an unreadable line (a write cut short
    by a crash) is skipped."""
    records: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return records
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "id" in rec:
                records[str(rec["id"])] = rec
    return records


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _score_prediction(text: str, sample: Sample, metrics: Sequence[SampleMetric]) -> dict[str, Any]:
    scores: dict[str, float] = {}
    failures: dict[str, str] = {}
    details: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for metric in metrics:
        try:
            out = metric.score(text, sample)
        except Exception as exc:  # one broken metric must not lose the sample
            errors[metric.key] = f"{type(exc).__name__}: {exc}"
            continue
        scores.update(out.scores)
        if out.failure:
            failures[metric.key] = out.failure
        if out.details:
            details[metric.key] = out.details
    return {"scores": scores, "metric_failures": failures, "metric_details": details, "metric_errors": errors}


def evaluate_sample(
    benchmark: Benchmark,
    sample: Sample,
    adapter: ModelAdapter,
    metrics: Sequence[SampleMetric],
    num_samples: int = 1,
) -> dict[str, Any]:
    """Run the adapter on one sample ``num_samples`` times and score every attempt; never raises
    for model or metric failures (they are recorded).

    With ``num_samples`` > 1 an attempt whose model call or metric crashed is a failed attempt: it
    counts as incorrect (not among the ``c`` correct of ``pass``, whose ``n`` stays
    ``num_samples``, so pass@k is not inflated by dropping it) and as 0 in the headline scores,
    while dotted sub-scores average the scored attempts only. The record's ``error`` is set only
    when no attempt was scored; failures of some attempts go to ``attempt_errors`` (one
    ``"attempt I: ..."`` line each, the attempt itself keeps its ``error`` and ``traceback``).
    """
    from glmkit.eval.adapters import Request

    prompt = benchmark.format_prompt(sample)
    request = Request(sample=sample, prompt=prompt, system_prompt=benchmark.system_prompt)
    primary = metrics[0].key
    attempts = []
    for _ in range(num_samples):
        attempt: dict[str, Any] = {"prediction": None}
        start = time.perf_counter()
        try:
            pred = adapter.predict(request)
        except Exception as exc:
            attempt["latency_s"] = round(time.perf_counter() - start, 4)
            attempt["error"] = f"model: {type(exc).__name__}: {exc}"
            attempt["traceback"] = traceback.format_exc(limit=8)
            attempts.append(attempt)
            continue
        attempt["latency_s"] = round(time.perf_counter() - start, 4)
        attempt["prediction"] = pred.text
        if pred.tool_calls is not None:
            attempt.update(tool_calls=pred.tool_calls, turns=pred.turns, tools_used=list(pred.tools_used))
        if pred.usage:
            attempt["usage"] = dict(pred.usage)
        if pred.meta:
            attempt["meta"] = _json_safe(pred.meta)
        scored = _score_prediction(pred.text, sample, metrics)
        attempt.update({k: v for k, v in scored.items() if v or k == "scores"})
        if scored["metric_errors"]:
            attempt["error"] = "metric: " + "; ".join(f"{k}: {v}" for k, v in scored["metric_errors"].items())
        attempts.append(attempt)

    record: dict[str, Any] = {
        "id": sample.id,
        "category": sample.category,
        "question": sample.question,
        "answer": _json_safe(sample.answer),
        "prompt": prompt,
    }
    if num_samples == 1:
        record.update(attempts[0])
        record.setdefault("scores", {})
    else:
        scored = [a for a in attempts if "error" not in a]
        keys = sorted({k for a in scored for k in a.get("scores", {})})
        record["prediction"] = (scored or attempts)[0].get("prediction")
        # As across samples: headline scores count a failed attempt as 0, sub-scores average the scored ones.
        record["scores"] = {
            k: sum(a["scores"].get(k, 0.0) for a in scored) / (len(scored) if "." in k else num_samples)
            for k in keys
        }
        correct = sum(
            1
            for a in attempts
            if "error" not in a and a.get("scores", {}).get(primary, 0.0) >= benchmark.pass_threshold - 1e-9
        )
        record["pass"] = {"n": num_samples, "c": correct}
        record["attempts"] = attempts
        record["latency_s"] = round(sum(a.get("latency_s", 0.0) for a in attempts) / num_samples, 4)
        for key in ("tool_calls", "turns"):
            values = [a[key] for a in attempts if a.get(key) is not None]
            if values:
                record[key] = sum(values) / len(values)
        if any(a.get("tools_used") for a in attempts):
            record["tools_used"] = sorted({t for a in attempts for t in a.get("tools_used", [])})
        failures = {k: v for a in attempts for k, v in a.get("metric_failures", {}).items()}
        if failures:
            record["metric_failures"] = failures
        if not scored:
            record["error"] = f"all {num_samples} attempts failed: " + attempts[0]["error"]
            record["scores"] = {}
        elif len(scored) < len(attempts):
            record["attempt_errors"] = [
                f"attempt {i}: {a['error']}" for i, a in enumerate(attempts) if "error" in a
            ]
    return record


# ------------------------------------------------------------------------------------- summary


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


def lower_is_better_keys(metrics: Sequence[SampleMetric]) -> list[str]:
    """Score keys that are distances (lower is better): each metric's ``lower_is_better`` sub-scores."""
    return [f"{metric.key}.{name}" for metric in metrics for name in getattr(metric, "lower_is_better", ())]


def summarize(
    records: list[dict[str, Any]], metrics: Sequence[SampleMetric], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Overall and per-category summary of sample records (see the module docstring for the rules)."""
    keys: list[str] = []
    for metric in metrics:
        keys.append(metric.key)
    seen = {k for r in records for k in r.get("scores", {})}
    keys += sorted(k for k in seen if k not in keys)
    with_tools = any(r.get("tool_calls") is not None for r in records)
    by_cat: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_cat[str(r.get("category", "default"))].append(r)
    summary = {
        **(extra or {}),
        "primary": metrics[0].key if metrics else None,
        "score_keys": keys,
        "lower_is_better": [k for k in lower_is_better_keys(metrics) if k in keys],
        "overall": _group_summary(records, keys, with_tools),
        "categories": {cat: _group_summary(rs, keys, with_tools) for cat, rs in sorted(by_cat.items())},
        "metrics": [m.describe() for m in metrics],
    }
    return summary


def _fmt(value: Any, pct: bool = True) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{100 * value:.1f}" if pct else f"{value:.3g}"
    return str(value)


def summary_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary table (scores in percent; a distance column, where lower is
    better, says so in its label)."""
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
    return header, rows


def _notes(summary: dict[str, Any]) -> list[str]:
    """Lines printed under the table: metric fallbacks and failed attempts."""
    overall = summary["overall"]
    notes = []
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


# -------------------------------------------------------------------------------------- runner


def run_benchmark(
    benchmark: Benchmark,
    adapter: ModelAdapter,
    out_dir: str | Path,
    *,
    data: str | Path | None = None,
    limit: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    num_samples: int = 1,
    workers: int = 1,
    metric_overrides: dict[str, Any] | None = None,
    progress: bool = False,
) -> RunResult:
    """Evaluate ``adapter`` on ``benchmark`` and write the result files under ``out_dir``.

    Args:
        data: JSONL overriding the benchmark's default.
        limit: evaluate only the first ``limit`` samples.
        resume: keep the finished records in ``out_dir`` and run the rest.
        overwrite: start afresh even if ``out_dir`` holds results (otherwise that is an error).
        num_samples: attempts per sample (> 1 adds pass@k).
        workers: samples evaluated concurrently (threads; for API adapters).
        metric_overrides: settings for the metrics that accept them (``judge_url``, ...).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples_path = out / SAMPLES_FILE
    if samples_path.is_file() and samples_path.stat().st_size > 0 and not (resume or overwrite):
        raise FileExistsError(
            f"{samples_path} already holds results: pass resume=True (--resume) to continue that run "
            "or overwrite=True (--overwrite) to start again"
        )
    metrics = benchmark.build_metrics(metric_overrides)
    try:
        data_path = benchmark.resolve_data(data, out)
        samples = benchmark.load(data_path, metrics)
        if limit is not None:
            samples = samples[: max(0, limit)]
        if resume:
            # Appending after a torn last line would merge the next record into it and lose it.
            repair_torn_tail(samples_path)
        existing = read_records(samples_path) if resume else {}
        if not resume and samples_path.exists():
            samples_path.unlink()
        done = {sid for sid, rec in existing.items() if not rec.get("error")}
        pending = [s for s in samples if s.id not in done]
        adapter.prepare(benchmark, samples, metrics, data_path=data_path, out_dir=out)
        lock = threading.Lock()
        new_records: dict[str, dict[str, Any]] = {}

        def work(sample: Sample) -> None:
            try:
                record = evaluate_sample(benchmark, sample, adapter, metrics, num_samples)
            except Exception as exc:  # e.g. a prompt template that cannot be filled
                record = {
                    "id": sample.id,
                    "category": sample.category,
                    "prediction": None,
                    "scores": {},
                    "error": f"harness: {type(exc).__name__}: {exc}",
                }
            line = json_line(record, default=str)
            with lock:
                with samples_path.open("a", encoding="utf-8") as fh:
                    fh.write(line)
                    fh.flush()
                new_records[sample.id] = record
                if progress:
                    status = (
                        "error" if record.get("error") else f"{record['scores'].get(metrics[0].key, 0.0):.3f}"
                    )
                    print(f"[{len(new_records)}/{len(pending)}] {sample.id}: {status}", flush=True)

        if workers == 1:
            for sample in pending:
                work(sample)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(work, pending))
    finally:
        for metric in metrics:
            metric.close()
        adapter.close()

    all_records = {**existing, **new_records}
    ordered = [all_records[s.id] for s in samples if s.id in all_records]
    extra = {
        "benchmark": benchmark.name,
        "model": adapter.describe(),
        "data": str(data_path),
        "num_samples": num_samples,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    summary = summarize(ordered, metrics, extra)
    if benchmark.summary_extra is not None:
        summary["extra"] = benchmark.summary_extra(ordered, metrics[0].key)
    (out / SUMMARY_JSON).write_text(dumps_utf8(summary, indent=2, default=str) + "\n", encoding="utf-8")
    # Categories and names come from the data, which may escape a lone surrogate too.
    (out / SUMMARY_MD).write_text(summary_markdown(summary), encoding="utf-8", errors="backslashreplace")
    return RunResult(summary, ordered, out, skipped=len(samples) - len(pending))
