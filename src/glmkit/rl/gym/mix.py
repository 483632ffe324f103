"""A recipe's task mix: many categories, per-category weights, one seeded prompt stream.

:class:`TaskMix` is what a multi-task RL recipe configures::

    tasks:
      class_path: glmkit.rl.gym.mix.TaskMix
      init_args:
        categories:
          - {class_path: glmkit.rl.gym.categories.counting.Counting, init_args: {seed: 0}}
          - {class_path: glmkit.rl.gym.categories.grounding.Grounding, init_args: {seed: 0}}
        weights: {counting: 2.0, grounding: 1.0}

It holds the :class:`~glmkit.data.Mixture` of the categories' record sources (the weighted, seeded
draw and the data-source tags), the prompts as a sequence of samples for the rollout scheduler,
the environment that runs their episodes, and the reward system that scores them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, overload

from glmkit.rl.gym.category import TaskCategory
from glmkit.rl.gym.environment import TaskEnvironment
from glmkit.rl.gym.rewards import build_reward_system, reward_system_spec
from glmkit.rl.gym.source import sample_from_record, task_mixture
from glmkit.scoring import Sample

if TYPE_CHECKING:
    from glmkit.rl.rewards import RewardSystem


class TaskMix(Sequence[Sample]):
    """Task categories mixed by weight; item ``i`` is the sample the mixture draws at ``i``.

    Args:
        categories: the task categories (each a data source under its ``source`` name).
        weights: relative weight per source name; ``None``: equal weights.
        seed: the mixture's seed (which category and index each position draws).
        num_samples: prompts per epoch.
        stream: separates independent streams with one seed (train 0, held-out 1).
    """

    def __init__(
        self,
        categories: Sequence[TaskCategory],
        weights: Mapping[str, float] | None = None,
        seed: int = 0,
        num_samples: int = 10_000,
        stream: int = 0,
    ) -> None:
        self.categories = list(categories)
        self.mixture = task_mixture(
            self.categories, weights, seed=seed, num_samples=num_samples, stream=stream
        )

    def __len__(self) -> int:
        return len(self.mixture)

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> list[Sample]: ...

    def __getitem__(self, index: int | slice) -> Sample | list[Sample]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return sample_from_record(self.mixture[index])

    def record(self, index: int, epoch: int | None = None) -> dict[str, Any]:
        """The mixture's record at ``index`` of ``epoch``: ``sample``, ``images``, ``source``, ..."""
        return self.mixture[(self.mixture.epoch if epoch is None else epoch, index)]

    def set_epoch(self, epoch: int) -> None:
        """Draw a fresh mixture for ``epoch``."""
        self.mixture.set_epoch(epoch)

    def environment(self, **kwargs: Any) -> TaskEnvironment:
        """A :class:`~glmkit.rl.gym.environment.TaskEnvironment` over these categories."""
        return TaskEnvironment(self.categories, **kwargs)

    def reward_system_spec(self, **init_args: Any) -> dict[str, Any]:
        """The reward system's ``class_path`` / ``init_args`` for these categories."""
        return reward_system_spec(self.categories, **init_args)

    def reward_system(self, **init_args: Any) -> RewardSystem:
        """The reward system routing these categories to their verifiers."""
        return build_reward_system(self.categories, **init_args)

    def __repr__(self) -> str:
        return f"TaskMix({self.mixture!r})"
