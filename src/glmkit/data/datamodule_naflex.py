"""The DataModule of NaFlex training: a mixture of record sources served as NaFlex batches.

Records come from a :class:`~glmkit.data.mixture.Mixture` (sources, weights, a record transform such
as :class:`~glmkit.data.captions.PickCaption`; unreadable records skipped, counted and named), and
each step's batch is laid out by a :class:`~glmkit.data.naflex.NaFlexSchedule` built from the seed
and the world size, so every rank holds the same shapes (the SigLIP exchange needs it):
:class:`~glmkit.data.naflex.NaFlexBatches` resizes each image to its budget and pads or packs.
"""

from __future__ import annotations

from collections.abc import Sequence

from jsonargparse import lazy_instance

from glmkit.data.datamodule import DATAMODULES, TRAIN_STREAM, VAL_STREAM, ShardedDataModule
from glmkit.data.loader import ResumableDataLoader
from glmkit.data.mixture import Mixture
from glmkit.data.naflex import (
    NaFlexBatches,
    NaFlexRandomResizedCrop,
    NaFlexResize,
    NaFlexSchedule,
    naflex_loader,
)
from glmkit.data.sources import Source
from glmkit.data.transforms import Transform


@DATAMODULES.register("naflex")
class NaFlexDataModule(ShardedDataModule):
    """NaFlex batches from a weighted mixture of sources.

    A batch holds ``patches``, ``coords`` and ``patches_seq_lens`` (pack) or ``patches_valid``
    (pad), the records' other fields one entry per image (``caption``: list[str]), and the
    mixture's ``source``, ``index`` and ``skipped``.

    Args:
        sources: named record sources with an ``image`` field.
        weights: relative weight per source (``None``: by size).
        transform: record transform before the NaFlex resize (e.g. ``PickCaption``).
        naflex: the training resize (``NaFlexRandomResizedCrop``); its budget is set per image.
        val_naflex: the validation resize (``NaFlexResize``).
        mode: ``pack`` (rows with block-diagonal attention) or ``pad`` (bucketed lengths).
        seq_lens: the patch budgets (buckets).
        seq_len_probs: each bucket's share of the patches (default uniform).
        max_tokens_per_batch: patch positions per rank and step.
        row_len: positions per packed row (default: the largest budget).
        val_mode: batching of validation (``pad`` keeps one image per row).
        val_seq_len: the validation budget.
        seed: seed of the mixture, the schedule and the augmentations.
        samples_per_epoch: training samples per epoch over all ranks.
        val_samples: validation samples (0: none).
        val_sources: held-out sources for validation (``None``: draws from ``sources``).
        val_weights: weights of ``val_sources``.
        num_workers: loader workers per rank.
    """

    def __init__(
        self,
        sources: dict[str, Source],
        weights: dict[str, float] | None = None,
        transform: Transform | None = None,
        naflex: NaFlexResize = lazy_instance(NaFlexRandomResizedCrop, patch_size=16, max_num_patches=256),
        val_naflex: NaFlexResize = lazy_instance(NaFlexResize, patch_size=16, max_num_patches=256),
        mode: str = "pack",
        seq_lens: Sequence[int] = (256,),
        seq_len_probs: Sequence[float] | None = None,
        max_tokens_per_batch: int = 4096,
        row_len: int | None = None,
        val_mode: str = "pad",
        val_seq_len: int = 256,
        seed: int = 0,
        samples_per_epoch: int = 10_000,
        val_samples: int = 0,
        val_sources: dict[str, Source] | None = None,
        val_weights: dict[str, float] | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.naflex = naflex
        self.val_naflex = val_naflex
        self.schedule_args = {
            "mode": mode,
            "seq_lens": tuple(seq_lens),
            "seq_len_probs": seq_len_probs,
            "max_tokens_per_batch": max_tokens_per_batch,
            "row_len": row_len,
        }
        self.val_mode = val_mode
        self.val_seq_len = int(val_seq_len)
        self.seed = int(seed)
        self.num_workers = int(num_workers)
        self.train_set = Mixture(
            sources, weights, transform, seed=seed, num_samples=samples_per_epoch, stream=TRAIN_STREAM
        )
        self.val_set: Mixture | None = None
        if val_samples > 0:
            self.val_set = Mixture(
                val_sources or sources,
                val_weights if val_sources is not None else weights,
                transform,
                seed=seed,
                num_samples=val_samples,
                stream=VAL_STREAM,
            )
        # fail at construction on a bad layout, not at fit time
        NaFlexSchedule(samples_per_epoch, seed=seed, **self.schedule_args)

    def train_dataloader(self) -> ResumableDataLoader:
        """Training steps laid out by the schedule, this rank's share of each."""
        world, rank = self._replicas()
        schedule = NaFlexSchedule(
            len(self.train_set), num_replicas=world, seed=self.seed, shuffle=True, **self.schedule_args
        )
        loader = naflex_loader(
            NaFlexBatches(self.train_set, schedule, self.naflex), rank, num_workers=self.num_workers
        )
        return self.resume_train_loader(loader)

    def val_dataloader(self) -> ResumableDataLoader | list:
        """The validation samples at ``val_seq_len`` patches, the same images every validation."""
        if self.val_set is None:
            return []
        world, rank = self._replicas()
        schedule = NaFlexSchedule(
            len(self.val_set),
            mode=self.val_mode,
            seq_lens=(self.val_seq_len,),
            max_tokens_per_batch=max(self.schedule_args["max_tokens_per_batch"], self.val_seq_len),
            num_replicas=world,
            seed=self.seed,
        )
        batches = NaFlexBatches(self.val_set, schedule, self.val_naflex, keys_with_epoch=False)
        return naflex_loader(batches, rank, num_workers=self.num_workers)

    def test_dataloader(self) -> ResumableDataLoader | list:
        """The validation samples, for ``glmkit test``."""
        return self.val_dataloader()
