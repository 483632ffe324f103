"""CogViT stage 1: masked image modelling by feature distillation from two frozen teachers.

GLM-5V-Turbo, section 2.1: the student sees each image with 35% of its patch tokens replaced by a
learned mask token and learns to predict, at the masked positions, the patch features of a
semantic teacher (SigLIP2) and a texture teacher (DINOv3). One adaptor head per teacher maps the
shared student tokens into that teacher's space; targets are aligned to the student grid and
normalised per teacher so that neither dominates. Optionally (on in the real recipe) the student's
class and register tokens also learn each teacher's summary of the image through their own
adaptors (AM-RADIO's summary distillation).

The module only wires components together: encoder, teachers, mask generator, adaptors, target
normalisers and distillation losses are all built from the recipe. Masks come with the batch when
the data workers draw them (:class:`~glmkit.data.masking.DrawMask`); target statistics (PHI-S) are
estimated in a pass before the first step.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from jsonargparse import lazy_instance
from torch import Tensor, nn
from torch.utils.data import DataLoader

from glmkit.data.loader import ResumableSampler
from glmkit.data.masking import MaskGenerator, RandomMask
from glmkit.losses import CosineDistillLoss, DistillLoss
from glmkit.models.adaptors import MLPAdaptor
from glmkit.models.distill_targets import LayerNormTarget, TargetNorm, resample_to_grid
from glmkit.models.encoders.base import VisionEncoder
from glmkit.models.frozen import FrozenModels
from glmkit.models.teachers import Teacher, TeacherOutput
from glmkit.models.teachers.base import IMAGENET_MEAN, IMAGENET_STD
from glmkit.optim import MuonAdamW, OptimizerBuilder
from glmkit.stages.base import STAGES, Stage, seed_for


@STAGES.register("mim_distill")
class MIMDistill(Stage):
    """Dual-teacher masked feature distillation (CogViT stage 1).

    Args:
        encoder: the student; called as ``encoder(images, mask=..., mask_token=...)`` and
            returning an object with ``patch_tokens [B, N, D]``; needs ``embed_dim`` and
            ``patch_size`` attributes (the vision-encoder contract, e.g.
            :class:`glmkit.models.encoders.CogViT`).
        teachers: frozen teachers by name; each returns patch features and its grid.
        teacher_weights: loss weight per teacher (default 1.0 each).
        masking: mask generator over the student grid, used for batches without a ``mask`` field;
            None when every batch brings its masks (drawn in the data workers by
            :class:`~glmkit.data.masking.DrawMask`, as the real recipe does).
        loss: distillation loss on masked tokens.
        target_norm: normalisation of each teacher's targets, built once per teacher with that
            teacher's width (a recipe names the class and its other arguments, e.g. PHI-S's
            ``estimate_steps``). Statistics a normalisation needs (PHI-S) are estimated in a pass
            over the first ``estimate_steps`` training batches before the first step
            (:meth:`estimate_target_statistics`), so step 0 already trains on normalised targets;
            called outside ``fit``, a teacher whose normalisation is still estimating gets loss
            weight 0 until it is frozen, so no adaptor chases a moving target.
        summary_weights: summary distillation (AM-RADIO, arXiv 2312.06709): loss weight per
            teacher whose summary (:attr:`~glmkit.models.teachers.TeacherOutput.summary`:
            SigLIP2's pooled output, DINOv3's class token) one of the student's prefix tokens
            learns through its own adaptor head; teachers not named have no summary loss.
        summary_tokens: which prefix token learns each named teacher's summary (0 = the class
            token, 1.. = the registers; default 0 for every teacher). AM-RADIO gives each teacher
            its own token.
        summary_loss: the loss between a summary adaptor's output and the teacher's summary
            (cosine distance, as AM-RADIO's summary loss).
        target_statistics: a directory of per-teacher normalisation statistics (``<teacher>.pt``,
            PHI-S): statistics found there are loaded instead of estimated, and statistics estimated
            before training are written there (by rank 0), so runs on the same teachers and data
            skip the estimate. None: estimate in every new run.
        resolutions: multi-resolution training (RADIOv2.5, EVA-02's multi-scale fine-tuning): each
            training step resizes its batch to one of these square sizes (drawn per step, the same
            on every rank) and runs every teacher at the size that puts it on the student's grid, so
            targets are never resampled; masks are then drawn by ``masking`` on that grid.
            Validation keeps the data's size. None: the data's size throughout.
        adaptor_hidden_dim: hidden width of the adaptor MLPs (default: max of the two widths).
        adaptor_layers: Linear layers per adaptor.
        optimization: the optimizer and learning-rate schedule (Muon on hidden matrices, AdamW on
            the rest, warmup + cosine over ``trainer.max_steps``).
        image_mean: normalisation of the student's input (images arrive in [0, 1]).
        image_std: see ``image_mean``.
        seed: seed of every random draw of a training step (masks, stochastic depth), which
            depend only on (seed, micro-batch count, rank), so a resumed run draws exactly what an
            uninterrupted one does.
        offload_teachers: keep the teachers on the CPU between steps and prefetch them to the
            accelerator before each step (saves accelerator memory at the cost of a copy per step).

    Teachers are held by a :class:`~glmkit.models.frozen.FrozenModels` outside the module tree:
    they are never saved in checkpoints, never reach the optimizer, are not broadcast by DDP and
    are not flattened or sharded by FSDP together with the student.
    """

    def __init__(
        self,
        encoder: VisionEncoder | nn.Module,
        teachers: dict[str, Teacher],
        teacher_weights: dict[str, float] | None = None,
        masking: MaskGenerator | None = lazy_instance(RandomMask, ratio=0.35),
        loss: DistillLoss = lazy_instance(CosineDistillLoss),
        target_norm: Callable[[int], TargetNorm] = LayerNormTarget,
        summary_weights: dict[str, float] | None = None,
        summary_tokens: dict[str, int] | None = None,
        summary_loss: DistillLoss = lazy_instance(CosineDistillLoss),
        target_statistics: str | None = None,
        resolutions: list[int] | None = None,
        adaptor_hidden_dim: int | None = None,
        adaptor_layers: int = 2,
        optimization: OptimizerBuilder = lazy_instance(MuonAdamW),
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        seed: int = 0,
        offload_teachers: bool = False,
    ) -> None:
        super().__init__()
        if not teachers:
            raise ValueError("MIMDistill needs at least one teacher")
        weights = dict(teacher_weights or {})
        unknown = set(weights) - set(teachers)
        if unknown:
            raise KeyError(
                f"teacher_weights names unknown teachers {sorted(unknown)}; teachers are {sorted(teachers)}"
            )
        summary_weights = {name: float(w) for name, w in (summary_weights or {}).items()}
        summary_tokens = dict(summary_tokens or {})
        for label, names in (("summary_weights", summary_weights), ("summary_tokens", summary_tokens)):
            unknown = set(names) - set(teachers)
            if unknown:
                raise KeyError(
                    f"{label} names unknown teachers {sorted(unknown)}; teachers are {sorted(teachers)}"
                )
        extra = sorted(set(summary_tokens) - set(summary_weights))
        if extra:
            raise KeyError(f"summary_tokens names {extra}, which have no summary_weights entry")
        prefix = int(getattr(encoder, "num_prefix_tokens", 0))
        for name in summary_weights:
            index = summary_tokens.setdefault(name, 0)
            if not 0 <= index < prefix:
                raise ValueError(
                    f"summary_tokens[{name!r}] = {index} is not one of the encoder's {prefix} prefix tokens "
                    "(0 = class token, then the registers)"
                )
        patch = int(encoder.patch_size)
        bad = [r for r in resolutions or [] if r <= 0 or r % patch]
        if bad:
            raise ValueError(
                f"resolutions {bad} are not positive multiples of the student's patch size {patch}"
            )
        if resolutions and masking is None:
            raise ValueError(
                "resolutions need masking (a MaskGenerator): masks drawn in the data workers are on the "
                "data's grid, not on the grid of each step's resolution"
            )
        self.save_component_hparams(
            ["encoder", "teachers", "masking", "loss", "target_norm", "summary_loss", "optimization"]
        )
        self.encoder = encoder
        self.teachers: FrozenModels[Teacher] = FrozenModels(teachers, offload=offload_teachers)
        self.teacher_weights = {name: float(weights.get(name, 1.0)) for name in teachers}
        self.masking = masking
        self.loss = loss
        width = int(encoder.embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(width))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.adaptors = nn.ModuleDict(
            {
                name: MLPAdaptor(width, t.embed_dim, hidden_dim=adaptor_hidden_dim, num_layers=adaptor_layers)
                for name, t in teachers.items()
            }
        )
        self.target_norms = nn.ModuleDict({name: target_norm(t.embed_dim) for name, t in teachers.items()})
        self.summary_weights = summary_weights
        self.summary_tokens = summary_tokens
        self.summary_loss = summary_loss
        self.resolutions = [int(r) for r in resolutions] if resolutions else None
        self.target_statistics = target_statistics
        # the summary width is the teacher's own (SigLIP2's head keeps its hidden size)
        self.summary_adaptors = nn.ModuleDict(
            {
                name: MLPAdaptor(width, teachers[name].embed_dim, adaptor_hidden_dim, adaptor_layers)
                for name in summary_weights
            }
        )
        self.optimization = optimization
        self.register_buffer("image_mean", torch.tensor(image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(image_std).view(1, 3, 1, 1), persistent=False)
        self.seed = seed

    # ----------------------------------------------------------------------------------- pieces
    def student_grid(self, images: Tensor) -> tuple[int, int]:
        """Patch grid of the student for an image batch ``[B, 3, H, W]``."""
        p = int(self.encoder.patch_size)
        return images.shape[-2] // p, images.shape[-1] // p

    @torch.no_grad()
    def teacher_outputs(self, images: Tensor, grid: tuple[int, int]) -> dict[str, TeacherOutput]:
        """Each teacher's output with its patch features resampled to the student grid (float32,
        not yet normalised) and its summary.

        Autocast is off here: each teacher runs in its own ``dtype`` and the features, their
        normalisation and its statistics stay in float32/float64 under ``bf16-mixed``.
        """
        outputs = {}
        with torch.autocast(device_type=images.device.type, enabled=False), self.teachers.on(images.device):
            for name, teacher in self.teachers.items():
                # multi-resolution: each teacher on the student's grid, whatever the step's size
                size = grid[0] * teacher.patch_size if self.resolutions else None
                out = teacher(images, image_size=size)
                features = resample_to_grid(out.features.float(), tuple(out.grid_size), grid, teacher=name)
                outputs[name] = TeacherOutput(features, tuple(grid), out.summary)
        return outputs

    def teacher_features(self, images: Tensor, grid: tuple[int, int]) -> dict[str, Tensor]:
        """Teacher features on the student grid before normalisation, ``{name: [B, h*w, D_t]}``."""
        return {name: out.features for name, out in self.teacher_outputs(images, grid).items()}

    @torch.no_grad()
    def teacher_targets(self, images: Tensor, grid: tuple[int, int]) -> dict[str, Tensor]:
        """Normalised teacher features on the student grid, ``{name: [B, h*w, D_t]}`` float32."""
        return {name: out.features for name, out in self.distill_targets(images, grid).items()}

    @torch.no_grad()
    def distill_targets(self, images: Tensor, grid: tuple[int, int]) -> dict[str, TeacherOutput]:
        """Teacher outputs with normalised patch features (the summaries stay raw: the summary
        loss is a cosine, blind to scale)."""
        outputs = self.teacher_outputs(images, grid)
        with torch.autocast(device_type=images.device.type, enabled=False):
            return {
                name: out._replace(features=self.target_norms[name](out.features).float())
                for name, out in outputs.items()
            }

    def pending_statistics(self) -> dict[str, TargetNorm]:
        """The target normalisations still estimating their statistics (PHI-S before it freezes)."""
        return {name: norm for name, norm in self.target_norms.items() if not getattr(norm, "ready", True)}

    @torch.no_grad()
    def estimate_target_statistics(self, batches: Iterable[Mapping[str, Any]]) -> int:
        """Feed teacher features of ``batches`` to every normalisation still estimating, until all
        are frozen; returns the number of batches used.

        Each batch goes through the normalisation's own ``update`` (all-reduced over ranks), so the
        statistics equal those a running estimate over the same batches would freeze.
        """
        used = 0
        for batch in batches:
            pending = self.pending_statistics()
            if not pending:
                break
            images = batch["image"].to(self.device, non_blocking=True)
            features = self.teacher_features(images, self.student_grid(images))
            for name, norm in pending.items():
                norm.update(features[name])
            used += 1
        if self.pending_statistics():
            raise RuntimeError(
                f"target statistics of {sorted(self.pending_statistics())} need more batches than the "
                f"training loader gives ({used}); lower target_norm's estimate_steps or raise "
                "data.samples_per_epoch"
            )
        return used

    def draw_mask(self, batch_size: int, grid: tuple[int, int], *, split: str, step: int) -> Tensor:
        """Token mask ``[B, h*w]`` (True = masked), a pure function of (seed, split, step, rank)."""
        if self.masking is None:
            raise ValueError(
                "MIMDistill has masking=None, so every batch needs a 'mask' field [B, h*w]: add "
                "glmkit.data.masking.DrawMask after the crop in data.transform and data.val_transform"
            )
        return self.masking(batch_size, grid, generator=self.generator(split, step)).to(self.device)

    def batch_mask(self, batch: Mapping[str, Any], *, split: str, step: int) -> Tensor:
        """The batch's ``mask`` (drawn in the data workers) or, without one, :meth:`draw_mask`'s."""
        images = batch["image"]
        grid = self.student_grid(images)
        mask = batch.get("mask")
        if mask is None:
            return self.draw_mask(images.shape[0], grid, split=split, step=step)
        expected = (images.shape[0], grid[0] * grid[1])
        if mask.dtype != torch.bool or tuple(mask.shape) != expected:
            raise ValueError(
                f"the batch's 'mask' must be a bool tensor {list(expected)} over the student's {grid[0]}x"
                f"{grid[1]} grid, got {mask.dtype} {list(mask.shape)}: does DrawMask's patch_size match "
                f"the encoder's ({self.encoder.patch_size})?"
            )
        return mask.to(self.device, non_blocking=True)

    def distill(self, images: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """Losses and cosine similarities per teacher (masked patch tokens, and the summary where
        ``summary_weights`` names the teacher), plus the weighted total."""
        grid = self.student_grid(images)
        targets = self.distill_targets(images, grid)
        student_in = (images - self.image_mean) / self.image_std
        out = self.encoder(student_in, mask=mask, mask_token=self.mask_token)
        masked = out.patch_tokens[mask]  # M, D  (M = masked tokens of the whole batch)
        metrics: dict[str, Tensor] = {}
        total = masked.new_zeros((), dtype=torch.float32)
        for name, adaptor in self.adaptors.items():
            pred, target = adaptor(masked), targets[name].features[mask]
            loss = self.loss(pred, target)
            metrics[f"{name}/loss"] = loss
            metrics[f"{name}/cosine"] = F.cosine_similarity(pred.detach().float(), target, dim=-1).mean()
            # weight 0 (but still in the graph) while the target normalisation is estimating
            ready = float(getattr(self.target_norms[name], "ready", True))
            total = total + ready * self.teacher_weights[name] * loss
        for name, adaptor in self.summary_adaptors.items():
            target = targets[name].summary
            if target is None:
                raise ValueError(
                    f"summary_weights names teacher {name!r}, but it returns no summary (a SigLIP2 "
                    "checkpoint without its pooling head?); remove it from summary_weights"
                )
            pred = adaptor(out.prefix_tokens[:, self.summary_tokens[name]])  # B, D -> B, D_summary
            loss = self.summary_loss(pred, target)
            metrics[f"{name}/summary_loss"] = loss
            metrics[f"{name}/summary_cosine"] = F.cosine_similarity(
                pred.detach().float(), target, dim=-1
            ).mean()
            total = total + self.summary_weights[name] * loss
        metrics["loss"] = total
        return metrics

    # ------------------------------------------------------------------------------- lightning
    def on_train_start(self) -> None:
        """Estimate the target statistics (PHI-S) on the first training batches before step 0.

        The batches are those the first steps of epoch 0 train on, read by a separate loader, so
        the training loader's position (and exact resume) is untouched; a resumed run restores the
        frozen statistics from its checkpoint and skips this.
        """
        loader = self.trainer.train_dataloader
        self.prepare_target_statistics(lambda: _first_epoch_batches(loader))

    def prepare_target_statistics(self, batches: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        """Load the pending normalisations' statistics from ``target_statistics`` where saved, estimate
        the rest on ``batches()`` and save them there."""
        directory = Path(self.target_statistics) if self.target_statistics else None
        for name, norm in self.pending_statistics().items():
            path = directory / f"{name}.pt" if directory is not None else None
            if path is not None and path.is_file() and hasattr(norm, "load_statistics"):
                norm.load_statistics(path)
        if not self.pending_statistics():
            return
        estimated = list(self.pending_statistics())
        self.estimate_target_statistics(batches())
        if directory is not None and self.global_rank == 0:
            directory.mkdir(parents=True, exist_ok=True)
            for name in estimated:
                norm = self.target_norms[name]
                if hasattr(norm, "save_statistics"):
                    norm.save_statistics(directory / f"{name}.pt")

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Start copying the teachers to the accelerator while the batch is prepared."""
        self.teachers.prefetch(self.device)

    def train_resolution(self, step: int) -> int | None:
        """The square size of training step ``step`` (None without ``resolutions``): a pure function
        of (seed, step), the same on every rank so that ranks' step times stay equal."""
        if not self.resolutions:
            return None
        generator = torch.Generator().manual_seed(seed_for(self.seed, "resolution", step))
        return self.resolutions[int(torch.randint(len(self.resolutions), (1,), generator=generator))]

    def resize_batch(self, batch: Mapping[str, Any], step: int) -> Mapping[str, Any]:
        """The batch at step ``step``'s resolution (bilinear, antialiased); a data mask is dropped
        when the size changes (the stage draws one on the new grid)."""
        size = self.train_resolution(step)
        images = batch["image"]
        if size is None or tuple(images.shape[-2:]) == (size, size):
            return batch
        images = F.interpolate(
            images, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        return {**{k: v for k, v in batch.items() if k != "mask"}, "image": images.clamp(0, 1)}

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """Encode the masked images, predict each teacher's features, log per-teacher metrics."""
        batch = self.resize_batch(batch, self.micro_step)
        images = batch["image"]
        mask = self.batch_mask(batch, split="train", step=self.micro_step)
        metrics = self.distill(images, mask)
        size = images.shape[0]
        self.log_dict({f"train/{k}": v for k, v in metrics.items()}, batch_size=size)
        self.log("loss", metrics["loss"], prog_bar=True, logger=False, batch_size=size)
        return metrics["loss"]

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """The same losses on held-out images with a fixed mask per batch."""
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Validation's losses, logged under ``test/``."""
        self._evaluate(batch, batch_idx, "test")

    def _evaluate(self, batch: Mapping[str, Any], batch_idx: int, prefix: str) -> None:
        images = batch["image"]
        mask = self.batch_mask(batch, split="val", step=batch_idx)
        metrics = self.distill(images, mask)
        self.log_dict(
            {f"{prefix}/{k}": v for k, v in metrics.items()}, sync_dist=True, batch_size=images.shape[0]
        )

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Tensor]:
        """Student features of unmasked images: patch tokens and their mean (an image embedding)."""
        tokens = self.encoder((batch["image"] - self.image_mean) / self.image_std).patch_tokens
        return {"index": batch["index"], "patch_tokens": tokens, "embedding": tokens.mean(1)}


def _first_epoch_batches(loader: DataLoader) -> Iterator[Any]:
    """The batches of epoch 0 of the training ``loader`` from its start, by a loader of their own.

    Samples are pure functions of their keys, so a second loader over the same dataset, collate
    and (copied) sampler yields exactly the batches training will see, without moving ``loader``.
    """
    sampler = loader.sampler
    if isinstance(sampler, ResumableSampler):
        sampler = copy.copy(sampler)
        sampler.set_epoch(0)
        sampler.skip(0)
    yield from DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        drop_last=loader.drop_last,
    )
