"""Counting the samples the loader skipped, and naming each once."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl


class SkippedSamples(pl.Callback):
    """Log a running count of skipped samples (summed over ranks) and warn once per named sample.

    The mixture reports what it skipped in each batch's ``skipped`` field (unreadable images,
    records with a missing field); the count is a running total, so no skip is lost between
    logging steps.

    Args:
        key: the metric name of the running total.
    """

    def __init__(self, key: str = "data/skipped_samples") -> None:
        self.key = key
        self.total = 0
        self._warned: set[str] = set()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Add this batch's skips, log the total, warn about new ones."""
        skipped = list(batch.get("skipped") or []) if isinstance(batch, Mapping) else []
        self.total += len(skipped)
        size = len(batch.get("index", [])) if isinstance(batch, Mapping) else 1
        pl_module.log(self.key, float(self.total), reduce_fx="sum", sync_dist=True, batch_size=max(size, 1))
        for item in skipped:
            if item not in self._warned:
                self._warned.add(item)
                warnings.warn(
                    f"rank {trainer.global_rank} skipped an unreadable sample: {item}", stacklevel=2
                )

    def state_dict(self) -> dict[str, Any]:
        """The running total, so a resumed run keeps counting from it."""
        return {"total": self.total}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the running total."""
        self.total = int(state_dict.get("total", 0))
