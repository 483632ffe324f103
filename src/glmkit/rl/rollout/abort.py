"""When a rollout step stops waiting: early abort by completed-group count or by time.

Request latencies are long-tailed, so the last few groups of a step take much of its time.
GLM-5V-Turbo (section 2.4) stops a step early, once enough groups are complete or a time limit
has passed, and keeps the unfinished prompts for a later step (:mod:`~.cache`). slime stops at a
target count of valid groups (``generate_rollout_async``); ``complete_fraction=0.9`` stops once
90% of the step's groups are complete.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class EarlyAbort:
    """Stop a step at ``complete_fraction`` of its groups complete, or after ``timeout_s``.

    Args:
        complete_fraction: the fraction of the step's groups that must be complete (1.0: wait
            for all; the count is rounded up, and is at least one group).
        timeout_s: stop this many seconds after the step began, once at least one group is
            complete (None: no time limit).
    """

    complete_fraction: float = 1.0
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.complete_fraction <= 1:
            raise ValueError(f"complete_fraction must be in (0, 1], got {self.complete_fraction}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 or None, got {self.timeout_s}")

    def target(self, groups: int) -> int:
        """Complete groups needed to stop a step of ``groups`` groups."""
        if groups <= 0:
            return 0
        return max(1, math.ceil(round(self.complete_fraction * groups, 9)))

    def should_stop(self, complete: int, groups: int, elapsed_s: float) -> bool:
        """True when ``complete`` of ``groups`` groups after ``elapsed_s`` seconds is enough."""
        if complete >= self.target(groups):
            return True
        return self.timeout_s is not None and elapsed_s >= self.timeout_s and complete >= 1
