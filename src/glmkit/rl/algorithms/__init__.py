"""RL algorithms: advantage estimators over groups of samples, dynamic sampling, relative rewards.

Importing this package registers the estimators in ``registry("rl_algorithms")``:

``grpo`` (:class:`~.grpo.GRPO`)
    ``(r - mean_g) / (std_g + eps)``, std per group or batch or off (Dr. GRPO).
``rloo`` (:class:`~.rloo.RLOO`)
    ``r - mean of the other samples of the group``.

Also :func:`~.dynamic_sampling.informative_groups` (DAPO's dynamic sampling) and
:func:`~.visual_rank.relative_visual_reward` (UI-to-code). Every function groups samples by
prompt id (:func:`~.base.group_index`), never by position. The policy losses are in
:mod:`glmkit.losses.policy`.
"""

from glmkit.rl.algorithms.base import ALGORITHMS, AdvantageEstimator, GroupIds, group_index
from glmkit.rl.algorithms.dynamic_sampling import GroupFilter, informative_groups
from glmkit.rl.algorithms.grpo import GRPO
from glmkit.rl.algorithms.rloo import RLOO
from glmkit.rl.algorithms.visual_rank import relative_visual_reward

__all__ = [
    "ALGORITHMS",
    "GRPO",
    "RLOO",
    "AdvantageEstimator",
    "GroupFilter",
    "GroupIds",
    "group_index",
    "informative_groups",
    "relative_visual_reward",
]
