"""Relative visual reward for UI-to-code: a sample's reward is its rank within its group.

GLM-5V-Turbo (section 2.3) uses relative visual policy optimisation for UI-to-code (UI2Code^N,
Yang et al. 2025, arXiv 2511.08195): absolute visual-similarity scores of a rendered page against
the target are noisy and differ in scale from page to page, while their order within the
candidates for one page is reliable. So the reward of sample i in group g is its round-robin win
rate against the other candidates of its group::

    R_i = (#{j in g, j != i : s_j < s_i} + 0.5 * #{j in g, j != i : s_j = s_i}) / (n_g - 1)

which is the sample's average rank (0 = worst, ties sharing their ranks) divided by ``n_g - 1``,
in [0, 1]. A similarity of NaN (the answer did not render) ranks below every rendered one and ties
with the other failures. A group of one sample has no opponent and gets 0.5. The public UI2Code^N
code has no training or reward code; this is the rank reading of the report's description.
"""

from __future__ import annotations

import torch
from torch import Tensor

from glmkit.rl.algorithms.base import GroupIds, group_index


def relative_visual_reward(similarities: Tensor, group_ids: GroupIds) -> Tensor:
    """Rewards ``[N]`` in [0, 1]: each sample's normalised rank of visual similarity within its group."""
    s = torch.as_tensor(similarities)
    if s.dim() != 1:
        raise ValueError(f"similarities must be 1-D (one per sample), got shape {tuple(s.shape)}")
    s = s.double()
    if torch.isposinf(s).any():
        raise ValueError("similarities must be finite (NaN marks a failed render), got +inf")
    s = torch.nan_to_num(s, nan=-torch.inf)  # a failed render loses to every rendered answer
    index, num_groups = group_index(group_ids, s.numel())
    rewards = torch.full_like(s, 0.5)
    order = torch.argsort(index, stable=True)
    sizes = torch.bincount(index, minlength=num_groups).tolist()
    for members in torch.split(order, sizes):
        n = members.numel()
        if n < 2:
            continue
        v = s[members]
        wins = (v[:, None] > v[None, :]).double().sum(1) + 0.5 * (
            (v[:, None] == v[None, :]).double().sum(1) - 1
        )
        rewards[members] = wins / (n - 1)
    out_dtype = (
        similarities.dtype if isinstance(similarities, Tensor) and similarities.is_floating_point() else None
    )
    return rewards.to(out_dtype or torch.get_default_dtype())
