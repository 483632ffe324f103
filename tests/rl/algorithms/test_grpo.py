"""GRPO advantages against hand-computed values, grouped by prompt id."""

from __future__ import annotations

import math

import pytest
import torch

from glmkit.registry import registry
from glmkit.rl.algorithms import ALGORITHMS, GRPO, RLOO, group_index

NAN = float("nan")


def test_registered_by_name() -> None:
    assert registry("rl_algorithms") is ALGORITHMS
    assert ALGORITHMS.get("grpo") is GRPO and ALGORITHMS.get("rloo") is RLOO


def test_sample_population_and_no_std() -> None:
    # group p = [1, 0, 0, 1]: mean 0.5, deviations +-0.5
    #   sample std = sqrt(4 * 0.25 / 3) = 0.57735 -> A = +-0.5 / 0.57735 = +-0.8660
    #   population std = sqrt(4 * 0.25 / 4) = 0.5 -> A = +-1.0
    #   no std (Dr. GRPO) -> A = +-0.5
    r = torch.tensor([1.0, 0.0, 0.0, 1.0])
    ids = ["p"] * 4
    s = math.sqrt(3) / 2
    torch.testing.assert_close(GRPO(eps=0.0)(r, ids), torch.tensor([s, -s, -s, s]))
    torch.testing.assert_close(GRPO(std="population", eps=0.0)(r, ids), torch.tensor([1.0, -1.0, -1.0, 1.0]))
    torch.testing.assert_close(GRPO(scale_rewards="none")(r, ids), torch.tensor([0.5, -0.5, -0.5, 0.5]))


def test_grouped_by_id_not_position() -> None:
    # interleaved prompts: a = [3, 1] (mean 2, deviations +-1), b = [10, 20] (mean 15, +-5)
    # sample std of two values x, y = |x - y| / sqrt(2): a sqrt(2), b 5 sqrt(2) -> A = +-1/sqrt(2) both
    r = torch.tensor([3.0, 10.0, 1.0, 20.0])
    h = 1 / math.sqrt(2)
    torch.testing.assert_close(GRPO(eps=0.0)(r, ["a", "b", "a", "b"]), torch.tensor([h, -h, -h, h]))
    torch.testing.assert_close(GRPO(eps=0.0)(r, torch.tensor([5, 2, 5, 2])), torch.tensor([h, -h, -h, h]))
    # a positional reshape view(-1, 2) would have paired (3, 10) and (1, 20): a different answer
    assert not torch.allclose(GRPO(eps=0.0)(r, [0, 0, 1, 1]), torch.tensor([h, -h, -h, h]))


def test_batch_scaling() -> None:
    # groups a = [1, 0], b = [4, 2]; means 0.5 and 3; batch of 4 rewards [1, 0, 4, 2]: mean 1.75,
    # squared deviations 0.5625 + 3.0625 + 5.0625 + 0.0625 = 8.75, sample std sqrt(8.75 / 3) = 1.7078
    r = torch.tensor([1.0, 0.0, 4.0, 2.0])
    std = math.sqrt(8.75 / 3)
    expected = torch.tensor([0.5, -0.5, 1.0, -1.0]) / std
    torch.testing.assert_close(GRPO(scale_rewards="batch", eps=0.0)(r, list("aabb")), expected)


def test_size_one_groups_equal_groups_and_unscored_samples_get_zero() -> None:
    # q has one sample -> 0; e is all equal -> 0 / (0 + eps) = 0; the NaN sample of p is unscored:
    # p's scored rewards [1, 0] give +-1/sqrt(2) (sample std 1/sqrt(2), deviations +-0.5)
    r = torch.tensor([1.0, 0.0, NAN, 5.0, 2.0, 2.0])
    out = GRPO(eps=0.0 + 1e-12)(r, ["p", "p", "p", "q", "e", "e"])
    h = 0.5 / (1 / math.sqrt(2))
    torch.testing.assert_close(out, torch.tensor([h, -h, 0.0, 0.0, 0.0, 0.0]))
    assert torch.isfinite(out).all()


def test_group_index_is_dense_in_first_appearance_order() -> None:
    index, n = group_index(["x", "y", "x", ("t", 1), "y"])
    assert n == 3 and index.tolist() == [0, 1, 0, 2, 1]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="scale_rewards must be one of"):
        GRPO(scale_rewards="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="std must be one of"):
        GRPO(std="unbiased")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="got 2 group ids for 3 samples"):
        GRPO()(torch.zeros(3), [0, 0])
    with pytest.raises(ValueError, match=r"got inf at indices \[1\]"):
        GRPO()(torch.tensor([0.0, math.inf]), [0, 0])
    with pytest.raises(TypeError, match="single string"):
        GRPO()(torch.zeros(2), "ab")
