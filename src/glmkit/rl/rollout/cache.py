"""The cache of deferred prompt groups: version-stamped, capped in age, checkpointed, served first.

When a step aborts its slowest groups, or finishes more groups than its batch holds, those groups
are not lost (slime drops finished surplus groups, and recycles aborted ones only with
``--partial-rollout``, into a buffer it never checkpoints: anchors_rl.md, pitfall 1).
:class:`PromptCache` keeps each :class:`~.group.RolloutGroup` with the samples it already has and
its version stamp, and hands them back, oldest first, before any fresh prompt:

* a group whose stamp is more than ``max_staleness`` policy versions old is stale: with
  ``on_stale="reissue"`` its samples are discarded and the prompt is issued again from scratch
  under the current policy; with ``on_stale="drop"`` the prompt is dropped and reported;
* :meth:`PromptCache.state_dict` / :meth:`PromptCache.load_state_dict` carry the groups through a
  checkpoint (prompts by dataset index, samples as plain Python).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from glmkit.rl.rollout.group import RolloutGroup
from glmkit.scoring import Sample

STALE_POLICIES = ("reissue", "drop")


class PromptCache:
    """FIFO of deferred groups with an age cap (module docstring).

    Args:
        max_staleness: the most policy versions a group's stamp may lag the current version
            (None: no cap; 0: only groups of the current version are used as they are).
        on_stale: ``reissue`` (start the prompt again under the current policy) or ``drop``.
    """

    def __init__(self, max_staleness: int | None = None, on_stale: str = "reissue") -> None:
        if max_staleness is not None and max_staleness < 0:
            raise ValueError(f"max_staleness must be >= 0 or None, got {max_staleness}")
        if on_stale not in STALE_POLICIES:
            raise ValueError(f"on_stale must be one of {STALE_POLICIES}, got {on_stale!r}")
        self.max_staleness = max_staleness
        self.on_stale = on_stale
        self._groups: deque[RolloutGroup] = deque()
        self.stale_reissued = 0
        self.stale_dropped = 0

    def __len__(self) -> int:
        return len(self._groups)

    def __iter__(self) -> Iterator[RolloutGroup]:
        return iter(self._groups)

    def put(self, group: RolloutGroup) -> None:
        """Queue ``group`` last."""
        self._groups.append(group)

    def put_front(self, groups: Iterable[RolloutGroup]) -> None:
        """Queue ``groups`` first, in their order (groups handed back by an interrupted step)."""
        self._groups.extendleft(reversed(list(groups)))

    def is_stale(self, group: RolloutGroup, version: int) -> bool:
        """True when ``group``'s stamp lags ``version`` by more than ``max_staleness``."""
        return self.max_staleness is not None and version - group.version > self.max_staleness

    def take(self, n: int, version: int) -> tuple[list[RolloutGroup], list[RolloutGroup]]:
        """Up to ``n`` groups to issue at policy ``version``, oldest first, and the stale groups dropped.

        A stale group is restarted (``reissue``; it still counts toward ``n``) or dropped.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        taken: list[RolloutGroup] = []
        dropped: list[RolloutGroup] = []
        while self._groups and len(taken) < n:
            group = self._groups.popleft()
            if self.is_stale(group, version):
                if self.on_stale == "drop":
                    self.stale_dropped += 1
                    dropped.append(group)
                    continue
                self.stale_reissued += 1
                group.restart(version)
            taken.append(group)
        return taken, dropped

    def state_dict(self, extra_first: Iterable[RolloutGroup] = ()) -> dict[str, Any]:
        """Plain-Python state; ``extra_first`` are groups held elsewhere (a step in flight, batches
        not yet trained) saved ahead of the cached ones, so they are issued first on resume."""
        groups = [*extra_first, *self._groups]
        return {
            "groups": [g.to_state() for g in groups],
            "stale_reissued": self.stale_reissued,
            "stale_dropped": self.stale_dropped,
        }

    def load_state_dict(
        self, state: dict[str, Any], sample_of: Callable[[int], Sample], group_size: int
    ) -> None:
        """Replace the cache with a saved one; ``sample_of(prompt_index)`` reads each prompt back."""
        groups = deque(
            RolloutGroup.from_state(item, sample_of(int(item["prompt_index"])), group_size)
            for item in state["groups"]
        )
        self._groups = groups
        self.stale_reissued = int(state.get("stale_reissued", 0))
        self.stale_dropped = int(state.get("stale_dropped", 0))
