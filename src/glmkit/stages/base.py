"""What every stage shares, so that a stage is a constructor, a step and a recipe.

:class:`Stage` is the LightningModule base of glmkit's stages. It holds the mechanics that would
otherwise be copied into each stage:

- the recipe's component configuration is saved as hyperparameters (so ``load_from_checkpoint``
  rebuilds every component), and components built in Python are left out rather than pickled;
- ``micro_step`` counts every training micro-batch and survives resume, and
  :meth:`Stage.generator` gives a generator seeded from (seed, split, step, rank), so every draw of
  a step is reproducible (exact resume) and differs across ranks;
- the :class:`~glmkit.stages.seeding.Reseed` and :class:`~glmkit.stages.skips.SkippedSamples`
  callbacks come with every stage (``configure_callbacks``);
- ``configure_optimizers`` asks the recipe's ``optimization`` builder (all defaults visible in the
  recipe) for the optimizer and per-step schedule, over the modules of :meth:`Stage.optim_modules`.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from glmkit.optim.builder import OptimizerBuilder
from glmkit.optim.shapes import record_param_shapes
from glmkit.registry import declare

try:  # set by LightningCLI while it builds the model; Lightning 2.6 has no public accessor for it
    from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
except ImportError:  # a Lightning without it: recipes' checkpoints then keep no component config
    _given_hyperparameters = None

STAGES = declare("stages", "training stages (LightningModules)", base=pl.LightningModule)


def seed_for(*parts: int | str) -> int:
    """A stable seed from the parts (Python's ``hash`` is salted per process): a CRC-32 of them."""
    return zlib.crc32("/".join(map(str, parts)).encode())


def built_by_recipe() -> bool:
    """Whether the module being constructed is built by LightningCLI from a recipe."""
    return _given_hyperparameters is not None and _given_hyperparameters.get() is not None


class Stage(pl.LightningModule):
    """Base class of glmkit's stages: hyperparameters, seeding, callbacks, optimizer building.

    A subclass calls ``super().__init__()``, then :meth:`save_component_hparams` with the names of
    its component arguments, and sets ``self.optimization`` (an
    :class:`~glmkit.optim.OptimizerBuilder`) and ``self.seed``.
    """

    optimization: OptimizerBuilder
    seed: int = 0

    def save_component_hparams(self, components: Sequence[str]) -> None:
        """Save the constructor's arguments as hyperparameters.

        Under the CLI the recipe's whole config is stored, components included, so
        ``load_from_checkpoint`` rebuilds them; built in Python, the ``components`` (live modules)
        are left out instead of pickled into every checkpoint.
        """
        self.save_hyperparameters(ignore=None if built_by_recipe() else list(components), frame=_caller(2))

    @property
    def micro_step(self) -> int:
        """Training micro-batches seen so far, restored on resume (unlike ``global_step``, it counts
        every micro-batch under gradient accumulation)."""
        if self._trainer is None:
            return 0
        return int(self.trainer.fit_loop.epoch_loop.batch_progress.total.ready)

    def generator(self, split: str, step: int) -> torch.Generator:
        """A CPU generator seeded from (seed, split, step, rank): reproducible, distinct per rank."""
        return torch.Generator().manual_seed(seed_for(self.seed, split, step, self.global_rank))

    def configure_model(self) -> None:
        """Record each parameter's name and shape before the strategy wraps the model: FSDP flattens
        parameters before ``configure_optimizers``, and Muon/AdamW routing needs the originals. A
        subclass that builds layers here calls ``super().configure_model()`` after building them."""
        record_param_shapes(self)

    def optim_modules(self) -> Mapping[str, nn.Module] | None:
        """Named modules with their own optimizer settings (stage 2's vision / text / proj), or
        None to route the whole stage as one module."""
        return None

    def configure_optimizers(self) -> dict[str, Any]:
        """The recipe's ``optimization`` builder over this stage, scheduled over ``max_steps``."""
        max_steps = self.trainer.max_steps if self._trainer is not None else -1
        return self.optimization.build(self, max_steps, self.optim_modules())

    def configure_callbacks(self) -> list[Callback]:
        """Per-micro-batch reseeding and skipped-sample counting, which every stage needs."""
        from glmkit.stages.seeding import Reseed
        from glmkit.stages.skips import SkippedSamples

        return [Reseed(), SkippedSamples()]


def _caller(depth: int) -> Any:
    import inspect

    frame = inspect.currentframe()
    for _ in range(depth):
        frame = frame.f_back if frame is not None else None
    return frame
