"""The DataModule of every stage: a weighted mixture of record sources, sharded and resumable.

Sources yield records, a transform maps (record, rng) -> record, a collate stacks, pads or packs.
GLM-5V-Turbo section 2.1 trains stage 1 on a quality-aware mixture (80% natural images, 10%
instruction-following data, 10% scientific imagery) at 224x224; in a recipe that is::

    data:
      class_path: glmkit.data.MixtureDataModule
      init_args:
        sources:
          natural: {class_path: glmkit.data.TarShards, init_args: {urls: /data/natural-{000..099}.tar}}
          instruct: {class_path: glmkit.data.JsonlManifest, init_args: {path: /data/instruct.jsonl}}
          science: {class_path: glmkit.data.ImageFolder, init_args: {root: /data/science}}
        weights: {natural: 0.8, instruct: 0.1, science: 0.1}
        transform: {class_path: glmkit.data.TrainTransform, init_args: {image_size: 224}}
        val_transform: {class_path: glmkit.data.EvalTransform, init_args: {image_size: 224}}

Each rank reads a disjoint slice of every epoch; a run resumed from a mid-epoch checkpoint sees
exactly the batches an uninterrupted run would have seen (the loader state travels both through
Lightning's loader-state mechanism and through this DataModule's own ``state_dict``, which also
survives Lightning issue #20550).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch.distributed as dist
from torch.utils.data import DataLoader

from glmkit.data.collate import Collate, StackCollate
from glmkit.data.loader import ResumableDataLoader, ResumableSampler
from glmkit.data.mixture import Mixture
from glmkit.data.sources import Source
from glmkit.data.transforms import Transform
from glmkit.registry import declare

TRAIN_STREAM, VAL_STREAM = 0, 1


class ShardedDataModule(L.LightningDataModule):
    """Base of glmkit's DataModules: this rank among the data-parallel ranks, and the training
    loader's position saved in checkpoints (also when Lightning restores before the loader exists,
    Lightning issue #20550).

    A subclass builds its training loader (a ``ResumableDataLoader``) and passes it through
    :meth:`resume_train_loader` before returning it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._train_loader: ResumableDataLoader | None = None
        self._pending_train_state: dict[str, Any] | None = None

    def _replicas(self) -> tuple[int, int]:
        """(number of data-parallel ranks, this rank), from the trainer when attached."""
        trainer = self.trainer
        if trainer is not None:
            kwargs = trainer.distributed_sampler_kwargs
            if kwargs is not None:
                return int(kwargs["num_replicas"]), int(kwargs["rank"])
            return 1, 0
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size(), dist.get_rank()
        return 1, 0

    def resume_train_loader(self, loader: ResumableDataLoader) -> ResumableDataLoader:
        """Apply a restored position to a new training loader and remember it for ``state_dict``."""
        if self._pending_train_state is not None:
            loader.load_state_dict(self._pending_train_state)
            self._pending_train_state = None
        self._train_loader = loader
        return loader

    def state_dict(self) -> dict[str, Any]:
        """The training loader's position, saved in checkpoints under this class's name."""
        if self._train_loader is not None:
            return {"train_loader": self._train_loader.state_dict()}
        if self._pending_train_state is not None:
            return {"train_loader": dict(self._pending_train_state)}
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume the training loader; applied now or when the loader is created."""
        state = state_dict.get("train_loader")
        if state is None:
            return
        if self._train_loader is not None:
            self._train_loader.load_state_dict(state)
        else:
            self._pending_train_state = dict(state)


DATAMODULES = declare(
    "datamodules", "Lightning DataModules (a recipe's data section)", base=L.LightningDataModule
)


@DATAMODULES.register("mixture")
class MixtureDataModule(ShardedDataModule):
    """Batches from a weighted mixture of record sources; what a batch holds is the collate's output
    of the transformed records, plus ``source`` (list[str]), ``index`` (LongTensor[B]) and
    ``skipped`` (list[str]).

    With stage 1's :class:`~glmkit.data.TrainTransform` and the default :class:`StackCollate` a
    batch is ``{"image": [B, 3, H, W] in [0, 1], "source", "index", "skipped"}``.

    Args:
        sources: named record sources (built by jsonargparse from ``class_path``/``init_args``).
        weights: relative weight per source; ``None`` weights sources by their size.
        transform: record transform of training samples, ``(record, rng) -> record``; every random
            choice from ``rng``. ``None`` keeps records as read.
        val_transform: record transform of validation samples (``rng`` is fixed per sample).
        collate: how samples become a batch (stack, pad to buckets, pack).
        batch_size: per-rank batch size.
        num_workers: DataLoader worker processes per rank.
        seed: seed of every mixture draw and augmentation.
        samples_per_epoch: virtual epoch length over all ranks (the uneven tail is dropped).
        val_samples: size of the validation draw (its own stream); 0 disables it.
        val_sources: sources for validation; ``None`` draws validation samples from ``sources``
            (a monitoring sample, not a held-out set).
        val_weights: weights for ``val_sources`` (ignored without them).
        pin_memory: pin batches for faster host-to-GPU copies.
    """

    def __init__(
        self,
        sources: dict[str, Source],
        weights: dict[str, float] | None = None,
        transform: Transform | None = None,
        val_transform: Transform | None = None,
        collate: Collate | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        samples_per_epoch: int = 10_000,
        val_samples: int = 0,
        val_sources: dict[str, Source] | None = None,
        val_weights: dict[str, float] | None = None,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if val_samples < 0:
            raise ValueError(f"val_samples must be >= 0, got {val_samples}")
        self.sources = dict(sources)
        self.weights = weights
        self.collate = collate if collate is not None else StackCollate()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.samples_per_epoch = samples_per_epoch
        self.val_samples = val_samples
        self.val_sources = dict(val_sources) if val_sources is not None else None
        self.val_weights = val_weights if val_sources is not None else weights
        self.pin_memory = pin_memory
        # Built eagerly so that bad weights or sources fail at construction, not at fit time.
        self.train_set = Mixture(
            self.sources,
            weights,
            transform,
            seed=seed,
            num_samples=samples_per_epoch,
            stream=TRAIN_STREAM,
        )
        self.val_set: Mixture | None = None
        if val_samples > 0:
            self.val_set = Mixture(
                self.val_sources or self.sources,
                self.val_weights,
                val_transform,
                seed=seed,
                num_samples=val_samples,
                stream=VAL_STREAM,
            )

    def _loader(self, dataset: Mixture, train: bool) -> ResumableDataLoader:
        num_replicas, rank = self._replicas()
        sampler = ResumableSampler(
            dataset,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=False,  # mixture samples are already independent random draws
            seed=self.seed,
            drop_last=train,
            # Training keys carry the epoch (fresh draws each epoch, safe with persistent workers);
            # validation stays on epoch 0 so every validation sees the same images.
            keys_with_epoch=train,
        )
        if train and len(sampler) < self.batch_size:
            raise ValueError(
                f"samples_per_epoch={len(dataset)} over {num_replicas} rank(s) leaves {len(sampler)} samples "
                f"per rank, fewer than batch_size={self.batch_size}: no full batch"
            )
        return ResumableDataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=self.collate,
            pin_memory=self.pin_memory,
            drop_last=train,  # with drop_last in the sampler too, every rank has the same batch count
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> ResumableDataLoader:
        """The sharded, resumable training loader (equal batch counts on every rank)."""
        loader = self._loader(self.train_set, train=True)
        return self.resume_train_loader(loader)

    def val_dataloader(self) -> ResumableDataLoader | list:
        """Validation loader over ``val_samples`` draws (fixed epoch 0), or none."""
        if self.val_set is None:
            return []
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> ResumableDataLoader | list:
        """The held-out images of validation, for ``glmkit test``."""
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader | list:
        """The held-out images of validation, for ``glmkit predict``.

        A plain ``DataLoader``: prediction needs no resume, and Lightning re-wraps its sampler to
        track the indices of each prediction.
        """
        if self.val_set is None:
            return []
        return DataLoader(
            self.val_set,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=self.collate,
        )
