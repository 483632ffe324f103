"""The RL reward system (GLM-5V-Turbo report section 2.4), independent of the training code.

- :class:`~.system.RewardSystem`: routes each sample by category (or source) to its verifiers,
  runs rule verifiers inline, CPU-heavy ones in killable worker processes, model judges
  asynchronously under a concurrency limit and a deadline, aggregates, and applies the source's
  failure policy; :func:`~.system.load_reward_system` builds one from a ``class_path`` spec;
- :class:`~.result.RewardResult` / :class:`~.result.VerifierOutcome`: the reward and its
  per-verifier breakdown; :func:`~.result.rollout_fields` feeds :func:`glmkit.rl.metrics.rollout_metrics`;
- :mod:`~.aggregation`: aggregation strategies (registry ``reward_aggregators``: ``weighted_sum``,
  ``min``, ``product``, ``gated``);
- :mod:`~.routes`: :class:`~.routes.CategoryRewards` and :class:`~.routes.SourcePolicy`;
- :mod:`~.workers`: :class:`~.workers.WorkerPool`, processes with hard deadlines;
- :mod:`~.failures`: :class:`~.failures.FailureCounts`, failures per source and verifier for logging;

The verifiers are the evaluation metrics (registry ``metrics``) behind the scoring seam, and the
judge is eval's ``llm_judge``; format checks are eval's ``answer_format``. Names are imported lazily: a worker process imports
:mod:`~.workers` without the evaluation stack (and torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AGGREGATORS": "aggregation",
    "Aggregator": "aggregation",
    "Gated": "aggregation",
    "MinScore": "aggregation",
    "Product": "aggregation",
    "WeightedSum": "aggregation",
    "FailureCounts": "failures",
    "RewardResult": "result",
    "VerifierOutcome": "result",
    "rollout_fields": "result",
    "CategoryRewards": "routes",
    "SourcePolicy": "routes",
    "RewardSystem": "system",
    "UnknownCategory": "system",
    "is_empty_answer": "system",
    "load_reward_system": "system",
    "DeadlineExceeded": "workers",
    "RemoteError": "workers",
    "WorkerError": "workers",
    "WorkerPool": "workers",
}

__all__ = [
    "AGGREGATORS",
    "Aggregator",
    "CategoryRewards",
    "DeadlineExceeded",
    "FailureCounts",
    "Gated",
    "MinScore",
    "Product",
    "RemoteError",
    "RewardResult",
    "RewardSystem",
    "SourcePolicy",
    "UnknownCategory",
    "VerifierOutcome",
    "WeightedSum",
    "WorkerError",
    "WorkerPool",
    "is_empty_answer",
    "load_reward_system",
    "rollout_fields",
]

if TYPE_CHECKING:
    from glmkit.rl.rewards.aggregation import AGGREGATORS, Aggregator, Gated, MinScore, Product, WeightedSum
    from glmkit.rl.rewards.failures import FailureCounts
    from glmkit.rl.rewards.result import RewardResult, VerifierOutcome, rollout_fields
    from glmkit.rl.rewards.routes import CategoryRewards, SourcePolicy
    from glmkit.rl.rewards.system import RewardSystem, UnknownCategory, is_empty_answer, load_reward_system
    from glmkit.rl.rewards.workers import DeadlineExceeded, RemoteError, WorkerError, WorkerPool


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'glmkit.rl.rewards' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"glmkit.rl.rewards.{module}"), name)
    globals()[name] = value
    return value
