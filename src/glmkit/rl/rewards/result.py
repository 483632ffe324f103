"""What the reward system returns for one response: the reward and a per-verifier breakdown.

:class:`RewardResult` is what the training code reads: ``reward`` (NaN when the sample is excluded
from its group's baseline; glmkit's advantage estimators treat NaN as "not scored"), ``excluded``,
``failed`` (the flag :func:`glmkit.rl.metrics.rollout_metrics` takes as ``verifier_failed``) and
one :class:`VerifierOutcome` per verifier with its score, status, failure kind and reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "failed", "skipped", "empty", "capped"]
"""``ok``: scored; ``failed``: see ``failure``; ``skipped``: not run because the gate was closed
(or a gate verifier failed); ``empty``: a content verifier not run on an empty answer (score 0);
``capped``: a judge not asked because the answer exceeded the length cap (score 0)."""

FailureKind = Literal["error", "timeout", "garbage", "reported", "worker"]
"""``error``: the verifier raised; ``timeout``: it ran past its deadline (a process verifier's worker
was killed); ``garbage``: it returned something that is not a usable score; ``reported``: it
returned scores with ``failure`` set (a judge that fell back); ``worker``: its worker process
could not be started or died."""


@dataclass
class VerifierOutcome:
    """One verifier's part of a reward.

    Args:
        name: the verifier's name in the reward system.
        score: the score used by the aggregation (``None`` when the verifier failed or was skipped).
        status: see :data:`Status`.
        failure: why it failed (``None`` unless ``status == "failed"``).
        failure_kind: see :data:`FailureKind`.
        seconds: wall time of the call.
        details: the verifier's details (parsed answer, judge reply, ...).
    """

    name: str
    score: float | None
    status: Status = "ok"
    failure: str | None = None
    failure_kind: FailureKind | None = None
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class RewardResult:
    """The reward of one response and how it was reached.

    Args:
        sample_id, source, category: the sample's id and tags.
        reward: the aggregated reward; the source's fallback reward when a verifier failed; NaN
            when the sample is excluded.
        excluded: True when a verifier failed and the source's policy is to exclude the sample
            from its group's baseline (its advantage is 0).
        breakdown: one outcome per verifier, in the category's order (format verifiers first).
        aggregated: the aggregation of the scores before any failure policy (NaN when a verifier
            failed), for logging.
        empty_answer: the response held no final answer, so content verifiers scored 0 unasked.
        policy: ``"fallback"`` or ``"exclude"`` when a failure policy was applied, else ``None``.
    """

    sample_id: str
    source: str
    category: str
    reward: float
    excluded: bool = False
    breakdown: dict[str, VerifierOutcome] = field(default_factory=dict)
    aggregated: float = math.nan
    empty_answer: bool = False
    policy: Literal["fallback", "exclude"] | None = None

    @property
    def failed(self) -> bool:
        """True when any verifier failed on this sample."""
        return any(o.status == "failed" for o in self.breakdown.values())

    @property
    def failures(self) -> dict[str, str]:
        """``{verifier: reason}`` of the verifiers that failed."""
        return {n: o.failure or "failed" for n, o in self.breakdown.items() if o.status == "failed"}

    @property
    def scores(self) -> dict[str, float]:
        """``{verifier: score}`` of the verifiers that produced a score (empty and capped ones: 0)."""
        return {n: o.score for n, o in self.breakdown.items() if o.score is not None}


def rollout_fields(results: Sequence[RewardResult]) -> dict[str, list[Any]]:
    """``rewards``, ``sources`` and ``verifier_failed`` of a batch, as
    :func:`glmkit.rl.metrics.rollout_metrics` takes them: ``rollout_metrics(**rollout_fields(results),
    group_ids=ids)``. Excluded samples have reward NaN (unscored)."""
    return {
        "rewards": [r.reward for r in results],
        "sources": [r.source for r in results],
        "verifier_failed": [r.failed for r in results],
    }
