"""Benchmark definitions: metric specs, the judge slot, typo messages and the registries' kinds."""

from __future__ import annotations

import pytest

from glmkit.eval.adapters import MODEL_ADAPTERS
from glmkit.eval.definition import BENCHMARKS, Benchmark, get_benchmark
from glmkit.eval.metrics import METRICS
from glmkit.eval.metrics.judge import JudgeScorer
from glmkit.eval.metrics.vqa import ExactMatchScorer, VQAScorer
from glmkit.registry import RegistryError


def test_a_metric_spec_is_a_registered_name_a_class_name_or_an_import_path() -> None:
    bench = Benchmark(
        "specs",
        [
            "exact_match",
            {"class_path": "VQAScorer", "init_args": {"rel_tol": 0.05, "key": "relaxed"}},
            {"class_path": "glmkit.eval.metrics.vqa.ExactMatchScorer", "init_args": {"key": "em2"}},
        ],
    )
    exact, relaxed, em2 = bench.build_metrics()
    assert type(exact) is ExactMatchScorer and exact.key == "exact_match"
    assert type(relaxed) is VQAScorer and relaxed.key == "relaxed" and relaxed.numeric.rel_tol == 0.05
    assert type(em2) is ExactMatchScorer and em2.key == "em2"


def test_a_typo_names_the_benchmark_the_key_and_the_closest_metrics() -> None:
    with pytest.raises(ValueError, match=r"benchmark 'typo': metrics\[1\]\.class_path.*'exact_match'") as exc:
        Benchmark("typo", ["vqa", {"class_path": "exact_mach"}]).build_metrics()
    assert "metrics" in str(exc.value)  # the expected kind


def test_the_old_name_and_kwargs_pairs_are_refused_with_the_spec_to_write() -> None:
    with pytest.raises(ValueError, match=r"metrics\[0\].*write \{'class_path': 'grounding', 'init_args'"):
        Benchmark("old", [("grounding", {"pred_space": "norm1000"})])
    with pytest.raises(ValueError, match="has no metrics"):
        Benchmark("empty", [])


def test_a_class_path_that_is_no_verifier_is_refused() -> None:
    with pytest.raises(
        TypeError, match=r"metrics\[0\]: collections\.OrderedDict is not a glmkit\.scoring\.Verifier"
    ):
        Benchmark("odd", ["collections.OrderedDict"]).build_metrics()


def test_the_judge_url_reaches_only_metrics_that_declare_the_slot() -> None:
    bench = Benchmark(
        "judged",
        [{"class_path": "llm_judge", "init_args": {"judge_url": None, "timeout": 5.0}}, "exact_match"],
    )
    assert bench.takes_judge and not Benchmark("plain", ["exact_match"]).takes_judge
    with pytest.raises(
        ValueError, match="needs a judge endpoint: set init_args.judge_url or pass --judge-url"
    ):
        bench.build_metrics()
    judge, exact = bench.with_judge("http://127.0.0.1:9/v1@judge-7b").build_metrics()
    assert isinstance(judge, JudgeScorer) and isinstance(exact, ExactMatchScorer)
    assert judge.judge.client.model == "judge-7b" and judge.judge.client.timeout == 5.0
    assert bench.metrics[0]["init_args"]["judge_url"] is None  # type: ignore[index]  # a copy was changed


def test_registered_benchmarks_are_shared_and_immutable() -> None:
    bench = get_benchmark("refcoco")
    assert bench is get_benchmark("refcoco")
    with pytest.raises(AttributeError):
        bench.prompt = "changed"  # type: ignore[misc]
    assert isinstance(bench.metrics, tuple)


def test_each_registry_refuses_an_object_of_another_kind() -> None:
    with pytest.raises(RegistryError, match="is not a glmkit.eval.definition.Benchmark"):
        BENCHMARKS.register("not-a-benchmark-test")(lambda: Benchmark("x", ["vqa"]))
    with pytest.raises(RegistryError, match="is not a glmkit.scoring.verifier.Verifier"):
        METRICS.register("not-a-metric-test")(dict)
    with pytest.raises(RegistryError, match="is not a glmkit.eval.adapters.ModelAdapter"):
        MODEL_ADAPTERS.register("not-an-adapter-test")(ExactMatchScorer)
    assert "not-a-benchmark-test" not in BENCHMARKS and "not-a-metric-test" not in METRICS
