"""Dynamic sampling: drop the groups whose rewards are all equal (DAPO, Yu et al. 2025, arXiv 2503.14476).

A group whose samples all got the same reward (all correct, all wrong) has zero advantage under
GRPO and RLOO and only dilutes the batch; DAPO drops such groups and samples more prompts until
the batch is full (the refill belongs to the rollout engine). "All equal" here means the spread
``max - min`` of the group's scored rewards is at most ``atol``; slime's
``check_reward_nonzero_std`` uses std > 1e-6, which agrees up to the threshold. Groups with fewer
than two scored samples are dropped too (nothing to compare); unscored (NaN) rewards are ignored.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from glmkit.rl.algorithms.base import GroupIds, check_rewards, group_index


class GroupFilter(NamedTuple):
    """Which samples to keep, and how many groups were kept and dropped."""

    keep: Tensor  # [N] bool
    kept_groups: int
    dropped_groups: int


def informative_groups(rewards: Tensor, group_ids: GroupIds, *, atol: float = 1e-6) -> GroupFilter:
    """Keep the samples of groups whose scored rewards are not all equal (spread > ``atol``)."""
    if atol < 0:
        raise ValueError(f"atol must be >= 0, got {atol}")
    rewards = check_rewards(rewards)
    index, num_groups = group_index(group_ids, rewards.numel())
    r = rewards.double()
    scored = ~torch.isnan(r)
    high = torch.full((num_groups,), -torch.inf, dtype=torch.float64)
    low = torch.full((num_groups,), torch.inf, dtype=torch.float64)
    high = high.scatter_reduce(0, index[scored], r[scored], reduce="amax")
    low = low.scatter_reduce(0, index[scored], r[scored], reduce="amin")
    count = torch.zeros(num_groups, dtype=torch.long).index_add_(0, index, scored.long())
    informative = (count >= 2) & (high - low > atol)
    kept = int(informative.sum())
    return GroupFilter(keep=informative[index], kept_groups=kept, dropped_groups=num_groups - kept)
