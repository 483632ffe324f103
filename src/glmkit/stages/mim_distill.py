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

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from jsonargparse import lazy_instance
from torch import Tensor, nn

from glmkit.data.masking import MaskGenerator, RandomMask
from glmkit.losses import CosineDistillLoss, DistillLoss
from glmkit.models.adaptors import MLPAdaptor
from glmkit.models.distill_targets import LayerNormTarget, TargetNorm, resample_to_grid
from glmkit.models.encoders.base import VisionEncoder
from glmkit.models.frozen import FrozenModels
from glmkit.models.teachers import Teacher
from glmkit.models.teachers.base import IMAGENET_MEAN, IMAGENET_STD
from glmkit.optim import MuonAdamW, OptimizerBuilder
from glmkit.stages.base import STAGES, Stage


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
        masking: mask generator over the student grid.
        loss: distillation loss on masked tokens.
        target_norm: normalisation of each teacher's targets, built once per teacher with that
            teacher's width (a recipe names the class and its other arguments, e.g. PHI-S's
            ``estimate_steps``). A teacher whose normalisation is still estimating its statistics
            (PHI-S) gets loss weight 0 until they are frozen, so no adaptor chases a moving target.
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
        masking: MaskGenerator = lazy_instance(RandomMask, ratio=0.35),
        loss: DistillLoss = lazy_instance(CosineDistillLoss),
        target_norm: Callable[[int], TargetNorm] = LayerNormTarget,
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
        self.save_component_hparams(["encoder", "teachers", "masking", "loss", "target_norm", "optimization"])
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
    def teacher_targets(self, images: Tensor, grid: tuple[int, int]) -> dict[str, Tensor]:
        """Normalised teacher features on the student grid, ``{name: [B, h*w, D_t]}``.

        Autocast is off here: each teacher runs in its own ``dtype`` and the targets, their
        normalisation and its statistics stay in float32/float64 under ``bf16-mixed``.
        """
        targets = {}
        with torch.autocast(device_type=images.device.type, enabled=False), self.teachers.on(images.device):
            for name, teacher in self.teachers.items():
                out = teacher(images)
                feats = resample_to_grid(out.features.float(), tuple(out.grid_size), grid)
                targets[name] = self.target_norms[name](feats).float()
        return targets

    def draw_mask(self, batch_size: int, grid: tuple[int, int], *, split: str, step: int) -> Tensor:
        """Token mask ``[B, h*w]`` (True = masked), a pure function of (seed, split, step, rank)."""
        return self.masking(batch_size, grid, generator=self.generator(split, step)).to(self.device)

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
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Start copying the teachers to the accelerator while the batch is prepared."""
        self.teachers.prefetch(self.device)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """Encode the masked images, predict each teacher's features, log per-teacher metrics."""
        images = batch["image"]
        grid = self.student_grid(images)
        mask = self.draw_mask(images.shape[0], grid, split="train", step=self.micro_step)
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
        mask = self.draw_mask(images.shape[0], self.student_grid(images), split="val", step=batch_idx)
        metrics = self.distill(images, mask)
        self.log_dict(
            {f"{prefix}/{k}": v for k, v in metrics.items()}, sync_dist=True, batch_size=images.shape[0]
        )

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Tensor]:
        """Student features of unmasked images: patch tokens and their mean (an image embedding)."""
        tokens = self.encoder((batch["image"] - self.image_mean) / self.image_std).patch_tokens
        return {"index": batch["index"], "patch_tokens": tokens, "embedding": tokens.mean(1)}
