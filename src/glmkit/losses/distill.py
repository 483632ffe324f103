"""Feature-distillation losses between student predictions and teacher features.

Stage 1 of CogViT (GLM-5V-Turbo, section 2.1) regresses the features of frozen teachers at masked
positions. Each loss here maps ``pred [M, D]`` and ``target [M, D]`` (the M selected tokens) to a
scalar mean over tokens; :class:`CombinedDistillLoss` adds weighted terms, e.g. cosine + smooth-L1
as in RADIO/AM-RADIO's feature matching.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glmkit.registry import declare


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


DISTILL_LOSSES = declare(
    "distill_losses", "feature-distillation losses: (pred [M, D], target [M, D]) -> scalar", base=DistillLoss
)


@DISTILL_LOSSES.register("cosine")
class CosineDistillLoss(DistillLoss):
    """``1 - cos(pred, target)`` per token: matches direction, ignores scale."""

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Mean cosine distance."""
        self._check(pred, target)
        return (1.0 - F.cosine_similarity(pred.float(), target.float(), dim=-1)).mean()


@DISTILL_LOSSES.register("smooth_l1")
class SmoothL1DistillLoss(DistillLoss):
    """Smooth-L1 (Huber) per element, summed over channels' mean: robust to outlier channels."""

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = beta

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Mean smooth-L1 over tokens and channels."""
        self._check(pred, target)
        return F.smooth_l1_loss(pred.float(), target.float(), beta=self.beta)


@DISTILL_LOSSES.register("mse")
class MSEDistillLoss(DistillLoss):
    """Mean squared error over tokens and channels."""

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Mean squared error."""
        self._check(pred, target)
        return F.mse_loss(pred.float(), target.float())


@DISTILL_LOSSES.register("combined")
class CombinedDistillLoss(DistillLoss):
    """A weighted sum of distillation losses, e.g. cosine + smooth-L1 as in RADIO's feature matching.

    In a recipe each term is a component with its own arguments::

        loss:
          class_path: glmkit.losses.CombinedDistillLoss
          init_args:
            terms:
              cosine: {class_path: glmkit.losses.CosineDistillLoss}
              smooth_l1: {class_path: glmkit.losses.SmoothL1DistillLoss, init_args: {beta: 0.5}}
            weights: {cosine: 1.0, smooth_l1: 1.0}

    Args:
        terms: the losses by name (the names key ``weights``).
        weights: weight per term name (default 1.0 each).
    """

    def __init__(self, terms: dict[str, DistillLoss], weights: dict[str, float] | None = None) -> None:
        super().__init__()
        if not terms:
            raise ValueError(
                "CombinedDistillLoss needs at least one term, e.g. {'cosine': CosineDistillLoss()}"
            )
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(terms))
        if unknown:
            raise KeyError(
                f"CombinedDistillLoss weights name unknown terms {unknown}; terms are {sorted(terms)}"
            )
        for name, term in terms.items():
            if not isinstance(term, DistillLoss):
                raise TypeError(
                    f"CombinedDistillLoss term {name!r} must be a DistillLoss, got {type(term).__name__}"
                )
        self.terms = nn.ModuleDict(terms)
        self.weights = {name: float(weights.get(name, 1.0)) for name in terms}

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Weighted sum of the terms."""
        total = pred.new_zeros((), dtype=torch.float32)
        for name, loss in self.terms.items():
            total = total + self.weights[name] * loss(pred, target)
        return total
