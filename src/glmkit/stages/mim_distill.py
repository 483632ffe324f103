"""CogViT stage 1: masked image modelling by feature distillation from two frozen teachers.

GLM-5V-Turbo, section 2.1: the student sees each image with 35% of its patch tokens replaced by a
learned mask token and learns to predict, at the masked positions, the patch features of a
semantic teacher (SigLIP2) and a texture teacher (DINOv3). One adaptor head per teacher maps the
shared student tokens into that teacher's space; targets are resampled to the student grid and
normalised per teacher so that neither dominates.

The module only wires components together: encoder, teachers, mask generator, adaptors, target
normalisers and a distillation loss are all built from the recipe.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from glmkit.data.masking import MaskGenerator, RandomMask
from glmkit.losses import CosineDistillLoss, DistillLoss
from glmkit.models.adaptors import MLPAdaptor
from glmkit.models.distill_targets import TARGET_NORMS, resample_to_grid
from glmkit.models.teachers import Teacher
from glmkit.models.teachers.base import IMAGENET_MEAN, IMAGENET_STD
from glmkit.optim import DEFAULT_FALLBACK_PATTERNS, WarmupCosine, muon_param_groups
from glmkit.optim.schedules import Schedule
from glmkit.registry import declare

try:  # set by LightningCLI while it builds the model; Lightning 2.6 has no public accessor for it
    from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
except ImportError:  # a Lightning without it: recipes' checkpoints then keep no component config
    _given_hyperparameters = None

STAGES = declare("stages", "training stages (LightningModules)")


def _seed_for(*parts: int | str) -> int:
    """A stable seed from the parts (Python's ``hash`` is salted per process): a CRC-32 of them."""
    return zlib.crc32("/".join(map(str, parts)).encode())


def _device_of(module: nn.Module) -> torch.device:
    tensor = next(module.parameters(), None)
    if tensor is None:
        tensor = next(module.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


@STAGES.register("mim_distill")
class MIMDistill(pl.LightningModule):
    """Dual-teacher masked feature distillation (CogViT stage 1).

    Args:
        encoder: the student; called as ``encoder(images, mask=..., mask_token=...)`` and
            returning an object with ``patch_tokens [B, N, D]``; needs ``embed_dim`` and
            ``patch_size`` attributes (e.g. :class:`glmkit.models.encoders.CogViT`).
        teachers: frozen teachers by name; each returns patch features and its grid.
        teacher_weights: loss weight per teacher (default 1.0 each).
        masking: mask generator over the student grid (default: random, 35%).
        loss: distillation loss on masked tokens (default: cosine).
        target_norm: registered target normalisation (``layernorm``, ``phis``, ``none``).
        target_norm_args: keyword arguments of the target normalisation (e.g. PHI-S's
            ``estimate_steps``). A teacher whose normalisation is still estimating its statistics
            (PHI-S) gets loss weight 0 until they are frozen, so no adaptor chases a moving target.
        adaptor_hidden_dim: hidden width of the adaptor MLPs (default: max of the two widths).
        adaptor_layers: Linear layers per adaptor.
        optimizer: optimizer factory called on the Muon/AdamW param groups; its
            ``weight_decay`` applies to the decayed groups (norms, biases and tokens never decay)
            (default ``timm.optim.Muon(lr=1e-3, weight_decay=0.05)``).
        schedule: learning-rate schedule over ``trainer.max_steps`` (default: warmup + cosine).
        fallback_patterns: names of 2-D weights that go to AdamW rather than Muon.
        image_mean: normalisation of the student's input (images arrive in [0, 1]).
        image_std: see ``image_mean``.
        seed: seed of every random draw of a training step (masks, stochastic depth), which
            depend only on (seed, micro-batch count, rank), so a resumed run draws exactly what an
            uninterrupted one does.

    Teachers are kept outside the module tree (a plain dict, moved to the batch's device on first
    use): they are never saved in checkpoints, never reach the optimizer, are not broadcast by
    DDP and are not flattened or sharded by FSDP together with the student.
    """

    def __init__(
        self,
        encoder: nn.Module,
        teachers: dict[str, Teacher],
        teacher_weights: dict[str, float] | None = None,
        masking: MaskGenerator | None = None,
        loss: DistillLoss | None = None,
        target_norm: str = "layernorm",
        target_norm_args: dict[str, Any] | None = None,
        adaptor_hidden_dim: int | None = None,
        adaptor_layers: int = 2,
        optimizer: OptimizerCallable | None = None,
        schedule: Schedule | None = None,
        fallback_patterns: Sequence[str] = DEFAULT_FALLBACK_PATTERNS,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        seed: int = 0,
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
        # Under the CLI the recipe's config is stored (so load_from_checkpoint rebuilds every
        # component); built in Python, the injected modules are left out rather than pickled.
        from_recipe = _given_hyperparameters is not None and _given_hyperparameters.get() is not None
        self.save_hyperparameters(ignore=None if from_recipe else ["encoder", "teachers", "masking", "loss"])
        self.encoder = encoder
        self.teachers: dict[str, Teacher] = dict(teachers)  # deliberately not a ModuleDict
        self.teacher_weights = {name: float(weights.get(name, 1.0)) for name in teachers}
        self.masking = masking if masking is not None else RandomMask(0.35)
        self.loss = loss if loss is not None else CosineDistillLoss()
        width = int(encoder.embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(width))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.adaptors = nn.ModuleDict(
            {
                name: MLPAdaptor(width, t.embed_dim, hidden_dim=adaptor_hidden_dim, num_layers=adaptor_layers)
                for name, t in teachers.items()
            }
        )
        norm_cls = TARGET_NORMS.get(target_norm)
        norm_args = dict(target_norm_args or {})
        self.target_norms = nn.ModuleDict(
            {name: norm_cls(t.embed_dim, **norm_args) for name, t in teachers.items()}
        )
        self.optimizer_factory = optimizer
        self.schedule = schedule if schedule is not None else WarmupCosine(warmup_steps=0)
        self.fallback_patterns = tuple(fallback_patterns)
        self.register_buffer("image_mean", torch.tensor(image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(image_std).view(1, 3, 1, 1), persistent=False)
        self.seed = seed
        self._warned_files: set[str] = set()
        self._skipped_total = 0

    # ----------------------------------------------------------------------------------- pieces
    def student_grid(self, images: Tensor) -> tuple[int, int]:
        """Patch grid of the student for an image batch ``[B, 3, H, W]``."""
        p = int(self.encoder.patch_size)
        return images.shape[-2] // p, images.shape[-1] // p

    @torch.no_grad()
    def teacher_targets(self, images: Tensor, grid: tuple[int, int]) -> dict[str, Tensor]:
        """Normalised teacher features on the student grid, ``{name: [B, h*w, D_t]}``.

        Autocast is off here: each teacher runs in its own ``dtype`` and the targets, their
        normalisation and its statistics stay in float32/float64 under ``bf16-mixed``.
        """
        targets = {}
        with torch.autocast(device_type=images.device.type, enabled=False):
            for name, teacher in self.teachers.items():
                if _device_of(teacher) != images.device:
                    teacher.to(images.device)
                out = teacher(images)
                feats = resample_to_grid(out.features.float(), tuple(out.grid_size), grid)
                targets[name] = self.target_norms[name](feats).float()
        return targets

    def draw_mask(self, batch_size: int, grid: tuple[int, int], *, split: str, step: int) -> Tensor:
        """Token mask ``[B, h*w]`` (True = masked), a pure function of (seed, split, step, rank)."""
        gen = torch.Generator().manual_seed(_seed_for(self.seed, split, step, self.global_rank))
        return self.masking(batch_size, grid, generator=gen).to(self.device)

    def distill(self, images: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """Losses and masked-token cosine similarities per teacher, plus the weighted total."""
        grid = self.student_grid(images)
        targets = self.teacher_targets(images, grid)
        student_in = (images - self.image_mean) / self.image_std
        tokens = self.encoder(student_in, mask=mask, mask_token=self.mask_token).patch_tokens
        masked = tokens[mask]  # M, D  (M = masked tokens of the whole batch)
        metrics: dict[str, Tensor] = {}
        total = tokens.new_zeros((), dtype=torch.float32)
        for name, adaptor in self.adaptors.items():
            pred, target = adaptor(masked), targets[name][mask]
            loss = self.loss(pred, target)
            metrics[f"{name}/loss"] = loss
            metrics[f"{name}/cosine"] = F.cosine_similarity(pred.detach().float(), target, dim=-1).mean()
            # weight 0 (but still in the graph) while the target normalisation is estimating
            ready = float(getattr(self.target_norms[name], "ready", True))
            total = total + ready * self.teacher_weights[name] * loss
        metrics["loss"] = total
        return metrics

    # ------------------------------------------------------------------------------- lightning
    def _micro_step(self) -> int:
        """Training batches seen so far, restored on resume (unlike ``global_step``, it counts
        every micro-batch under gradient accumulation)."""
        return int(self.trainer.fit_loop.epoch_loop.batch_progress.total.ready)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Seed the global RNG from (seed, micro-batch, rank): stochastic depth and anything else
        drawn in the step is then the same in a resumed run, and differs across ranks."""
        torch.manual_seed(_seed_for(self.seed, "rng", self._micro_step(), self.global_rank))

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """Encode the masked images, predict each teacher's features, log per-teacher metrics."""
        images = batch["image"]
        grid = self.student_grid(images)
        mask = self.draw_mask(images.shape[0], grid, split="train", step=self._micro_step())
        metrics = self.distill(images, mask)
        size = images.shape[0]
        self.log_dict({f"train/{k}": v for k, v in metrics.items()}, batch_size=size)
        self.log("loss", metrics["loss"], prog_bar=True, logger=False, batch_size=size)
        self._report_skipped(batch, size)
        return metrics["loss"]

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """The same losses on held-out images with a fixed mask per batch."""
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Validation's losses, logged under ``test/``."""
        self._evaluate(batch, batch_idx, "test")

    def _evaluate(self, batch: Mapping[str, Any], batch_idx: int, prefix: str) -> None:
        images = batch["image"]
        mask = self.draw_mask(images.shape[0], self.student_grid(images), split="val", step=batch_idx)
        metrics = self.distill(images, mask)
        self.log_dict(
            {f"{prefix}/{k}": v for k, v in metrics.items()}, sync_dist=True, batch_size=images.shape[0]
        )

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Tensor]:
        """Student features of unmasked images: patch tokens and their mean (an image embedding)."""
        tokens = self.encoder((batch["image"] - self.image_mean) / self.image_std).patch_tokens
        return {"index": batch["index"], "patch_tokens": tokens, "embedding": tokens.mean(1)}

    def _report_skipped(self, batch: Mapping[str, Any], batch_size: int) -> None:
        """Count unreadable images the loader skipped and warn about each file once."""
        skipped = list(batch.get("skipped") or [])
        self._skipped_total += len(skipped)
        # a running total summed over ranks, so no count is lost between logging steps
        self.log(
            "data/skipped_images",
            float(self._skipped_total),
            reduce_fx="sum",
            sync_dist=True,
            batch_size=batch_size,
        )
        for item in skipped:
            if item not in self._warned_files:
                self._warned_files.add(item)
                warnings.warn(f"rank {self.global_rank} skipped unreadable image: {item}", stacklevel=2)

    def configure_optimizers(self) -> dict[str, Any]:
        """One Muon optimizer with an AdamW fallback per group, and a per-step schedule."""
        groups = muon_param_groups(self, fallback_patterns=self.fallback_patterns)
        if self.optimizer_factory is not None:
            optimizer = self.optimizer_factory(groups)
        else:
            from timm.optim import Muon

            optimizer = Muon(groups, lr=1e-3, weight_decay=0.05)
        max_steps = self.trainer.max_steps if self._trainer is not None else -1
        if max_steps is None or max_steps <= 0:
            raise ValueError(
                "MIMDistill's learning-rate schedule needs trainer.max_steps > 0 (got "
                f"{max_steps}); set it in the recipe's trainer section"
            )
        scheduler = self.schedule.build(optimizer, max_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Log the learning rate of the first Muon group and the first AdamW group."""
        optimizer = self.optimizers(use_pl_optimizer=False)
        seen = set()
        for group in optimizer.param_groups:
            kind = "adamw" if group.get("use_fallback") else "muon"
            if kind not in seen:
                seen.add(kind)
                self.log(f"lr/{kind}", float(group["lr"]), logger=True)
