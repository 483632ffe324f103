"""RLOO advantages: each sample's reward minus the mean reward of the other samples of its prompt.

Ahmadian et al. 2024 ("Back to Basics: Revisiting REINFORCE Style Optimization for Learning from
Human Feedback in LLMs", arXiv 2402.14740), the leave-one-out baseline of Kool et al. 2019::

    A_i = r_i - (sum_{j in g, j != i} r_j) / (n_g - 1) = n_g / (n_g - 1) * (r_i - mean(r_g))

as TRL's ``RLOOTrainer`` computes it. Groups are found by prompt id. A group with a single scored
sample has no leave-one-out baseline: its sample gets 0. NaN rewards (unscored) are left out of
the baselines and get 0. ``normalize=True`` then standardises the scored advantages over the batch
(TRL's ``normalize_advantages``; sample std, ``eps`` added).
"""

from __future__ import annotations

import torch
from torch import Tensor

from glmkit.rl.algorithms.base import (
    ALGORITHMS,
    AdvantageEstimator,
    GroupIds,
    check_rewards,
    group_index,
    group_moments,
)


@ALGORITHMS.register("rloo")
class RLOO(AdvantageEstimator):
    """Leave-one-out advantages, grouped by prompt id.

    Args:
        normalize: standardise the advantages over the batch afterwards.
        eps: added to the batch std when ``normalize`` is on.
    """

    def __init__(self, normalize: bool = False, eps: float = 1e-6) -> None:
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.normalize = normalize
        self.eps = eps

    def __call__(self, rewards: Tensor, group_ids: GroupIds) -> Tensor:
        """Advantages ``[N]`` for rewards ``[N]``; NaN rewards and single-sample groups get 0."""
        rewards = check_rewards(rewards)
        index, num_groups = group_index(group_ids, rewards.numel())
        count, mean, _ = group_moments(rewards, index, num_groups)
        r = rewards.double()
        n = count[index]
        usable = ~torch.isnan(r) & (n >= 2)
        advantages = torch.where(usable, n / (n - 1).clamp(min=1.0) * (r - mean[index]), torch.zeros_like(r))
        if self.normalize and int(usable.sum()) > 1:
            valid = advantages[usable]
            normed = (advantages - valid.mean()) / (valid.std() + self.eps)
            advantages = torch.where(usable, normed, advantages)
        return advantages.to(rewards.dtype)

    def __repr__(self) -> str:
        return f"RLOO(normalize={self.normalize}, eps={self.eps})"
