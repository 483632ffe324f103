"""Losses, by family; each family declares its own registry with its call signature.

- distillation (``losses/distill.py``, ``distill_losses``): ``(pred [M, D], target [M, D]) -> scalar``;
- policy (``losses/policy.py``, ``policy_losses``): RL policy-gradient and distillation losses over
  token log-probabilities with a completion mask;
- token-level (``losses/mtp.py``, ``token_losses``): next-token plus multi-token-prediction
  cross-entropy over ``[B, T, V]`` logits with labels, image masks and packed-sequence ids;
- contrastive (``losses/siglip.py``, ``contrastive_losses``): ``(image_emb [B, D], text_emb [B, D])``
  -> scalar, with the SigLIP sigmoid loss and its exact, memory-bounded distributed exchanges.
"""

from glmkit.losses.distill import (
    DISTILL_LOSSES,
    CombinedDistillLoss,
    CosineDistillLoss,
    DistillLoss,
    MSEDistillLoss,
    SmoothL1DistillLoss,
)
from glmkit.losses.mtp import (
    TOKEN_LOSSES,
    MTPLoss,
    TokenLoss,
    TokenLossOutput,
    sequence_ids,
    shift_left,
    shifted_targets,
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
from glmkit.losses.siglip import CONTRASTIVE_LOSSES, EXCHANGES, ContrastiveLoss, SigLIPLoss, sigmoid_loss

__all__ = [
    "CONTRASTIVE_LOSSES",
    "EXCHANGES",
    "ContrastiveLoss",
    "SigLIPLoss",
    "sigmoid_loss",
    "TOKEN_LOSSES",
    "MTPLoss",
    "TokenLoss",
    "TokenLossOutput",
    "sequence_ids",
    "shift_left",
    "shifted_targets",
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
