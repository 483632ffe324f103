"""Losses: feature distillation (stage 1); sigmoid contrastive and MTP losses join in later stages."""

from glmkit.losses.distill import (
    LOSSES,
    CombinedDistillLoss,
    CosineDistillLoss,
    DistillLoss,
    MSEDistillLoss,
    SmoothL1DistillLoss,
)

__all__ = [
    "LOSSES",
    "CombinedDistillLoss",
    "CosineDistillLoss",
    "DistillLoss",
    "MSEDistillLoss",
    "SmoothL1DistillLoss",
]
