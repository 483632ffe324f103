"""Losses, by family; each family declares its own registry with its call signature.

- distillation (``losses/distill.py``, ``distill_losses``): ``(pred [M, D], target [M, D]) -> scalar``;
- policy (``losses/policy.py``, ``policy_losses``): RL policy-gradient and distillation losses over
  token log-probabilities with a completion mask;
- contrastive (stage 2's sigmoid loss) and token-level (MTP) losses join as ``losses/siglip.py``
  and ``losses/mtp.py``, each with its own registry.
"""

from glmkit.losses.distill import (
    DISTILL_LOSSES,
    CombinedDistillLoss,
    CosineDistillLoss,
    DistillLoss,
    MSEDistillLoss,
    SmoothL1DistillLoss,
)
from glmkit.losses.policy import (
    POLICY_LOSSES,
    ClippedPolicyLoss,
    OnPolicyDistillationLoss,
    PolicyLoss,
    PolicyLossOutput,
    aggregate_loss,
    clipped_surrogate,
    kl_penalty,
)

__all__ = [
    "POLICY_LOSSES",
    "ClippedPolicyLoss",
    "OnPolicyDistillationLoss",
    "PolicyLoss",
    "PolicyLossOutput",
    "aggregate_loss",
    "clipped_surrogate",
    "kl_penalty",
    "DISTILL_LOSSES",
    "CombinedDistillLoss",
    "CosineDistillLoss",
    "DistillLoss",
    "MSEDistillLoss",
    "SmoothL1DistillLoss",
]
