"""Relative visual reward: the round-robin win rate of a sample's visual similarity in its group."""

from __future__ import annotations

import pytest
import torch

from glmkit.rl.algorithms import relative_visual_reward


def test_rank_within_group_with_ties_failures_and_singletons() -> None:
    # group 0 = [0.2, 0.9, 0.5, 0.5]: 0.2 beats nobody -> 0/3; 0.9 beats three -> 3/3;
    #   each 0.5 beats 0.2 and ties the other 0.5 -> (1 + 0.5) / 3 = 0.5
    # group 1 = [NaN, 0.1]: the failed render loses -> 0, 0.1 -> 1; group 2 = [0.3] alone -> 0.5
    s = torch.tensor([0.2, 0.9, float("nan"), 0.5, 0.1, 0.5, 0.3])
    ids = [0, 0, 1, 0, 1, 0, 2]
    torch.testing.assert_close(
        relative_visual_reward(s, ids), torch.tensor([0.0, 1.0, 0.0, 0.5, 1.0, 0.5, 0.5])
    )


def test_invariant_to_scale_of_similarity() -> None:
    s = torch.tensor([0.31, 0.32, 0.30, 0.9, 0.1])
    ids = ["a", "a", "a", "b", "b"]
    torch.testing.assert_close(relative_visual_reward(s, ids), relative_visual_reward(100 * s - 7, ids))
    # a = [0.31, 0.32, 0.30] -> ranks 1, 2, 0 over n - 1 = 2
    torch.testing.assert_close(relative_visual_reward(s, ids), torch.tensor([0.5, 1.0, 0.0, 1.0, 0.0]))


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="1-D"):
        relative_visual_reward(torch.zeros(2, 2), [0, 0])
