"""Aggregation strategies against hand-computed values, by registered name."""

from __future__ import annotations

import pytest

from glmkit.registry import RegistryError, registry
from glmkit.rl.rewards.aggregation import AGGREGATORS, Gated, MinScore, Product, WeightedSum

# one sample: format passed, accuracy 0.5, IoU 0.8
SCORES = {"fmt": 1.0, "acc": 0.5, "iou": 0.8}
FORMAT = ["fmt"]


def test_registered_by_name() -> None:
    assert registry("reward_aggregators") is AGGREGATORS
    assert AGGREGATORS.names() == ["gated", "min", "product", "weighted_sum"]
    assert AGGREGATORS.get("weighted_sum") is WeightedSum and AGGREGATORS.get("gated") is Gated
    with pytest.raises(RegistryError, match="Did you mean 'product'"):
        AGGREGATORS.get("prodcut")


def test_weighted_sum() -> None:
    # 0.1 * 1 + 0.6 * 0.5 + 0.3 * 0.8 = 0.1 + 0.3 + 0.24 = 0.64
    agg = WeightedSum({"fmt": 0.1, "acc": 0.6, "iou": 0.3})
    assert agg(SCORES, FORMAT) == pytest.approx(0.64)
    # unnamed verifiers get default_weight: 0.5 * 1 + 1 * 0.5 + 1 * 0.8 = 1.8
    assert WeightedSum({"fmt": 0.5})(SCORES, FORMAT) == pytest.approx(1.8)
    # EasyR1 math: 0.9 * acc + 0.1 * fmt with acc = 1, fmt = 0 -> 0.9
    assert WeightedSum({"acc": 0.9, "fmt": 0.1})({"acc": 1.0, "fmt": 0.0}) == pytest.approx(0.9)


def test_min_and_product() -> None:
    assert MinScore()(SCORES, FORMAT) == pytest.approx(0.5)
    assert Product()(SCORES, FORMAT) == pytest.approx(1.0 * 0.5 * 0.8)  # 0.4


def test_gated() -> None:
    agg = Gated(content=WeightedSum({"acc": 0.6, "iou": 0.3}))
    # gate open: 0.6 * 0.5 + 0.3 * 0.8 = 0.54 (the format score itself is not added)
    assert agg(SCORES, FORMAT) == pytest.approx(0.54)
    # gate closed: content does not count, however good
    assert agg({"fmt": 0.0, "acc": 1.0, "iou": 1.0}, FORMAT) == 0.0
    assert agg({"fmt": 0.99, "acc": 1.0, "iou": 1.0}, FORMAT) == 0.0  # threshold 1.0
    # a closed gate needs no content scores (the reward system skips those verifiers)
    assert agg({"fmt": 0.0}, FORMAT) == 0.0
    # explicit gate, threshold, closed reward and content strategy
    custom = Gated(content=MinScore(), gate=["fmt"], threshold=0.5, closed_reward=-1.0)
    assert custom({"fmt": 0.6, "acc": 0.5, "iou": 0.8}) == pytest.approx(0.5)
    assert custom({"fmt": 0.4, "acc": 0.5, "iou": 0.8}) == -1.0
    assert Gated().gate(FORMAT) == ("fmt",) and custom.gate([]) == ("fmt",)


def test_check_names_bad_settings() -> None:
    with pytest.raises(
        ValueError, match=r"cat: weighted_sum has weights for \['accuracy'\].*\['fmt', 'acc'\]"
    ):
        WeightedSum({"accuracy": 1.0}).check(["acc"], ["fmt"], "cat")
    with pytest.raises(ValueError, match="cat: gated needs a gate"):
        Gated().check(["acc"], [], "cat")
    with pytest.raises(ValueError, match=r"gate \['form'\] are not verifiers"):
        Gated(gate=["form"]).check(["acc"], ["fmt"], "cat")
    with pytest.raises(ValueError, match="needs content verifiers besides its gate"):
        Gated().check([], ["fmt"], "cat")
    with pytest.raises(ValueError, match="cat.content: weighted_sum has weights for"):
        Gated(WeightedSum({"fmt": 1.0})).check(["acc"], ["fmt"], "cat")
    with pytest.raises(ValueError, match="weight of 'acc' must be finite"):
        WeightedSum({"acc": float("inf")})
    with pytest.raises(TypeError, match="content must be an Aggregator"):
        Gated(content="weighted_sum")  # type: ignore[arg-type]
