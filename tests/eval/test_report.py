"""The summary: per-category and per-source groups, failure counts, labels, the markdown and the table."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from glmkit.eval.adapters import ConstantAdapter, OracleAdapter
from glmkit.eval.definition import Benchmark
from glmkit.eval.records import SAMPLES_FILE, read_records
from glmkit.eval.report import SOURCE_ROW_PREFIX, summarize, summary_markdown, summary_rows
from glmkit.eval.runner import run_benchmark
from glmkit.scoring import Sample, Scores, Verifier


def _data(tmp_path: Path, n: int = 4, sources: tuple[str, ...] = ()) -> Path:
    """``n`` questions "What is i + 1?"; with ``sources``, sample i is tagged ``sources[i % len]``."""
    path = tmp_path / "qa.jsonl"
    rows = []
    for i in range(n):
        row: dict[str, Any] = {"id": f"q{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)}
        if sources:
            row["source"] = sources[i % len(sources)]
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_summarize_counts_metric_failures() -> None:
    records = [
        {"id": "a", "category": "x", "scores": {"m": 1.0, "m.sub": 0.5}, "latency_s": 0.1},
        {
            "id": "b",
            "category": "x",
            "scores": {"m": 0.0},
            "metric_failures": {"m": "judge down"},
            "latency_s": 0.3,
        },
        {"id": "c", "category": "y", "scores": {}, "error": "model: boom"},
    ]

    class M(Verifier):
        name = "m"

        def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
            raise NotImplementedError

    summary = summarize(records, [M()])
    assert summary["overall"]["scores"]["m"] == pytest.approx(1 / 3)
    assert summary["overall"]["scores"]["m.sub"] == pytest.approx(0.5)  # over scored samples only
    assert summary["overall"]["metric_failures"] == {"m": 1}
    assert summary["overall"]["errors"] == 1
    assert summary["overall"]["latency_s"] == pytest.approx(0.2)


def test_distance_sub_scores_are_labelled_lower_is_better(tmp_path: Path) -> None:
    bench = Benchmark("ocr", ["ocr_ned", "exact_match"], prompt="Q: {question}")
    # Answers "1".."4", prediction "1": distances 0, 1, 1, 1.
    result = run_benchmark(bench, ConstantAdapter("1"), tmp_path / "o", data=_data(tmp_path, n=4))
    assert result.summary["lower_is_better"] == ["ocr_ned.ned"]
    header, rows = summary_rows(result.summary)
    assert header[3:6] == ["ocr_ned", "exact_match", "ned (lower is better)"]
    assert rows[0][:6] == ["overall", "4", "0", "25.0", "25.0", "75.0"]
    md = summary_markdown(result.summary)
    assert "| ned (lower is better) |" in md and "higher is better unless a column says otherwise" in md


def test_sources_survive_the_jsonl_round_trip_and_get_summary_rows(tmp_path: Path) -> None:
    bench = Benchmark("toy", ["exact_match"], prompt="Q: {question}")
    data = _data(tmp_path, n=6, sources=("web", "synthetic", "synthetic"))
    out = tmp_path / "o"
    # Correct on q0..q2 only: web holds q0 and q3 (1 of 2), synthetic q1, q2, q4, q5 (2 of 4).
    run_benchmark(bench, OracleAdapter(), out, data=data, limit=3)
    resumed = run_benchmark(bench, ConstantAdapter("wrong"), out, data=data, resume=True)
    assert resumed.skipped == 3
    records = read_records(out / SAMPLES_FILE)  # written, then read back from samples.jsonl
    assert [records[f"q{i}"]["source"] for i in range(6)] == ["web", "synthetic", "synthetic"] * 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary == resumed.summary
    assert set(summary["sources"]) == {"web", "synthetic"}
    assert summary["sources"]["web"]["n"] == 2
    assert summary["sources"]["web"]["scores"]["exact_match"] == pytest.approx(1 / 2)
    assert summary["sources"]["synthetic"]["scores"]["exact_match"] == pytest.approx(2 / 4)
    _, rows = summary_rows(summary)
    assert [r[:4] for r in rows if r[0].startswith(SOURCE_ROW_PREFIX)] == [
        ["source: synthetic", "4", "0", "50.0"],
        ["source: web", "2", "0", "50.0"],
    ]
    assert "| source: web | 2 | 0 | 50.0 |" in (out / "summary.md").read_text()


def test_one_source_gets_no_source_rows(tmp_path: Path) -> None:
    bench = Benchmark("toy", ["exact_match"], prompt="Q: {question}")
    result = run_benchmark(bench, OracleAdapter(), tmp_path / "o", data=_data(tmp_path))
    assert set(result.summary["sources"]) == {"default"}  # untagged samples
    _, rows = summary_rows(result.summary)
    assert [r[0] for r in rows] == ["overall"]


def test_records_without_a_source_count_as_default() -> None:
    # Records written before the source tag existed (a resumed old run) fall in "default".
    records = [{"id": "a", "scores": {"m": 1.0}}, {"id": "b", "source": "web", "scores": {"m": 0.0}}]

    class M(Verifier):
        name = "m"

        def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
            raise NotImplementedError

    summary = summarize(records, [M()])
    assert {k: v["scores"]["m"] for k, v in summary["sources"].items()} == {"default": 1.0, "web": 0.0}
    assert "| source: default | 1 | 0 | 100.0 |" in summary_markdown(summary)


def test_every_column_names_its_scorer_and_stand_ins_are_marked_not_comparable(tmp_path: Path) -> None:
    from glmkit.eval.metrics.base import scorer_info
    from glmkit.eval.report import NOT_COMPARABLE_LABEL, scorer_lines

    class StandIn(Verifier):
        name = "visualish"

        def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
            return self._out(0.5, visual=0.25)

        def describe(self) -> dict[str, Any]:
            info = scorer_info(
                "Some benchmark: visual_eval", not_comparable=[self.key], why_not_comparable="SSIM ran"
            )
            return {**super().describe(), **info}

    bench = Benchmark("mixed", ["chartqa", "chartqa_lenient", "exact_match"])
    result = run_benchmark(bench, OracleAdapter(), tmp_path / "o", data=_data(tmp_path, n=2))
    summary = result.summary
    assert (
        summary["scorers"]["chartqa"] == "VLMEvalKit vlmeval/dataset/utils/vqa_eval.py: relaxed_correctness"
    )
    assert "lenient variant, not a benchmark's reference" in summary["scorers"]["chartqa_lenient"]
    assert "glmkit variant" in summary["scorers"]["exact_match"] and summary["not_comparable"] == {}
    md = summary_markdown(summary)
    assert "Scorer of each column:" in md and "- chartqa: VLMEvalKit" in md
    # a stand-in column is labelled in the header and explained under the table
    summary = summarize([{"id": "a", "scores": {"visualish": 0.5, "visualish.visual": 0.25}}], [StandIn()])
    header, _ = summary_rows(summary)
    assert f"visualish {NOT_COMPARABLE_LABEL}" in header and "visual" in header
    md = summary_markdown(summary)
    assert "Not comparable with published numbers: visualish (SSIM ran)" in md
    assert scorer_lines(summary) == ["visualish, visualish.visual: Some benchmark: visual_eval"]
