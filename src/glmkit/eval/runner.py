"""The runner: a model adapter over a benchmark's samples, each response scored by its metrics.

:func:`run_benchmark` writes, in the output directory (see :mod:`glmkit.eval.records`):

* ``samples.jsonl``: one record per sample, appended and flushed as each sample finishes. A crash
  inside one sample (model or metric) is recorded in that sample's record and the run goes on; a
  crash of the whole process loses only the samples in flight. ``resume=True`` skips ids that
  already have a successful record and retries the ones that failed. A last line torn by a crash is
  repaired before anything is appended (see :func:`glmkit.jsonl.repair_torn_tail`).
* ``summary.json`` and ``summary.md`` (see :mod:`glmkit.eval.report`).

A sample's ``error`` means it has no score at all: its model call, every metric or (with
``num_samples`` > 1) every attempt failed. With several attempts, failures of some of them are
listed under ``attempt_errors`` instead; such a sample counts as done for ``resume`` and its failed
attempts count as incorrect (score 0, not passing), as in :func:`evaluate_sample`.

Metrics are called through the verifier interface (:class:`~glmkit.scoring.verifier.Verifier`),
synchronously, one sample per worker thread.
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glmkit.eval.definition import Benchmark
from glmkit.eval.records import SAMPLES_FILE, SUMMARY_JSON, SUMMARY_MD, json_safe, read_records
from glmkit.eval.report import summarize, summary_markdown
from glmkit.jsonl import dumps_utf8, json_line, repair_torn_tail
from glmkit.scoring import Sample, Verifier

if TYPE_CHECKING:
    from glmkit.eval.adapters import ModelAdapter, Prediction


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


def response_metadata(prediction: Prediction) -> dict[str, Any]:
    """What a verifier is told about how a response was produced (tool use, turns, usage, meta)."""
    meta: dict[str, Any] = dict(prediction.meta)
    if prediction.tool_calls is not None:
        meta.update(
            tool_calls=prediction.tool_calls, turns=prediction.turns, tools_used=list(prediction.tools_used)
        )
    if prediction.usage:
        meta["usage"] = dict(prediction.usage)
    return meta


def score_response(
    sample: Sample, response: str, metrics: Sequence[Verifier], metadata: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Every metric's scores of ``response``; a metric that raises is recorded, not raised."""
    scores: dict[str, float] = {}
    failures: dict[str, str] = {}
    details: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for metric in metrics:
        try:
            out = metric.score(sample, response, metadata)
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
    metrics: Sequence[Verifier],
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
            attempt["meta"] = json_safe(pred.meta)
        scored = score_response(sample, pred.text, metrics, response_metadata(pred))
        attempt.update({k: v for k, v in scored.items() if v or k == "scores"})
        if scored["metric_errors"]:
            attempt["error"] = "metric: " + "; ".join(f"{k}: {v}" for k, v in scored["metric_errors"].items())
        attempts.append(attempt)

    record: dict[str, Any] = {
        "id": sample.id,
        "category": sample.category,
        "source": sample.source,
        "question": sample.question,
        "answer": json_safe(sample.answer),
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

    A judge endpoint reaches the metrics through the benchmark: ``benchmark.with_judge(url)``.
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
    metrics = benchmark.build_metrics()
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
                    "source": sample.source,
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
