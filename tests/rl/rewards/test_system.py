"""The reward system with rule and process verifiers: breakdown, aggregation per category, empty
answers, failure policies per source, counters, and the hand-off to rollout metrics."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from glmkit.eval.metrics import ExactMatchScorer, GroundingScorer
from glmkit.eval.metrics.answer_format import AnswerFormat
from glmkit.rl.metrics import rollout_metrics
from glmkit.rl.rewards import (
    CategoryRewards,
    Gated,
    MinScore,
    Product,
    RewardSystem,
    SourcePolicy,
    UnknownCategory,
    WeightedSum,
    is_empty_answer,
    rollout_fields,
)
from glmkit.scoring import Sample
from tests.rl.rewards.fake_verifiers import (
    BusyLoop,
    Constant,
    Echo,
    Garbage,
    Raises,
    Reports,
    SleepsForever,
)

COUNT = Sample("c1", "How many cats?", "3", category="counting", source="clevr")
BOX = Sample(
    "g1", "Where is the cat?", {"box": [100, 100, 300, 300]}, category="grounding", source="refcoco",
    metadata={"image_size": [1000, 1000]},
)  # fmt: skip


def _system(**kw) -> RewardSystem:
    verifiers = {
        "format": AnswerFormat(),
        "exact": ExactMatchScorer(),
        "iou": GroundingScorer(pred_space="norm1000", answer_space="pixels"),
        "half": Constant(0.5),
    }
    categories = {
        "counting": CategoryRewards(
            format=["format"], verifiers=["exact"], aggregator=WeightedSum({"format": 0.1, "exact": 0.9})
        ),
        "grounding": {"format": ["format"], "verifiers": ["iou"], "aggregator": "gated"},
        "*": {"verifiers": ["half"]},
    }
    return RewardSystem(verifiers, categories, score_keys={"iou": "grounding.iou"}, **kw)


def test_reward_and_breakdown_with_real_eval_metrics() -> None:
    rs = _system()
    right = rs.score(COUNT, "<think>1, 2, 3</think><answer>3</answer>")
    assert right.reward == pytest.approx(1.0) and not right.failed and not right.excluded
    assert list(right.breakdown) == ["format", "exact"]  # format first
    assert right.scores == {"format": 1.0, "exact": 1.0}
    assert right.breakdown["exact"].details["extracted"] == "3"
    # well formed but wrong: 0.1 * 1 + 0.9 * 0 = 0.1
    assert rs.score(COUNT, "<think>..</think><answer>4</answer>").reward == pytest.approx(0.1)
    # right but malformed: 0.1 * 0 + 0.9 * 1 = 0.9
    assert rs.score(COUNT, "3").reward == pytest.approx(0.9)
    # IoU read from the sub-score grounding.iou: box [100,100,250,300] vs [100,100,300,300] -> 0.75
    box = rs.score(BOX, "<answer>[100,100,250,300]</answer>")
    assert box.reward == pytest.approx(0.75) and box.breakdown["iou"].score == pytest.approx(0.75)
    # other categories use '*'
    other = rs.score(Sample("o", "q", "a", category="chart"), "anything")
    assert other.reward == 0.5 and list(other.breakdown) == ["half"]


def test_gated_skips_content_when_format_fails() -> None:
    rs = _system()
    out = rs.score(BOX, "[100,100,250,300]")  # the right box, but no <answer> tags
    assert out.reward == 0.0 and not out.failed
    assert out.breakdown["format"].score == 0.0
    assert out.breakdown["iou"].status == "skipped" and out.breakdown["iou"].score is None


@pytest.mark.parametrize(
    ("aggregator", "expected"),
    [
        # fmt = 1, a = 0.5, b = 0.8 (hand-computed)
        (WeightedSum({"fmt": 0.2, "a": 0.5, "b": 0.3}), 0.2 + 0.25 + 0.24),
        (MinScore(), 0.5),
        (Product(), 0.4),
        (Gated(WeightedSum({"a": 0.5, "b": 0.5})), 0.65),
    ],
)
def test_each_aggregation_in_the_system(aggregator, expected: float) -> None:
    rs = RewardSystem(
        {"fmt": Constant(1.0), "a": Constant(0.5), "b": Constant(0.8)},
        {"*": CategoryRewards(format=["fmt"], verifiers=["a", "b"], aggregator=aggregator)},
    )
    assert rs.score(COUNT, "<answer>x</answer>").reward == pytest.approx(expected)


def test_empty_answers_get_no_content_reward() -> None:
    exact = Constant(1.0)  # would give full marks if asked
    rs = RewardSystem(
        {"fmt": Constant(1.0), "exact": exact},
        {"*": CategoryRewards(format=["fmt"], verifiers=["exact"], aggregator=WeightedSum({"fmt": 0.1}))},
    )
    for empty in ["", "   ", "<think>long reasoning, no answer</think>", "<answer> </answer>", None]:
        assert is_empty_answer(empty)
        out = rs.score(COUNT, empty)  # type: ignore[arg-type]
        assert out.empty_answer and out.reward == pytest.approx(0.1)  # the format part only
        assert out.breakdown["exact"].status == "empty" and out.breakdown["exact"].score == 0.0
    assert exact.calls == 0
    assert not is_empty_answer("<think>x</think>3")


def test_failures_fall_back_or_exclude_per_source() -> None:
    verifiers = {
        "fmt": Constant(1.0),
        "raises": Raises(),
        "text": Garbage("text"),
        "nan": Garbage("nan"),
        "missing": Garbage("missing"),
        "big": Garbage("big"),
        "string": Garbage("string"),
        "reports": Reports(),
    }
    categories = {
        name: CategoryRewards(format=["fmt"], verifiers=[name]) for name in verifiers if name != "fmt"
    }
    rs = RewardSystem(
        verifiers,
        categories,
        sources={"strict": SourcePolicy(on_failure="exclude"), "lenient": {"fallback_reward": 0.25}},
        fallback_reward=0.1,
    )
    expected_reason = {
        "raises": ("error", "RuntimeError: verifier exploded"),
        "text": ("garbage", "returned str, not Scores"),
        "nan": ("garbage", "score 'garbage' is nan"),
        "missing": ("garbage", "no score 'garbage' among ['something_else']"),
        "big": ("garbage", "score 'garbage' = 7 is outside [0, 1]"),
        "string": ("garbage", "score 'garbage' is not a number: 'high'"),
        "reports": ("reported", "could not render the page"),
    }
    for name, (kind, reason) in expected_reason.items():
        for source, reward, excluded in [
            ("strict", math.nan, True),
            ("lenient", 0.25, False),
            ("x", 0.1, False),
        ]:
            sample = Sample(f"{name}-{source}", "q", "a", category=name, source=source)
            out = rs.score(sample, "<answer>a</answer>")
            assert out.failed and out.excluded is excluded
            assert out.policy == ("exclude" if excluded else "fallback")
            assert math.isnan(out.reward) if excluded else out.reward == reward
            assert out.failures == {name: reason}
            assert out.breakdown[name].failure_kind == kind and out.breakdown["fmt"].status == "ok"
    counts = rs.log_dict()
    assert counts["rewards/samples/count"] == 21 and counts["rewards/failures/count"] == 21
    assert counts["rewards/failures/strict/raises/count"] == 1
    assert (
        counts["rewards/failure_kind/garbage/count"] == 15 and counts["rewards/failure_kind/error/count"] == 3
    )
    assert counts["rewards/excluded/strict/count"] == 7 and counts["rewards/fallback/lenient/count"] == 7
    rs.counts.reset()
    assert rs.log_dict()["rewards/samples/count"] == 0


def test_results_feed_rollout_metrics() -> None:
    rs = RewardSystem(
        {"ok": Constant(1.0), "bad": Raises()},
        {"good": {"verifiers": ["ok"]}, "broken": {"verifiers": ["bad"]}},
        sources={"b": {"on_failure": "exclude"}},
    )
    samples = [
        Sample("p1", "q", "a", category="good", source="a"),
        Sample("p1", "q", "a", category="good", source="a"),
        Sample("p2", "q", "a", category="broken", source="b"),
        Sample("p2", "q", "a", category="good", source="b"),
    ]
    results = rs.score_batch(samples, ["x"] * 4)
    metrics = rollout_metrics(**rollout_fields(results), group_ids=[s.id for s in samples])
    assert metrics["reward/mean"] == 1.0  # the excluded sample (NaN) is not averaged
    assert metrics["verifier_failures/count"] == 1.0 and metrics["verifier_failures/b/count"] == 1.0
    assert metrics["samples/b/count"] == 2.0


def test_hanging_cpu_verifiers_are_killed_and_training_goes_on() -> None:
    rs = RewardSystem(
        {"fmt": Constant(1.0), "sleep": SleepsForever(), "spin": BusyLoop(), "echo": Echo()},
        {
            "sleep": {"format": ["fmt"], "verifiers": ["sleep"]},
            "spin": {"format": ["fmt"], "verifiers": ["spin"]},
            "echo": {"verifiers": ["echo"]},
        },
        sources={"drop": {"on_failure": "exclude"}},
        process_verifiers=["sleep", "spin", "echo"],
        num_workers=2,
        deadlines={"sleep": 0.5, "spin": 0.5},
    )
    with rs:
        assert rs.modes == {"fmt": "local", "sleep": "process", "spin": "process", "echo": "process"}
        warm = rs.score(Sample("w", "q", "a", category="echo"), "0123456789")  # start the workers
        assert warm.reward == 1.0 and warm.breakdown["echo"].details["pid"] in rs.pool.pids()  # type: ignore[union-attr]
        samples = [
            Sample("a", "q", "x", category="sleep", source="keep"),
            Sample("b", "q", "x", category="spin", source="drop"),
        ]
        start = time.monotonic()
        hung = rs.score_batch(samples, ["<answer>x</answer>"] * 2)
        assert time.monotonic() - start < 10.0
        assert hung[0].reward == 0.0 and not hung[0].excluded
        assert hung[1].excluded and math.isnan(hung[1].reward)
        for out, name in zip(hung, ["sleep", "spin"], strict=True):
            outcome = out.breakdown[name]
            assert outcome.failure_kind == "timeout"
            assert f"{name} did not finish within 0.5 s" in (outcome.failure or "")
        after = rs.score(Sample("w2", "q", "a", category="echo"), "01234")  # replaced workers still score
        assert after.reward == 0.5
        assert rs.log_dict()["rewards/failure_kind/timeout/count"] == 2


def test_score_inside_a_running_loop() -> None:
    rs = _system()

    async def main() -> tuple[float, float]:
        inline = rs.score(COUNT, "<answer>3</answer>")  # rule verifiers only: no loop needed
        awaited = await rs.score_async(COUNT, "<answer>3</answer>")
        return inline.reward, awaited.reward

    assert asyncio.run(main()) == (pytest.approx(1.0), pytest.approx(1.0))


def test_config_errors_name_the_bad_value() -> None:
    verifiers = {"format": AnswerFormat(), "exact": ExactMatchScorer()}
    with pytest.raises(
        ValueError, match=r"categories\['c'\].verifiers: unknown verifier 'exakt'. Did you mean 'exact'"
    ):
        RewardSystem(verifiers, {"c": {"verifiers": ["exakt"]}})
    with pytest.raises(
        ValueError, match=r"categories\['c'\]: unknown key 'verifier'. Did you mean 'verifiers'"
    ):
        RewardSystem(verifiers, {"c": {"verifier": ["exact"]}})
    with pytest.raises(
        ValueError, match=r"sources\['s'\]: on_failure must be one of fallback, exclude, got 'drop'"
    ):
        RewardSystem(verifiers, {"c": {"verifiers": ["exact"]}}, sources={"s": {"on_failure": "drop"}})
    with pytest.raises(ValueError, match="process_verifiers: unknown verifier 'exactt'"):
        RewardSystem(verifiers, {"c": {"verifiers": ["exact"]}}, process_verifiers=["exactt"])
    with pytest.raises(TypeError, match=r"verifiers\['x'\] must be a glmkit.scoring.Verifier, got str"):
        RewardSystem({"x": "exact_match"}, {"c": {"verifiers": ["x"]}})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"categories\['c'\].aggregator: gated needs a gate"):
        RewardSystem(verifiers, {"c": {"verifiers": ["exact"], "aggregator": "gated"}})
    with pytest.raises(ValueError, match=r"\['format'\] listed both as format and as content"):
        RewardSystem(verifiers, {"c": {"verifiers": ["format"], "format": ["format"]}})
    rs = RewardSystem(verifiers, {"c": {"verifiers": ["exact"]}})
    with pytest.raises(
        UnknownCategory,
        match=r"^the reward system has no category 'counting' \(sample 'c1', source 'clevr'\); its categories: c\.",
    ):
        rs.score(COUNT, "3")


def test_a_source_may_override_its_categories() -> None:
    rs = RewardSystem(
        {"exact": ExactMatchScorer(), "half": Constant(0.5)},
        {"counting": {"verifiers": ["exact"]}},
        sources={"synthetic": {"rewards": {"verifiers": ["half"]}}},
    )
    assert rs.score(COUNT, "3").reward == 1.0
    synthetic = Sample("s", "q", "3", category="counting", source="synthetic")
    assert rs.score(synthetic, "3").reward == 0.5
