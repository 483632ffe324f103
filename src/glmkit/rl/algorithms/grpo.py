"""GRPO advantages: each sample's reward relative to the other samples of its prompt.

Shao et al. 2024 (DeepSeekMath, arXiv 2402.03300), eq. for outcome supervision::

    A_i = (r_i - mean(r_g)) / (std(r_g) + eps)        for sample i of group g

**Std convention.** ``std="sample"`` (the default) is the Bessel-corrected standard deviation,
``sqrt(sum (r - mean)^2 / (n - 1))``, as TRL (``trl.trainer.utils.nanstd``), verl
(``compute_grpo_outcome_advantage``, ``torch.std``) and slime use; ``std="population"`` divides by
``n``. For rewards ``[1, 0, 0, 1]`` the sample std is 0.5774 and the advantages are +-0.866; the
population std is 0.5 and they are +-1.0. ``eps`` is added to the std (verl and slime: 1e-6, the
default here; TRL: 1e-4).

**Size-1 groups** (and groups with one scored sample) get advantage 0: there is nothing to compare
the sample with, and its Bessel std is undefined. (verl gives such a sample its raw score, TRL
NaN -> 0, slime switches std off when every group has size 1.) A group whose rewards are all equal
gets 0 too (``0 / (0 + eps)``); :func:`~glmkit.rl.algorithms.dynamic_sampling.informative_groups`
drops such groups before the loss.

``scale_rewards`` follows TRL's names: ``"group"`` divides by each group's std, ``"batch"`` by the
std of all scored rewards of the batch (mean still per group; Liu et al. 2025, "Lite PPO",
arXiv 2508.08221), ``"none"`` does not divide (Dr. GRPO, Liu et al. 2025, arXiv 2503.20783: use it
with the ``dr_grpo`` loss aggregation of :mod:`glmkit.losses.policy`).
"""

from __future__ import annotations

from typing import Literal

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

_SCALES = ("group", "batch", "none")
_STDS = ("sample", "population")


@ALGORITHMS.register("grpo")
class GRPO(AdvantageEstimator):
    """Group-relative advantages, grouped by prompt id (see the module docstring for conventions).

    Args:
        scale_rewards: ``"group"`` (divide by the group's std), ``"batch"`` (by the batch std) or
            ``"none"`` (no division: Dr. GRPO).
        std: ``"sample"`` (Bessel, n - 1) or ``"population"`` (n).
        eps: added to the std before dividing.
    """

    def __init__(
        self,
        scale_rewards: Literal["group", "batch", "none"] = "group",
        std: Literal["sample", "population"] = "sample",
        eps: float = 1e-6,
    ) -> None:
        if scale_rewards not in _SCALES:
            raise ValueError(f"scale_rewards must be one of {_SCALES}, got {scale_rewards!r}")
        if std not in _STDS:
            raise ValueError(f"std must be one of {_STDS}, got {std!r}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.scale_rewards = scale_rewards
        self.std = std
        self.eps = eps

    def __call__(self, rewards: Tensor, group_ids: GroupIds) -> Tensor:
        """Advantages ``[N]`` for rewards ``[N]``; NaN rewards and size-1 groups get 0."""
        rewards = check_rewards(rewards)
        index, num_groups = group_index(group_ids, rewards.numel())
        count, mean, sq = group_moments(rewards, index, num_groups)
        r = rewards.double()
        scored = ~torch.isnan(r)
        centred = r - mean[index]
        if self.scale_rewards == "group":
            ddof = 1.0 if self.std == "sample" else 0.0
            std = (sq / (count - ddof).clamp(min=1.0)).sqrt()
            centred = centred / (std[index] + self.eps)
        elif self.scale_rewards == "batch":
            valid = r[scored]
            n = valid.numel()
            ddof = 1 if self.std == "sample" else 0
            std = valid.std(correction=ddof) if n > ddof else valid.new_zeros(())
            centred = centred / (std + self.eps)
        lonely = count[index] < 2
        advantages = torch.where(scored & ~lonely, centred, torch.zeros_like(centred))
        return advantages.to(rewards.dtype)

    def __repr__(self) -> str:
        return f"GRPO(scale_rewards={self.scale_rewards!r}, std={self.std!r}, eps={self.eps})"
