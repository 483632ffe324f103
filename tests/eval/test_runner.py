"""The runner: result files, crash isolation, incremental writing and resume, pass@k, metadata to verifiers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from glmkit.eval.adapters import ConstantAdapter, ModelAdapter, OracleAdapter, Prediction, Request
from glmkit.eval.definition import Benchmark, get_benchmark
from glmkit.eval.metrics.base import METRICS
from glmkit.eval.records import SAMPLES_FILE, read_records
from glmkit.eval.runner import run_benchmark
from glmkit.scoring import DataError, Sample, Scores, Verifier


def _data(tmp_path: Path, n: int = 6) -> Path:
    path = tmp_path / "qa.jsonl"
    rows = [
        {
            "id": f"q{i}",
            "question": f"What is {i} + 1?",
            "answer": str(i + 1),
            "category": "even" if i % 2 == 0 else "odd",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


BENCH = Benchmark("toy", ["exact_match", "numeric"], prompt="Q: {question}")


class Scripted(ModelAdapter):
    """Answers correctly except on ids listed in ``wrong``; raises on ids in ``crash``."""

    name = "scripted-test"

    def __init__(
        self, wrong: set[str] = frozenset(), crash: set[str] = frozenset(), interrupt: str | None = None
    ):
        self.wrong, self.crash, self.interrupt = set(wrong), set(crash), interrupt
        self.seen: list[str] = []

    def predict(self, request: Request) -> Prediction:
        sid = request.sample.id
        self.seen.append(sid)
        assert request.prompt.startswith("Q: What is")
        if sid == self.interrupt:
            raise KeyboardInterrupt  # the whole process dies here
        if sid in self.crash:
            raise RuntimeError(f"model exploded on {sid}")
        if sid in self.wrong:
            return Prediction("no idea")
        return Prediction(
            f"<|begin_of_box|>{request.sample.answer}<|end_of_box|>",
            tool_calls=1,
            turns=2,
            tools_used=["calc"],
        )


def test_result_files_and_summary(tmp_path: Path) -> None:
    result = run_benchmark(BENCH, Scripted(wrong={"q1"}), tmp_path / "out", data=_data(tmp_path))
    out = tmp_path / "out"
    lines = (out / SAMPLES_FILE).read_text().splitlines()
    assert len(lines) == 6
    rec = json.loads(lines[0])
    assert rec["id"] == "q0" and rec["prediction"].endswith("<|end_of_box|>")
    assert rec["scores"] == {"exact_match": 1.0, "numeric": 1.0}
    assert rec["tool_calls"] == 1 and rec["turns"] == 2 and rec["tools_used"] == ["calc"]
    assert rec["latency_s"] >= 0 and rec["prompt"] == "Q: What is 0 + 1?"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["scores"]["exact_match"] == pytest.approx(5 / 6)
    assert summary["categories"]["odd"]["scores"]["exact_match"] == pytest.approx(2 / 3)
    assert summary["categories"]["even"]["n"] == 3
    assert summary["overall"]["tool_calls"] == 1 and summary["overall"]["turns"] == 2
    assert summary["primary"] == "exact_match" and summary["benchmark"] == "toy"
    md = (out / "summary.md").read_text()
    assert "| overall | 6 | 0 | 83.3 | 83.3 |" in md
    assert result.summary == summary


def test_crash_on_one_sample_is_isolated(tmp_path: Path) -> None:
    result = run_benchmark(BENCH, Scripted(crash={"q2"}), tmp_path / "out", data=_data(tmp_path))
    records = {r["id"]: r for r in result.records}
    assert "model exploded on q2" in records["q2"]["error"] and records["q2"]["scores"] == {}
    assert all(not records[i].get("error") for i in records if i != "q2")
    overall = result.summary["overall"]
    assert overall["errors"] == 1
    assert overall["scores"]["exact_match"] == pytest.approx(5 / 6)  # the crashed sample counts as 0


class Broken(Verifier):
    name = "broken-test"

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        if sample.id == "q3":
            raise ZeroDivisionError("bad metric")
        return self._out(1.0)


METRICS.add("broken-test", Broken, override=True)


def test_metric_crash_is_recorded_and_other_metrics_still_score(tmp_path: Path) -> None:
    bench = Benchmark("toy", ["exact_match", "broken-test"], prompt="Q: {question}")
    result = run_benchmark(bench, Scripted(), tmp_path / "out", data=_data(tmp_path))
    rec = next(r for r in result.records if r["id"] == "q3")
    assert rec["scores"] == {"exact_match": 1.0}
    assert "broken-test: ZeroDivisionError: bad metric" in rec["error"]


def test_interrupted_run_keeps_finished_samples_and_resumes(tmp_path: Path) -> None:
    data = _data(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(BENCH, Scripted(interrupt="q3", crash={"q1"}), out, data=data)
    written = read_records(out / SAMPLES_FILE)
    assert sorted(written) == ["q0", "q1", "q2"]  # written as they finished
    # A fresh run refuses to clobber them.
    with pytest.raises(FileExistsError, match="--resume"):
        run_benchmark(BENCH, Scripted(), out, data=data)
    # Resume: finished ids are skipped, the failed one (q1) is retried, the rest run.
    adapter = Scripted()
    result = run_benchmark(BENCH, adapter, out, data=data, resume=True)
    assert adapter.seen == ["q1", "q3", "q4", "q5"]
    assert result.skipped == 2
    assert [r["id"] for r in result.records] == [f"q{i}" for i in range(6)]
    assert result.summary["overall"]["errors"] == 0
    assert result.summary["overall"]["scores"]["exact_match"] == 1.0


def test_resume_after_a_torn_last_line_loses_no_record(tmp_path: Path) -> None:
    # Old code appended the next record to the fragment: one merged, unreadable line, and the
    # sample was lost for good (every later --resume ran it again and lost it again).
    data = _data(tmp_path, n=6)
    out = tmp_path / "out"
    run_benchmark(BENCH, Scripted(), out, data=data, limit=4)
    path = out / SAMPLES_FILE
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3]) + lines[3][:40])  # crash in the middle of writing q3
    with pytest.warns(UserWarning, match=r"samples\.jsonl: its last line 4 .* cut short by a crash"):
        result = run_benchmark(BENCH, Scripted(), out, data=data, resume=True)
    assert result.skipped == 3 and len(result.records) == 6
    assert sorted(read_records(path)) == [f"q{i}" for i in range(6)]
    assert len(path.read_text().splitlines()) == 6
    adapter = Scripted()
    again = run_benchmark(BENCH, adapter, out, data=data, resume=True)
    assert again.skipped == 6 and adapter.seen == []


def test_resume_keeps_a_complete_last_record_missing_its_newline(tmp_path: Path) -> None:
    data = _data(tmp_path, n=3)
    out = tmp_path / "out"
    run_benchmark(BENCH, Scripted(), out, data=data, limit=2)
    path = out / SAMPLES_FILE
    path.write_text(path.read_text().rstrip("\n"))
    adapter = Scripted()
    with pytest.warns(UserWarning, match="lacked a newline"):
        result = run_benchmark(BENCH, adapter, out, data=data, resume=True)
    assert adapter.seen == ["q2"] and result.skipped == 2
    assert sorted(read_records(path)) == ["q0", "q1", "q2"]


LONE_SURROGATE = json.loads('"EXIT \\ud83d"')  # an emoji cut by max_tokens, as response.json() gives it


def test_lone_surrogate_in_a_prediction_is_written_and_reads_back(tmp_path: Path) -> None:
    class Cut(ModelAdapter):
        name = "cut-test"

        def predict(self, request: Request) -> Prediction:
            return Prediction(LONE_SURROGATE)

    bench = Benchmark("toy", ["exact_match"], prompt="Q: {question}")
    out = tmp_path / "out"
    result = run_benchmark(bench, Cut(), out, data=_data(tmp_path, n=2))  # UnicodeEncodeError before
    raw = (out / SAMPLES_FILE).read_bytes().decode("utf-8")
    assert "\\ud83d" in raw
    records = read_records(out / SAMPLES_FILE)
    assert [r["prediction"] for r in records.values()] == [LONE_SURROGATE] * 2
    assert [r["prediction"] for r in result.records] == [LONE_SURROGATE] * 2
    summary = json.loads((out / "summary.json").read_bytes().decode("utf-8"))
    assert summary["overall"]["n"] == 2 and summary == result.summary


def test_truncated_last_line_is_ignored_on_resume(tmp_path: Path) -> None:
    data = _data(tmp_path, n=3)
    out = tmp_path / "out"
    run_benchmark(BENCH, Scripted(), out, data=data, limit=2)
    with (out / SAMPLES_FILE).open("a") as fh:
        fh.write('{"id": "q2", "predic')  # a write cut short by a crash
    adapter = Scripted()
    with pytest.warns(UserWarning, match="cut short"):
        result = run_benchmark(BENCH, adapter, out, data=data, resume=True)
    assert adapter.seen == ["q2"] and len(result.records) == 3


def test_overwrite_and_limit(tmp_path: Path) -> None:
    data = _data(tmp_path)
    out = tmp_path / "out"
    run_benchmark(BENCH, Scripted(), out, data=data)
    result = run_benchmark(BENCH, Scripted(wrong={"q0"}), out, data=data, overwrite=True, limit=2)
    assert len((out / SAMPLES_FILE).read_text().splitlines()) == 2
    assert result.summary["overall"]["scores"]["exact_match"] == 0.5


def test_pass_at_k_with_several_attempts(tmp_path: Path) -> None:
    class Alternating(ModelAdapter):
        name = "alternating-test"

        def __init__(self) -> None:
            self.calls: dict[str, int] = {}

        def predict(self, request: Request) -> Prediction:
            n = self.calls[request.sample.id] = self.calls.get(request.sample.id, 0) + 1
            # q0: right on attempt 1 only; q1: never; others: always.
            right = {"q0": n == 1, "q1": False}.get(request.sample.id, True)
            return Prediction(str(request.sample.answer) if right else "wrong")

    result = run_benchmark(BENCH, Alternating(), tmp_path / "out", data=_data(tmp_path), num_samples=4)
    recs = {r["id"]: r for r in result.records}
    assert recs["q0"]["pass"] == {"n": 4, "c": 1} and recs["q1"]["pass"] == {"n": 4, "c": 0}
    assert recs["q0"]["scores"]["exact_match"] == pytest.approx(0.25) and len(recs["q0"]["attempts"]) == 4
    table = result.summary["overall"]["pass_at_k"]
    assert list(table) == ["pass@1", "pass@2", "pass@4"]
    assert table["pass@1"] == pytest.approx((0.25 + 0 + 4) / 6)
    assert table["pass@4"] == pytest.approx(5 / 6)
    assert "pass@2" in (tmp_path / "out" / "summary.md").read_text()


def test_workers_give_the_same_result(tmp_path: Path) -> None:
    data = _data(tmp_path, n=8)
    result = run_benchmark(BENCH, Scripted(wrong={"q5"}), tmp_path / "o", data=data, workers=4)
    assert [r["id"] for r in result.records] == [f"q{i}" for i in range(8)]
    assert result.summary["overall"]["scores"]["exact_match"] == pytest.approx(7 / 8)


def test_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="has no default data: pass --data"):
        run_benchmark(BENCH, ConstantAdapter("1"), tmp_path / "o")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "question": "q", "answer": "x"}\n')
    with pytest.raises(
        DataError, match=r"bad\.jsonl:1: field 'answer': numeric metric: reference 'x' holds no number"
    ):
        run_benchmark(BENCH, ConstantAdapter("1"), tmp_path / "o2", data=bad)
    with pytest.raises(ValueError, match="metric keys must be unique"):
        Benchmark("dup", ["exact_match", "exact_match"]).build_metrics()
    with pytest.raises(KeyError, match="Did you mean 'demo-ocr'"):
        get_benchmark("demo-orc")


def test_prompt_template_errors_are_recorded_per_sample(tmp_path: Path) -> None:
    bench = Benchmark("tpl", ["exact_match"], prompt="Q: {question} in {unit}")
    result = run_benchmark(bench, OracleAdapter(), tmp_path / "o", data=_data(tmp_path, n=2))
    assert all("cannot be filled" in r["error"] and "'unit'" in r["error"] for r in result.records)


def test_failed_attempt_counts_as_wrong_in_pass_at_k(tmp_path: Path) -> None:
    class Flaky(ModelAdapter):
        name = "flaky-test"

        def __init__(self) -> None:
            self.calls = 0

        def predict(self, request: Request) -> Prediction:
            self.calls += 1
            if self.calls == 2:
                raise ConnectionError("endpoint dropped")
            return Prediction(str(request.sample.answer))

    result = run_benchmark(BENCH, Flaky(), tmp_path / "o", data=_data(tmp_path, n=1), num_samples=2)
    (rec,) = result.records
    assert rec["pass"] == {"n": 2, "c": 1}
    assert rec["scores"]["exact_match"] == 0.5  # the failed attempt counts as 0
    assert "error" not in rec  # a sample with a scored attempt is no error
    assert rec["attempt_errors"] == ["attempt 1: model: ConnectionError: endpoint dropped"]
    assert result.summary["overall"]["pass_at_k"]["pass@2"] == 1.0


class EveryFourthCallFails(ModelAdapter):
    """A transient endpoint failure on every 4th call (the reviewer's flaky model)."""

    name = "every-fourth-test"

    def __init__(self, fail_all: set[str] = frozenset()) -> None:
        self.calls = 0
        self.fail_all = set(fail_all)
        self.seen: list[str] = []

    def predict(self, request: Request) -> Prediction:
        self.calls += 1
        self.seen.append(request.sample.id)
        if self.calls % 4 == 0 or request.sample.id in self.fail_all:
            raise RuntimeError("HTTP 503 (transient)")
        return Prediction(str(request.sample.answer))


def test_partly_failed_attempts_are_not_sample_errors(tmp_path: Path) -> None:
    # Old code set "error" on a sample when any of its k attempts failed: 3 samples x 4 attempts
    # with one failure each counted as 3 errors (the CLI said every sample failed), and --resume
    # ran every such sample again.
    data = _data(tmp_path, n=4)
    out = tmp_path / "out"
    result = run_benchmark(BENCH, EveryFourthCallFails(fail_all={"q3"}), out, data=data, num_samples=4)
    recs = {r["id"]: r for r in result.records}
    for sid in ("q0", "q1", "q2"):
        assert "error" not in recs[sid] and len(recs[sid]["attempt_errors"]) == 1
        assert recs[sid]["pass"] == {"n": 4, "c": 3}  # the failed attempt counts as incorrect
        assert recs[sid]["scores"]["exact_match"] == pytest.approx(0.75)
        assert recs[sid]["prediction"] == str(int(sid[1:]) + 1)
    assert recs["q3"]["error"].startswith("all 4 attempts failed: model: RuntimeError: HTTP 503")
    assert recs["q3"]["scores"] == {} and recs["q3"]["pass"] == {"n": 4, "c": 0}
    overall = result.summary["overall"]
    assert overall["errors"] == 1
    assert (overall["attempts"], overall["failed_attempts"]) == (16, 7)
    assert overall["pass_at_k"]["pass@1"] == pytest.approx(9 / 16)
    assert "Failed attempts (counted as incorrect): 7 of 16" in (out / "summary.md").read_text()
    # Resume runs only the sample that has no score.
    adapter = EveryFourthCallFails()
    again = run_benchmark(BENCH, adapter, out, data=data, num_samples=4, resume=True)
    assert set(adapter.seen) == {"q3"} and again.skipped == 3
    assert again.summary["overall"]["errors"] == 0


class SeesMetadata(Verifier):
    """Scores 1 when the runner told it how the response was produced."""

    name = "sees-metadata-test"

    def __init__(self, key: str | None = None) -> None:
        super().__init__(key)
        self.seen: list[dict[str, Any]] = []

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        self.seen.append(dict(metadata or {}))
        return self._out(float(bool(metadata) and metadata.get("tool_calls") == 1))


METRICS.add("sees-metadata-test", SeesMetadata, override=True)


def test_verifiers_get_the_response_metadata_and_records_carry_the_source(tmp_path: Path) -> None:
    data = tmp_path / "tagged.jsonl"
    rows = [{"id": "a", "question": "What is 0 + 1?", "answer": "1", "source": "synthetic-v1"}]
    data.write_text(json.dumps(rows[0]) + "\n")
    bench = Benchmark("meta", ["sees-metadata-test"], prompt="Q: {question}")
    result = run_benchmark(bench, Scripted(), tmp_path / "o", data=data)
    (record,) = result.records
    assert record["scores"] == {"sees-metadata-test": 1.0}  # tool_calls reached the verifier
    assert record["source"] == "synthetic-v1"
    assert read_records(tmp_path / "o" / SAMPLES_FILE)["a"]["source"] == "synthetic-v1"
