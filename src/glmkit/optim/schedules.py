"""Learning-rate schedules as small components that build a ``LambdaLR``.

A schedule is configured in the recipe without knowing the run length; the stage calls
``schedule.build(optimizer, total_steps)`` with ``trainer.max_steps`` once the trainer exists.
(Reading ``trainer.estimated_stepping_batches`` instead would drop loader state on resume,
Lightning #20550.) A schedule applies to every param group, or -- for module-specific schedules in
stage 2 -- a dict maps group-name prefixes to schedules.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from glmkit.registry import declare


class Schedule:
    """Base class: a multiplier of the base learning rate as a function of the step."""

    def factor(self, step: int, total_steps: int) -> float:
        """Multiplier at optimizer step ``step`` of ``total_steps``."""
        raise NotImplementedError

    def build(self, optimizer: Optimizer, total_steps: int) -> LambdaLR:
        """A ``LambdaLR`` stepping this schedule on every group of ``optimizer``."""
        return build_scheduler(optimizer, total_steps, self)


SCHEDULES = declare("schedules", "learning-rate schedules", base=Schedule)


@SCHEDULES.register("warmup_cosine")
class WarmupCosine(Schedule):
    """Linear warmup from 0, then cosine decay to ``min_lr_ratio`` of the peak at ``total_steps``.

    ``factor(s) = (s + 1) / (warmup + 1)`` for ``s < warmup`` (never exactly 0), else
    ``min + (1 - min) * (1 + cos(pi * (s - warmup) / (total - warmup))) / 2``.
    """

    def __init__(self, warmup_steps: int = 0, min_lr_ratio: float = 0.0) -> None:
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        self.warmup_steps = warmup_steps
        self.min_lr_ratio = min_lr_ratio

    def factor(self, step: int, total_steps: int) -> float:
        """Warmup then cosine multiplier."""
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        decay_steps = max(1, total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@SCHEDULES.register("constant")
class Constant(Schedule):
    """Optional linear warmup, then a constant learning rate."""

    def __init__(self, warmup_steps: int = 0) -> None:
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.warmup_steps = warmup_steps

    def factor(self, step: int, total_steps: int) -> float:
        """Warmup then 1."""
        return min(1.0, (step + 1) / (self.warmup_steps + 1)) if self.warmup_steps else 1.0


def build_scheduler(
    optimizer: Optimizer, total_steps: int, schedule: Schedule | Mapping[str, Schedule]
) -> LambdaLR:
    """A ``LambdaLR`` with one lambda per param group.

    ``schedule`` is one schedule for all groups, or a mapping from module names (the part of a
    group's name before ``/``, as :func:`~glmkit.optim.muon_param_groups` names them) to schedules.
    """
    if total_steps <= 0:
        raise ValueError(
            f"a learning-rate schedule needs a positive total step count, got {total_steps}; "
            "set trainer.max_steps in the recipe"
        )
    lambdas: list[Callable[[int], float]] = []
    for index, group in enumerate(optimizer.param_groups):
        chosen = _schedule_for(group.get("name", f"group{index}"), schedule)
        lambdas.append(lambda step, s=chosen: s.factor(step, total_steps))
    return LambdaLR(optimizer, lambdas)


def _schedule_for(group_name: str, schedule: Schedule | Mapping[str, Schedule]) -> Schedule:
    if isinstance(schedule, Schedule):
        return schedule
    module = group_name.split("/", 1)[0]
    if module not in schedule:
        raise KeyError(
            f"no schedule for param group {group_name!r} (module {module!r}); schedules given for {sorted(schedule)}"
        )
    return schedule[module]
