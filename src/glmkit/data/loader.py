"""Resumable, rank-sharded loading for map-style datasets whose samples are pure functions of an index.

:class:`ResumableSampler` is a ``DistributedSampler`` (so Lightning keeps it instead of injecting
its own): each rank reads a disjoint, equally long slice of the epoch's positions.
:class:`ResumableDataLoader` counts the batches it has handed out and implements
``state_dict``/``load_state_dict``, the ``_Stateful`` protocol through which Lightning (>= 2.2)
saves train loaders into checkpoints (``loops.fit_loop`` ``"combined_loader"``). Resuming skips the
consumed positions in the sampler: because a sample depends only on its key, nothing is re-read.

The skip is applied lazily, at the first ``next()`` of a new iterator: Lightning may create the
iterator before the checkpoint's loader state arrives (for instance when ``configure_optimizers``
reads ``trainer.estimated_stepping_batches``, Lightning issue #20550), and by the first ``next()``
every restore and ``set_epoch`` has happened.

Lightning rebuilds a train loader with a ``SequentialSampler`` for ``Trainer(overfit_batches=N)``;
with any sampler other than a :class:`ResumableSampler` the loader is a plain, non-resumable
``DataLoader`` (see :attr:`ResumableDataLoader.resumable`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

# 2 adds the saved loader's drop_last and epoch length, so a resume can tell mid-epoch from done.
STATE_VERSION = 2


class ResumableSampler(DistributedSampler):
    """Positions ``rank, rank + W, rank + 2W, ...`` of each epoch's order, resumable mid-epoch.

    With ``drop_last=True`` the tail that does not divide evenly among ranks is dropped, so every
    rank gets the same number of samples (ranks that disagree on the batch count hang under DDP).
    With ``keys_with_epoch=True`` it yields ``(epoch, index)`` pairs, so a dataset read by persistent
    workers learns the epoch from the key rather than from state set in the main process.

    Args:
        dataset: anything with ``len()``.
        num_replicas: number of data-parallel ranks.
        rank: this rank.
        shuffle: permute the positions each epoch (seeded by ``seed + epoch``); unnecessary when
            samples are already random draws, as in :class:`glmkit.data.mixture.Mixture`.
        seed: seed of the permutation.
        drop_last: drop the uneven tail (True) or pad with repeats (False).
        keys_with_epoch: yield ``(epoch, index)`` instead of ``index``.
    """

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = True,
        keys_with_epoch: bool = False,
    ) -> None:
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )  # type: ignore[arg-type]
        if self.num_samples == 0:
            raise ValueError(
                f"a dataset of {len(dataset)} samples gives rank {rank} of {num_replicas} no samples; "
                "use more samples per epoch"
            )
        self.keys_with_epoch = keys_with_epoch
        self._start = 0

    def skip(self, num_samples: int) -> None:
        """Start the next iteration ``num_samples`` positions into this rank's slice (one-shot)."""
        if not 0 <= num_samples <= self.num_samples:
            raise ValueError(f"cannot skip {num_samples} of this rank's {self.num_samples} samples")
        self._start = int(num_samples)

    def _order(self) -> Sequence[int]:
        n = len(self.dataset)  # type: ignore[arg-type]
        if not self.shuffle:
            return range(n)
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        return torch.randperm(n, generator=g).tolist()

    def __iter__(self) -> Iterator[Any]:
        order = self._order()
        if len(order) < self.total_size:  # pad with repeats so every rank gets num_samples
            reps = math.ceil(self.total_size / len(order))
            order = (list(order) * reps)[: self.total_size]
        positions = order[self.rank : self.total_size : self.num_replicas]
        start, self._start = self._start, 0
        epoch = self.epoch
        for index in positions[start:]:
            yield (epoch, index) if self.keys_with_epoch else index


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a :class:`ResumableSampler` that can resume mid-epoch exactly.

    ``state_dict()`` records the epoch, the number of batches handed out by the current iterator
    and the loader layout (batch size, ranks, samples, ``drop_last``, batches per epoch); after
    ``load_state_dict(state)`` the next iterator of the same epoch starts right after them. Any other
    ``DataLoader`` keyword (``num_workers``, ``collate_fn``, ``pin_memory``, ...) is passed through.

    Given another ``Sampler`` (Lightning rebuilds the train loader with a ``SequentialSampler`` for
    ``Trainer(overfit_batches=N)``) it is a plain ``DataLoader``: ``resumable`` is False,
    ``state_dict()`` is ``{}`` and only an empty state can be loaded.
    """

    def __init__(
        self, dataset: Any, batch_size: int = 1, sampler: Sampler | None = None, **kwargs: Any
    ) -> None:
        if not isinstance(sampler, Sampler):
            raise TypeError(
                f"ResumableDataLoader needs a ResumableSampler, got {type(sampler).__name__}; "
                "build one with ResumableSampler(dataset, num_replicas, rank)"
            )
        if kwargs.get("batch_sampler") is not None or kwargs.get("shuffle"):
            raise ValueError(
                "ResumableDataLoader takes batch_size and a sampler, not batch_sampler or shuffle"
            )
        if batch_size is None or batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, **kwargs)
        self.resumable = isinstance(sampler, ResumableSampler)
        self._batches = 0
        self._iter_epoch = sampler.epoch if self.resumable else 0  # type: ignore[attr-defined]
        self._pending: dict[str, Any] | None = None

    def _layout(self) -> dict[str, int | bool]:
        return {
            "batch_size": int(self.batch_size),  # type: ignore[arg-type]
            "num_replicas": int(self.sampler.num_replicas),  # type: ignore[attr-defined]
            "num_samples": len(self.dataset),
            "drop_last": bool(self.drop_last),
        }

    def state_dict(self) -> dict[str, Any]:
        """Epoch and batches consumed so far (the same on every rank), plus the loader layout.

        ``{}`` for a plain (non-resumable) loader.
        """
        if not self.resumable:
            return {}
        if self._pending is not None:  # restored but not yet iterated: the restored position stands
            return dict(self._pending)
        return {
            "version": STATE_VERSION,
            "epoch": self._iter_epoch,
            "batches": self._batches,
            **self._layout(),
            "epoch_batches": len(self),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state`` at the next iteration of the same epoch (``{}``: nothing to resume).

        Raises:
            ValueError: the state is mid-epoch and was saved with another batch size, number of
                ranks, epoch length or ``drop_last``, so its position cannot be reproduced; or this
                loader is not resumable and ``state`` holds a position.
        """
        if not state:  # what a plain loader saves: no position
            return
        if not self.resumable:
            raise ValueError(
                f"this ResumableDataLoader has a {type(self.sampler).__name__}, not a ResumableSampler "
                "(Lightning swaps it in for Trainer(overfit_batches=...)), so it cannot resume the "
                f"position {state!r}; resume without overfit_batches or from a checkpoint saved with it"
            )
        missing = {"epoch", "batches", "batch_size", "num_replicas", "num_samples"} - set(state)
        if missing:
            raise ValueError(f"not a ResumableDataLoader state: missing {sorted(missing)} in {state!r}")
        layout = self._layout()
        # Version-1 states lack drop_last and epoch_batches: assume this loader's drop_last.
        saved = {k: type(v)(state.get(k, v)) for k, v in layout.items()}
        batches = int(state["batches"])
        if saved != layout:
            saved_len = int(state.get("epoch_batches", self._epoch_batches(saved)))
            if 0 < batches < saved_len:
                raise ValueError(
                    f"cannot resume mid-epoch (batch {batches} of {saved_len}): the checkpoint's loader "
                    f"layout {saved} differs from this run's {layout} ({len(self)} batches per epoch). "
                    "Resume with the same batch size, number of data-parallel ranks, samples per epoch "
                    "and drop_last, or from an end-of-epoch checkpoint."
                )
            batches = 0 if batches == 0 else len(self)  # an epoch boundary carries over to any layout
        self._pending = {
            **state,
            **layout,
            "version": STATE_VERSION,
            "batches": batches,
            "epoch_batches": len(self),
        }
        # Without Lightning nobody else sets the epoch; Lightning calls set_epoch again before iterating.
        self.sampler.set_epoch(int(state["epoch"]))  # type: ignore[attr-defined]

    def _epoch_batches(self, layout: dict[str, Any]) -> int:
        """Batches per epoch of a loader with ``layout`` and this loader's sampler ``drop_last``."""
        n, world, batch = layout["num_samples"], layout["num_replicas"], layout["batch_size"]
        # DistributedSampler: the uneven tail is dropped or padded to a multiple of the ranks
        per_rank = n // world if self.sampler.drop_last else math.ceil(n / world)  # type: ignore[attr-defined]
        return per_rank // batch if layout["drop_last"] else math.ceil(per_rank / batch)

    def __iter__(self) -> Iterator[Any]:
        if not self.resumable:
            return super().__iter__()
        return self._iterate()

    def _iterate(self) -> Iterator[Any]:
        # A generator: this body first runs at the first next(), after any checkpoint restore.
        sampler: ResumableSampler = self.sampler  # type: ignore[assignment]
        skip = 0
        if self._pending is not None and int(self._pending["epoch"]) == sampler.epoch:
            skip = min(int(self._pending["batches"]), len(self))
        self._pending = None
        sampler.skip(min(skip * int(self.batch_size), sampler.num_samples))  # type: ignore[arg-type]
        self._iter_epoch = sampler.epoch
        self._batches = skip
        for batch in super().__iter__():
            self._batches += 1  # counted before the consumer sees the batch
            yield batch
