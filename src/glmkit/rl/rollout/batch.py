"""One rollout step's result: the complete groups to train on, and what happened to the rest."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from glmkit.rl.rollout.group import RolloutGroup, ScoredSample


@dataclass
class RolloutBatch:
    """The complete groups of one rollout step and the step's accounting.

    Args:
        step: the rollout step.
        version: the policy version when the step began (every new request carries it).
        groups: complete groups, in issue order (cached groups first, then fresh prompts).
        started_at: event-loop time when the step began.
        finished_at: event-loop time when it returned.
        issued_groups: groups the step issued or took complete from the cache.
        requests: requests it submitted (retries included).
        aborted_requests: requests it aborted.
        failed_requests: requests that ended in an engine error.
        aborted: per source, prompts whose requests were aborted.
        deferred: per source, prompts put into the cache at the end (aborted or surplus).
        reissued: groups re-issued from the cache (unfinished ones).
        surplus_used: complete groups taken from the cache into this batch.
        surplus_cached: complete groups beyond the batch size, cached for a later step.
        stale_dropped: prompt ids the cache dropped as stale this step.
        group_times: seconds from the step's start until each group that completed was
            complete, sorted (cached complete groups count as 0).
    """

    step: int
    version: int
    groups: list[RolloutGroup]
    started_at: float = 0.0
    finished_at: float = 0.0
    issued_groups: int = 0
    requests: int = 0
    aborted_requests: int = 0
    failed_requests: int = 0
    aborted: dict[str, int] = field(default_factory=dict)
    deferred: dict[str, int] = field(default_factory=dict)
    reissued: int = 0
    surplus_used: int = 0
    surplus_cached: int = 0
    stale_dropped: list[str] = field(default_factory=list)
    group_times: list[float] = field(default_factory=list)

    @property
    def wall_s(self) -> float:
        """Seconds the step took (event-loop clock)."""
        return self.finished_at - self.started_at

    @property
    def samples(self) -> list[ScoredSample]:
        """Every sample of the batch, group by group."""
        return [s for g in self.groups for s in g.scored_samples()]

    @property
    def prompt_ids(self) -> list[str]:
        """The batch's group ids, one per group."""
        return [g.prompt_id for g in self.groups]

    def time_to_fraction(self, fraction: float) -> float:
        """Seconds until ``fraction`` of the step's issued groups were complete (inf if never)."""
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        need = max(1, math.ceil(round(fraction * self.issued_groups, 9)))
        return self.group_times[need - 1] if len(self.group_times) >= need else math.inf

    def metric_inputs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`glmkit.rl.metrics.rollout_metrics` for this batch."""
        samples = self.samples
        return {
            "rewards": [s.reward for s in samples],
            "sources": [s.source for s in samples],
            "group_ids": [s.prompt_id for s in samples],
            "response_lengths": [s.response_tokens for s in samples],
            "verifier_failed": [s.failure is not None for s in samples],
            "aborted": dict(self.aborted),
            "deferred": dict(self.deferred),
        }

    def metrics(self, ks: Sequence[int] = (1,), **kwargs: Any) -> dict[str, float]:
        """Per-source and overall rollout metrics (:func:`glmkit.rl.metrics.rollout_metrics`) plus
        the step's timing and cache counts under ``rollout/``."""
        from glmkit.rl.metrics import rollout_metrics  # torch, only when metrics are wanted

        out = rollout_metrics(**self.metric_inputs(), ks=ks, **kwargs) if self.groups else {}
        out.update(
            {
                "rollout/wall_s": self.wall_s,
                "rollout/groups": float(len(self.groups)),
                "rollout/aborted_requests": float(self.aborted_requests),
                "rollout/failed_requests": float(self.failed_requests),
                "rollout/reissued": float(self.reissued),
                "rollout/surplus_used": float(self.surplus_used),
                "rollout/surplus_cached": float(self.surplus_cached),
                "rollout/stale_dropped": float(len(self.stale_dropped)),
            }
        )
        return out
