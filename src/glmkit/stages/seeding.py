"""Reseeding the global RNG before each training micro-batch."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from glmkit.stages.base import seed_for


class Reseed(pl.Callback):
    """Seed torch's global RNG from (stage seed, micro-batch, rank) before every training batch.

    Stochastic depth, dropout and anything else drawn from the global RNG in a step are then the
    same in a resumed run as in an uninterrupted one, and differ across ranks. The stage's
    ``seed`` and ``micro_step`` (see :class:`~glmkit.stages.base.Stage`) are read.
    """

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Reseed for this micro-batch."""
        step = int(trainer.fit_loop.epoch_loop.batch_progress.total.ready)
        torch.manual_seed(seed_for(getattr(pl_module, "seed", 0), "rng", step, trainer.global_rank))
