"""Counts of verifier failures per data source and verifier, for logging.

A failed verifier never stops training (the sample gets its source's fallback reward or is
excluded), so failures must be visible instead: :class:`FailureCounts` accumulates them and
:meth:`FailureCounts.as_dict` gives flat float keys for ``LightningModule.log_dict``, beside the
per-step ``verifier_failures/...`` keys of :func:`glmkit.rl.metrics.rollout_metrics`:

=========================================  ==================================================
``rewards/samples/count``                  samples scored (also ``rewards/samples/<src>/count``)
``rewards/failures/count``                 samples with a failed verifier (also per source)
``rewards/failures/<src>/<verifier>/count``  failures of one verifier on one source
``rewards/failure_kind/<kind>/count``      failures by kind (error, timeout, garbage, ...)
``rewards/excluded/<src>/count``           samples excluded from their group's baseline
``rewards/fallback/<src>/count``           samples given the fallback reward
=========================================  ==================================================
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from glmkit.rl.rewards.result import RewardResult

log = logging.getLogger("glmkit.rl.rewards")


class FailureCounts:
    """Thread-safe running counts of scored samples and failures (since creation or :meth:`reset`).

    The first failure of each (source, verifier, kind) is logged as a warning with its reason;
    later ones at debug level, so a dead judge does not flood the log.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str, str]] = set()
        self.reset()

    def reset(self) -> None:
        """Zero every count (the warnings already given are not repeated)."""
        with self._lock:
            self.samples: Counter[str] = Counter()
            self.failed_samples: Counter[str] = Counter()
            self.failures: Counter[tuple[str, str]] = Counter()
            self.kinds: Counter[str] = Counter()
            self.excluded: Counter[str] = Counter()
            self.fallbacks: Counter[str] = Counter()

    def record(self, result: RewardResult) -> None:
        """Count one scored sample and its failures."""
        with self._lock:
            self.samples[result.source] += 1
            if result.failed:
                self.failed_samples[result.source] += 1
            if result.policy == "exclude":
                self.excluded[result.source] += 1
            elif result.policy == "fallback":
                self.fallbacks[result.source] += 1
            for name, outcome in result.breakdown.items():
                if outcome.status != "failed":
                    continue
                kind = outcome.failure_kind or "error"
                self.failures[(result.source, name)] += 1
                self.kinds[kind] += 1
                first = (result.source, name, kind) not in self._warned
                self._warned.add((result.source, name, kind))
                log.log(
                    logging.WARNING if first else logging.DEBUG,
                    "reward verifier %r failed (%s) on sample %r of source %r: %s; the sample gets %s%s",
                    name,
                    kind,
                    result.sample_id,
                    result.source,
                    outcome.failure,
                    "excluded from its group's baseline" if result.excluded else f"reward {result.reward:g}",
                    " (later failures of this kind are logged at debug level)" if first else "",
                )

    def as_dict(self, prefix: str = "rewards/") -> dict[str, float]:
        """The counts as flat ``{key: float}`` (keys in the module docstring)."""
        with self._lock:
            out = {
                f"{prefix}samples/count": float(sum(self.samples.values())),
                f"{prefix}failures/count": float(sum(self.failed_samples.values())),
            }
            for src, n in sorted(self.samples.items()):
                out[f"{prefix}samples/{src}/count"] = float(n)
                out[f"{prefix}failures/{src}/count"] = float(self.failed_samples[src])
            for (src, name), n in sorted(self.failures.items()):
                out[f"{prefix}failures/{src}/{name}/count"] = float(n)
            for kind, n in sorted(self.kinds.items()):
                out[f"{prefix}failure_kind/{kind}/count"] = float(n)
            for src, n in sorted(self.excluded.items()):
                out[f"{prefix}excluded/{src}/count"] = float(n)
            for src, n in sorted(self.fallbacks.items()):
                out[f"{prefix}fallback/{src}/count"] = float(n)
            return out
