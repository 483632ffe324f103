"""RLOO advantages against hand-computed leave-one-out baselines."""

from __future__ import annotations

import torch

from glmkit.rl.algorithms import RLOO


def test_leave_one_out_baseline() -> None:
    # group [1, 0, 0, 1]: for a 1 the others average 1/3 -> 2/3; for a 0 they average 2/3 -> -2/3
    r = torch.tensor([1.0, 0.0, 0.0, 1.0])
    torch.testing.assert_close(RLOO()(r, [0, 0, 0, 0]), torch.tensor([2, -2, -2, 2]) / 3)
    # interleaved groups a = [2, 4, 9], b = [1, 3]:
    #   a: 2 - (4+9)/2 = -4.5, 4 - (2+9)/2 = -1.5, 9 - (2+4)/2 = 6; b: 1 - 3 = -2, 3 - 1 = 2
    r = torch.tensor([2.0, 1.0, 4.0, 3.0, 9.0])
    torch.testing.assert_close(RLOO()(r, list("ababa")), torch.tensor([-4.5, -2.0, -1.5, 2.0, 6.0]))


def test_single_and_unscored_samples() -> None:
    # c has one sample -> 0; the NaN in a is left out: a's scored [2, 4] -> -2, 2
    r = torch.tensor([2.0, float("nan"), 4.0, 7.0])
    torch.testing.assert_close(RLOO()(r, ["a", "a", "a", "c"]), torch.tensor([-2.0, 0.0, 2.0, 0.0]))


def test_normalize_over_batch() -> None:
    # raw advantages [2/3, -2/3, -2/3, 2/3]: mean 0, sample std sqrt(4 * 4/9 / 3) = 0.7698
    r = torch.tensor([1.0, 0.0, 0.0, 1.0])
    std = (4 * 4 / 9 / 3) ** 0.5
    expected = torch.tensor([2, -2, -2, 2]) / 3 / std
    torch.testing.assert_close(RLOO(normalize=True, eps=0.0)(r, [0] * 4), expected)
