"""Feature-distillation losses between student predictions and teacher features.

Stage 1 of CogViT (GLM-5V-Turbo, section 2.1) regresses the features of frozen teachers at masked
positions. Each loss here maps ``pred [M, D]`` and ``target [M, D]`` (the M selected tokens) to a
scalar mean over tokens; :class:`CombinedDistillLoss` adds weighted terms, e.g. cosine + smooth-L1
as in RADIO/AM-RADIO's feature matching.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glmkit.registry import declare

LOSSES = declare("losses", "training losses")


class DistillLoss(nn.Module):
    """Base class: ``forward(pred [M, D], target [M, D]) -> scalar``, the mean over the M tokens."""

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Compute the loss."""
        raise NotImplementedError

    @staticmethod
    def _check(pred: Tensor, target: Tensor) -> None:
        if pred.shape != target.shape:
            raise ValueError(
                f"distillation loss needs pred and target of the same shape, got {tuple(pred.shape)} "
                f"and {tuple(target.shape)}"
            )


@LOSSES.register("cosine")
class CosineDistillLoss(DistillLoss):
    """``1 - cos(pred, target)`` per token: matches direction, ignores scale."""

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Mean cosine distance."""
        self._check(pred, target)
        return (1.0 - F.cosine_similarity(pred.float(), target.float(), dim=-1)).mean()


@LOSSES.register("smooth_l1")
class SmoothL1DistillLoss(DistillLoss):
    """Smooth-L1 (Huber) per element, summed over channels' mean: robust to outlier channels."""

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = beta

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Mean smooth-L1 over tokens and channels."""
        self._check(pred, target)
        return F.smooth_l1_loss(pred.float(), target.float(), beta=self.beta)


@LOSSES.register("mse")
class MSEDistillLoss(DistillLoss):
    """Mean squared error over tokens and channels."""

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Mean squared error."""
        self._check(pred, target)
        return F.mse_loss(pred.float(), target.float())


@LOSSES.register("combined")
class CombinedDistillLoss(DistillLoss):
    """A weighted sum of distillation losses, e.g. ``{"cosine": 1.0, "smooth_l1": 1.0}``.

    Args:
        terms: registered loss names mapped to their weight, or to a mapping with ``weight`` and the
            term's own arguments: ``{"cosine": 1.0, "smooth_l1": {"weight": 1.0, "beta": 0.5}}``.
    """

    def __init__(self, terms: dict[str, float | dict[str, Any]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("CombinedDistillLoss needs at least one term, e.g. {'cosine': 1.0}")
        self.weights: dict[str, float] = {}
        built = {}
        for name, spec in terms.items():
            kwargs = dict(spec) if isinstance(spec, Mapping) else {"weight": spec}
            if "weight" not in kwargs:
                raise ValueError(
                    f"CombinedDistillLoss term {name!r} needs a 'weight' next to its arguments, got {spec!r}"
                )
            self.weights[name] = float(kwargs.pop("weight"))
            try:
                built[name] = LOSSES.build(name, **kwargs)
            except TypeError as exc:
                raise TypeError(f"CombinedDistillLoss term {name!r}: {exc}") from None
        self.terms = nn.ModuleDict(built)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Weighted sum of the terms."""
        total = pred.new_zeros((), dtype=torch.float32)
        for name, loss in self.terms.items():
            total = total + self.weights[name] * loss(pred, target)
        return total
