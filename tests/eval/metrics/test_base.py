"""Every registered metric is a verifier whose async score equals its sync score."""

from __future__ import annotations

import asyncio

import pytest

from glmkit.eval.demo import make_demo
from glmkit.eval.metrics import METRICS
from glmkit.scoring import Sample, Verifier, load_samples

# Metrics with an outside dependency get their own sync/async tests: the judges need a server
# (test_judge.py, test_simplevqa.py), Design2Code a browser (test_design2code.py).
NEEDS_SERVICE = {"llm_judge", "simplevqa", "design2code"}
# Samples for metrics whose answers need metadata no demo writes.
EXTRA_SAMPLES = [
    Sample("mv-int", "q", "3", metadata={"question_type": "free_form", "answer_type": "integer"}),
    Sample(
        "mv-mc",
        "q",
        "5 cm",
        metadata={"question_type": "multi_choice", "answer_type": "text", "choices": ["3 cm", "5 cm"]},
    ),
]
DEMOS = ("demo-grounding", "demo-pointing", "demo-ocr", "demo-vqa", "demo-imagemining")


@pytest.fixture(scope="module")
def demo_samples(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    root = tmp_path_factory.mktemp("demos")
    return [s for name in DEMOS for s in load_samples(make_demo(name, root / name, n=3))] + EXTRA_SAMPLES


def _scorable(metric: Verifier, samples: list[Sample]) -> list[Sample]:
    out = []
    for sample in samples:
        try:
            metric.check_answer(sample)
        except ValueError:
            continue
        out.append(sample)
    return out


@pytest.mark.parametrize("name", sorted(set(METRICS.names()) - NEEDS_SERVICE))
def test_async_scores_equal_sync_scores(name: str, demo_samples: list[Sample]) -> None:
    metric = METRICS.get(name)()
    assert isinstance(metric, Verifier)
    samples = _scorable(metric, demo_samples)
    assert samples, f"no demo sample has an answer {name} can score"
    for sample in samples:
        for response in (metric.oracle(sample), "nothing", f"<think>{metric.oracle(sample)}</think>no"):
            sync = metric.score(sample, response, {"turns": 1})
            asynchronous = asyncio.run(metric.ascore(sample, response, {"turns": 1}))
            assert asynchronous == sync, (name, sample.id, response)
        if name != "vqa_soft_lenient":  # one reference answer is one annotator of three: 1/3 at best
            assert metric.score(sample, metric.oracle(sample)).scores[metric.key] == pytest.approx(1.0)


def test_scores_are_named_under_the_metric_key(demo_samples: list[Sample]) -> None:
    metric = METRICS.get("grounding")(key="box")
    (sample, *_) = _scorable(metric, demo_samples)
    assert set(metric.score(sample, metric.oracle(sample)).scores) == {"box", "box.iou"}
