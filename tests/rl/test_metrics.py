"""Rollout metrics against hand-computed pass@k, means and counts."""

from __future__ import annotations

import math

import pytest
import torch

from glmkit.eval.metrics.passk import pass_at_k
from glmkit.rl import metrics as rl_metrics
from glmkit.rl.metrics import rollout_metrics


def test_pass_at_k_is_eval_estimator_and_matches_chen_example() -> None:
    # one implementation for eval and RL
    assert rl_metrics.pass_at_k is pass_at_k
    # n=16, c=4, k=8: 1 - C(12, 8) / C(16, 8) = 1 - (5*6*7*8) / (13*14*15*16) = 1 - 1680/43680 = 0.961538...
    out = rollout_metrics([1.0] * 4 + [0.0] * 12, ["math"] * 16, ["p"] * 16, ks=(8,))
    assert out["pass@8"] == pytest.approx(1 - 1680 / 43680) == pytest.approx(0.9615384615)
    assert out["pass@8/math"] == pytest.approx(0.9615384615)
    # the product form agrees with the binomials
    assert pass_at_k(16, 4, 8) == pytest.approx(1 - math.comb(12, 8) / math.comb(16, 8))


def test_per_source_and_overall_keys() -> None:
    # source "ocr": prompt p1 rewards [1, 0, 1, 0], prompt p2 rewards [0, 0, 0, 0]
    # source "count": prompt p3 rewards [1, 1] and one unscored sample (NaN)
    rewards = [1, 0, 1, 0, 0, 0, 0, 0, 1, 1, float("nan")]
    sources = ["ocr"] * 8 + ["count"] * 3
    groups = ["p1"] * 4 + ["p2"] * 4 + ["p3"] * 3
    lengths = [10, 20, 30, 40, 50, 60, 70, 80, 5, 15, 100]
    failed = [False] * 10 + [True]
    out = rollout_metrics(
        rewards,
        sources,
        groups,
        ks=(1, 2, 4),
        response_lengths=lengths,
        verifier_failed=failed,
        aborted={"ocr": 2},
        deferred={"ocr": 1, "count": 3},
    )
    # reward: ocr 2/8 = 0.25; count 2/2 = 1.0 (NaN left out); overall 4/10 = 0.4
    assert out["reward/ocr/mean"] == pytest.approx(0.25)
    assert out["reward/count/mean"] == pytest.approx(1.0)
    assert out["reward/mean"] == pytest.approx(0.4)
    # samples are counted whether scored or not
    assert out["samples/count"] == 11 and out["samples/count/count"] == 3 and out["samples/ocr/count"] == 8
    # pass@1 = c/n: p1 2/4 = 0.5, p2 0, p3 (n=2 scored) 2/2 = 1 -> ocr 0.25, count 1.0, overall 1.5/3 = 0.5
    assert out["pass@1/ocr"] == pytest.approx(0.25)
    assert out["pass@1/count"] == pytest.approx(1.0)
    assert out["pass@1"] == pytest.approx(0.5)
    # pass@2 for p1: 1 - C(2,2)/C(4,2) = 1 - 1/6 = 5/6; p2: 0; p3: 1 -> ocr 5/12, overall (5/6 + 1) / 3 = 11/18
    assert out["pass@2/ocr"] == pytest.approx(5 / 12)
    assert out["pass@2"] == pytest.approx(11 / 18)
    # pass@4: p3 has only 2 scored samples, so "count" has no pass@4; ocr: p1 1 - 0 = 1, p2 0 -> 0.5
    assert out["pass@4/ocr"] == pytest.approx(0.5)
    assert "pass@4/count" not in out
    assert out["pass@4"] == pytest.approx(0.5)
    # lengths: ocr mean 45, max 80; count mean (5 + 15 + 100) / 3 = 40; overall 480 / 11
    assert out["response_length/ocr/mean"] == pytest.approx(45.0)
    assert out["response_length/ocr/max"] == 80.0
    assert out["response_length/count/mean"] == pytest.approx(40.0)
    assert out["response_length/mean"] == pytest.approx(480 / 11)
    assert out["verifier_failures/count"] == 1.0 and out["verifier_failures/count/count"] == 1.0
    assert out["verifier_failures/ocr/count"] == 0.0
    assert out["aborted/count"] == 2.0 and out["aborted/ocr/count"] == 2.0
    assert out["deferred/count"] == 4.0 and out["deferred/count/count"] == 3.0
    assert all(isinstance(v, float) for v in out.values())


def test_groups_are_found_by_id_not_position() -> None:
    # prompts a and b interleaved: a = [1, 1], b = [0, 0] -> pass@1 a 1, b 0 -> 0.5; pass@2 likewise
    out = rollout_metrics(torch.tensor([1.0, 0.0, 1.0, 0.0]), ["s"] * 4, ["a", "b", "a", "b"], ks=(1, 2))
    assert out["pass@2"] == pytest.approx(0.5)
    out = rollout_metrics(torch.tensor([1.0, 0.0, 1.0, 0.0]), ["s"] * 4, torch.tensor([7, 7, 9, 9]), ks=(2,))
    # a = [1, 0], b = [1, 0]: pass@2 = 1 each
    assert out["pass@2"] == pytest.approx(1.0)


def test_correct_from_threshold_per_source_or_explicit() -> None:
    rewards = [0.6, 0.4, 0.9, 0.2]
    sources = ["iou", "iou", "exact", "exact"]
    out = rollout_metrics(rewards, sources, [0, 0, 1, 1], success_threshold={"iou": 0.5, "exact": 1.0})
    # iou: 0.6 >= 0.5 counts -> pass@1 1/2; exact: neither reaches 1.0 -> 0
    assert out["pass@1/iou"] == pytest.approx(0.5) and out["pass@1/exact"] == 0.0
    out = rollout_metrics(rewards, sources, [0, 0, 1, 1], correct=[False, False, True, True])
    assert out["pass@1/iou"] == 0.0 and out["pass@1/exact"] == 1.0


def test_bad_inputs_name_the_problem() -> None:
    with pytest.raises(ValueError, match="sources has 1 entries for 2 rewards"):
        rollout_metrics([1.0, 0.0], ["a"], [0, 0])
    with pytest.raises(ValueError, match="mixes data sources 'a' and 'b'"):
        rollout_metrics([1.0, 0.0], ["a", "b"], [0, 0])
    with pytest.raises(ValueError, match=r"no entry for data source\(s\) \['b'\]"):
        rollout_metrics([1.0, 0.0], ["a", "b"], [0, 1], success_threshold={"a": 1.0})
    with pytest.raises(ValueError, match="positive integer, got 0"):
        rollout_metrics([1.0], ["a"], [0], ks=(0,))
    with pytest.raises(ValueError, match="got 3 group ids for 2 samples"):
        rollout_metrics([1.0, 0.0], ["a", "a"], [0, 0, 1])
