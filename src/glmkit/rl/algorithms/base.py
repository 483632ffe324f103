"""What every advantage estimator shares: grouping samples by prompt id, and the estimator interface.

Samples are grouped by the id of the prompt they answer, never by a positional reshape
(``view(-1, n)``): a positional reshape silently mixes groups as soon as a group arrives short
(an aborted or dropped sample) or a rollout yields several samples per request (anchors_rl.md,
pitfall 12). A reward of NaN marks a sample that was not scored (a verifier failed and the
reward system chose to exclude it): it is left out of its group's statistics and gets advantage 0.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence

import torch
from torch import Tensor

from glmkit.registry import declare

#: one id per sample: a sequence of hashables (strings, ints, tuples) or a 1-D integer tensor
GroupIds = Sequence[Hashable] | Tensor


class AdvantageEstimator(ABC):
    """Maps sequence rewards ``[N]`` and group ids to per-sequence advantages ``[N]``."""

    @abstractmethod
    def __call__(self, rewards: Tensor, group_ids: GroupIds) -> Tensor:
        """Advantages ``[N]`` (float, same dtype as ``rewards``); NaN rewards get 0."""


ALGORITHMS = declare(
    "rl_algorithms",
    "RL advantage estimators over groups of samples (GRPO, RLOO, ...)",
    base=AdvantageEstimator,
)


def group_index(group_ids: GroupIds, num_samples: int | None = None) -> tuple[Tensor, int]:
    """Dense group numbers ``[N]`` (long) for the samples' ids, and the number of groups.

    Ids are compared by value (``==`` and hash); equal ids anywhere in the batch form one group,
    whatever their positions.
    """
    if isinstance(group_ids, Tensor):
        if group_ids.dim() != 1:
            raise ValueError(f"group_ids must be 1-D, got shape {tuple(group_ids.shape)}")
        if group_ids.is_floating_point():
            raise ValueError(
                f"group_ids must be an integer tensor or a sequence of ids, got {group_ids.dtype}"
            )
        uniques, inverse = torch.unique(group_ids, return_inverse=True)
        index, count = inverse.long(), int(uniques.numel())
    else:
        if isinstance(group_ids, (str, bytes)):
            raise TypeError("group_ids must be one id per sample, got a single string")
        numbering: dict[Hashable, int] = {}
        index = torch.tensor([numbering.setdefault(g, len(numbering)) for g in group_ids], dtype=torch.long)
        count = len(numbering)
    if num_samples is not None and index.numel() != num_samples:
        raise ValueError(f"got {index.numel()} group ids for {num_samples} samples; give one id per sample")
    return index, count


def check_rewards(rewards: Tensor) -> Tensor:
    """``rewards`` as a 1-D float tensor; raises on infinities (NaN means "not scored" and is kept)."""
    rewards = torch.as_tensor(rewards)
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D (one per sample), got shape {tuple(rewards.shape)}")
    if not rewards.is_floating_point():
        rewards = rewards.float()
    if torch.isinf(rewards).any():
        bad = torch.nonzero(torch.isinf(rewards)).flatten().tolist()
        raise ValueError(f"rewards must be finite (NaN marks an unscored sample), got inf at indices {bad}")
    return rewards


def group_moments(rewards: Tensor, index: Tensor, num_groups: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-group count of scored samples, mean, and sum of squared deviations (float64, ``[G]``).

    NaN rewards are left out. A group with no scored sample has mean NaN.
    """
    r = rewards.double()
    scored = ~torch.isnan(r)
    r0 = torch.where(scored, r, torch.zeros_like(r))
    count = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, index, scored.double())
    total = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, index, r0)
    mean = total / count  # NaN for a group with no scored sample
    dev = torch.where(scored, r - mean[index], torch.zeros_like(r))
    sq = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, index, dev * dev)
    return count, mean, sq
