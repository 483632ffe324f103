"""Policy-gradient losses on token log-probabilities (GLM-5V-Turbo report section 2.3).

Every tensor here is ``[B, T]`` over the completion tokens of B sampled sequences, right-padded to
T; ``completion_mask [B, T]`` (bool or 0/1) is 1 on tokens the loss may touch and 0 on padding
(and on tool-output tokens in multi-step tasks). In the loss modules and :func:`aggregate_loss`,
masked positions reach neither the loss nor its gradient, even when they hold NaN or -inf. Loss
modules return a :class:`PolicyLossOutput`: the scalar to minimise and detached metrics for
``log_dict``.

Pieces, each usable alone:

- :func:`clipped_surrogate`: PPO's clipped objective with DAPO's asymmetric range
  ``clip(rho, 1 - eps_low, 1 + eps_high)`` (Yu et al. 2025, arXiv 2503.14476, "clip-higher");
- :func:`kl_penalty`: Schulman's k1, k2, k3 estimators of KL(pi_theta || pi_ref)
  (http://joschu.net/blog/kl-approx.html);
- :func:`aggregate_loss`: the loss aggregation modes under TRL's names ``grpo``, ``bnpo``,
  ``dr_grpo``, ``dapo``.

Registry ``policy_losses``: ``ppo_clip`` (:class:`ClippedPolicyLoss`, GRPO / DAPO / Dr. GRPO
depending on the advantages and ``loss_type``) and ``on_policy_distillation``
(:class:`OnPolicyDistillationLoss`).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from glmkit.registry import declare

LossType = Literal["grpo", "bnpo", "dr_grpo", "dapo"]
KLEstimator = Literal["k1", "k2", "k3"]
LOSS_TYPES: tuple[str, ...] = ("grpo", "bnpo", "dr_grpo", "dapo")
KL_ESTIMATORS: tuple[str, ...] = ("k1", "k2", "k3")


class PolicyLossOutput(NamedTuple):
    """The loss to minimise and detached metrics (floats as 0-d tensors) for ``log_dict``."""

    loss: Tensor
    metrics: dict[str, Tensor]


class PolicyLoss(nn.Module):
    """Base class of the ``policy_losses`` registry: ``forward(...) -> PolicyLossOutput``."""


POLICY_LOSSES = declare("policy_losses", "RL policy losses on token log-probabilities", base=PolicyLoss)


def _mask(completion_mask: Tensor, like: Tensor, name: str = "completion_mask") -> Tensor:
    if completion_mask.shape != like.shape:
        raise ValueError(
            f"{name} must have the log-probs' shape {tuple(like.shape)} [B, T], got {tuple(completion_mask.shape)}"
        )
    return completion_mask.bool()


def _clean(t: Tensor, mask: Tensor) -> Tensor:
    """``t`` with masked positions set to 0, so that NaN or -inf there reaches neither loss nor gradient."""
    return torch.where(mask, t, torch.zeros((), dtype=t.dtype, device=t.device))


def _same_shape(name: str, t: Tensor, like: Tensor) -> None:
    if t.shape != like.shape:
        raise ValueError(
            f"{name} must have shape {tuple(like.shape)} [B, T] like logprobs, got {tuple(t.shape)}"
        )


def aggregate_loss(
    per_token_loss: Tensor,
    completion_mask: Tensor,
    loss_type: LossType = "dapo",
    *,
    max_completion_length: int | None = None,
    num_items_in_batch: int | float | Tensor | None = None,
    world_size: int = 1,
) -> Tensor:
    """Reduce a per-token loss ``[B, T]`` to a scalar, as TRL's ``GRPOTrainer`` names the modes.

    With ``l`` the per-token loss and ``m`` the mask (TRL docs ``grpo_trainer.md``, "Loss Types";
    ``GRPOTrainer._compute_loss``):

    - ``grpo``: ``mean_i (sum_t m l / max(1, sum_t m))``: token mean per sequence, then mean over
      sequences (the DeepSeekMath objective; long answers weigh less per token).
    - ``bnpo``: ``sum m l / max(1, sum m)``: token mean over this micro-batch.
    - ``dr_grpo``: ``sum m l / (B * L)`` with ``L = max_completion_length`` (default: the padded
      width T): a constant divisor, so no length bias (Liu et al. 2025, arXiv 2503.20783).
    - ``dapo``: ``sum m l / (num_items_in_batch / world_size)``, where ``num_items_in_batch`` is
      the number of unmasked tokens in the whole global batch of the optimizer step (all ranks,
      all micro-batches). Summed over the step's micro-batches and averaged over ranks by DDP,
      this is the token mean over the global batch (Yu et al. 2025, arXiv 2503.14476). ``None``
      means this micro-batch is the whole global batch (the local token count, ``world_size`` 1).

    TRL also divides ``grpo``/``bnpo``/``dr_grpo`` by the gradient-accumulation steps; Lightning's
    automatic optimisation does that itself (it scales each micro-batch loss by
    ``1 / accumulate_grad_batches``), so it is not done here. For ``dapo`` under Lightning
    accumulation, that scaling must be undone: pass ``num_items_in_batch / accumulate_grad_batches``.
    """
    mask = _mask(completion_mask, per_token_loss)
    if per_token_loss.dim() != 2:
        raise ValueError(f"per_token_loss must be [B, T], got shape {tuple(per_token_loss.shape)}")
    masked = torch.where(mask, per_token_loss, torch.zeros_like(per_token_loss))
    tokens = mask.sum(-1).to(per_token_loss.dtype)  # [B]
    if loss_type == "grpo":
        return (masked.sum(-1) / tokens.clamp(min=1.0)).mean()
    if loss_type == "bnpo":
        return masked.sum() / tokens.sum().clamp(min=1.0)
    if loss_type == "dr_grpo":
        length = per_token_loss.shape[-1] if max_completion_length is None else max_completion_length
        if length < 1:
            raise ValueError(f"max_completion_length must be >= 1, got {max_completion_length}")
        return masked.sum() / (per_token_loss.shape[0] * length)
    if loss_type == "dapo":
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        if num_items_in_batch is None:
            if world_size != 1:
                raise ValueError("dapo with world_size > 1 needs num_items_in_batch (the global token count)")
            normalizer = tokens.sum().clamp(min=1.0)
        else:
            normalizer = torch.as_tensor(num_items_in_batch, dtype=per_token_loss.dtype, device=masked.device)
            if float(normalizer) <= 0:
                raise ValueError(f"num_items_in_batch must be > 0, got {float(normalizer)}")
            normalizer = normalizer / world_size
        return masked.sum() / normalizer
    raise ValueError(f"unknown loss_type {loss_type!r}; expected one of {LOSS_TYPES}")


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor, estimator: KLEstimator = "k3") -> Tensor:
    """Per-token estimate ``[B, T]`` of KL(pi_theta || pi_ref) on tokens sampled from pi_theta.

    With ``log_r = ref_logprobs - logprobs`` (Schulman 2020, "Approximating KL Divergence"):

    - ``k1 = -log_r``: unbiased, high variance, can be negative;
    - ``k2 = log_r ** 2 / 2``: biased, low variance, always >= 0;
    - ``k3 = (exp(log_r) - 1) - log_r``: unbiased, low variance, always >= 0 (TRL's estimator,
      verl's ``low_var_kl``, which also clamps it; no clamp here).

    Used as a loss term, the gradient flows through ``logprobs`` only (the sampling is not
    differentiated), so the estimators differ in gradient too: in expectation, k2's gradient is
    that of KL(pi_theta || pi_ref), k3's that of KL(pi_ref || pi_theta), and k1's is zero.
    """
    _same_shape("ref_logprobs", ref_logprobs, logprobs)
    log_r = ref_logprobs - logprobs
    if estimator == "k1":
        return -log_r
    if estimator == "k2":
        return 0.5 * log_r * log_r
    if estimator == "k3":
        return torch.expm1(log_r) - log_r
    raise ValueError(f"unknown KL estimator {estimator!r}; expected one of {KL_ESTIMATORS}")


def clipped_surrogate(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
) -> tuple[Tensor, Tensor, Tensor]:
    """PPO's clipped per-token loss with an asymmetric range, and where it clipped.

    ``rho = exp(logprobs - old_logprobs)``;
    ``loss = -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A)``. Returns
    ``(loss [B, T], low_clipped [B, T], high_clipped [B, T])``, the masks marking tokens whose
    gradient the clip removed (``rho < 1 - eps_low`` with ``A < 0``; ``rho > 1 + eps_high`` with
    ``A > 0``). ``advantages`` is ``[B]`` (one per sequence) or ``[B, T]``.
    """
    _same_shape("old_logprobs", old_logprobs, logprobs)
    if not 0 <= eps_low < 1 or eps_high < 0:
        raise ValueError(
            f"need 0 <= eps_low < 1 and eps_high >= 0, got eps_low={eps_low}, eps_high={eps_high}"
        )
    if advantages.dim() == 1 and advantages.shape[0] == logprobs.shape[0]:
        advantages = advantages.unsqueeze(1)
    elif advantages.shape != logprobs.shape:
        raise ValueError(
            f"advantages must be [B] or [B, T] for log-probs of shape {tuple(logprobs.shape)}, "
            f"got {tuple(advantages.shape)}"
        )
    advantages = advantages.to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs)
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    loss = -torch.minimum(ratio * advantages, clipped * advantages)
    low = (ratio < 1.0 - eps_low) & (advantages < 0)
    high = (ratio > 1.0 + eps_high) & (advantages > 0)
    return loss, low, high


def _token_mean(x: Tensor, mask: Tensor) -> Tensor:
    x = torch.where(mask, x.detach().to(torch.float32), torch.zeros((), dtype=torch.float32, device=x.device))
    return x.sum() / mask.sum().clamp(min=1)


@POLICY_LOSSES.register("ppo_clip")
class ClippedPolicyLoss(PolicyLoss):
    """Clipped policy-gradient loss with an optional KL penalty to a reference policy.

    Per token ``l = -min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A) + beta * KL``, reduced by
    :func:`aggregate_loss`. With GRPO advantages and ``loss_type="grpo"`` this is GRPO; with
    ``eps_high = 0.28`` and ``loss_type="dapo"`` (the defaults) DAPO's objective; with unscaled
    advantages and ``loss_type="dr_grpo"`` Dr. GRPO.

    Args:
        eps_low: lower clip range (ratio floor ``1 - eps_low``).
        eps_high: upper clip range (ratio ceiling ``1 + eps_high``; DAPO's clip-higher is 0.28).
        loss_type: ``grpo``, ``bnpo``, ``dr_grpo`` or ``dapo`` (see :func:`aggregate_loss`).
        beta: weight of the KL penalty; 0 needs no reference log-probs.
        kl_estimator: ``k1``, ``k2`` or ``k3`` (see :func:`kl_penalty`).
        max_completion_length: the ``dr_grpo`` constant (default: the padded width).
    """

    def __init__(
        self,
        eps_low: float = 0.2,
        eps_high: float = 0.28,
        loss_type: LossType = "dapo",
        beta: float = 0.0,
        kl_estimator: KLEstimator = "k3",
        max_completion_length: int | None = None,
    ) -> None:
        super().__init__()
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"unknown loss_type {loss_type!r}; expected one of {LOSS_TYPES}")
        if kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"unknown kl_estimator {kl_estimator!r}; expected one of {KL_ESTIMATORS}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if not 0 <= eps_low < 1 or eps_high < 0:
            raise ValueError(
                f"need 0 <= eps_low < 1 and eps_high >= 0, got eps_low={eps_low}, eps_high={eps_high}"
            )
        self.eps_low = eps_low
        self.eps_high = eps_high
        self.loss_type = loss_type
        self.beta = beta
        self.kl_estimator = kl_estimator
        self.max_completion_length = max_completion_length

    def forward(
        self,
        logprobs: Tensor,
        old_logprobs: Tensor,
        advantages: Tensor,
        completion_mask: Tensor,
        ref_logprobs: Tensor | None = None,
        num_items_in_batch: int | float | Tensor | None = None,
        world_size: int = 1,
    ) -> PolicyLossOutput:
        """Loss over the masked tokens; metrics ``clip_ratio/{low,high,region}_mean`` and ``kl``.

        Args:
            logprobs: ``[B, T]`` log-probs of the sampled tokens under the policy being trained.
            old_logprobs: ``[B, T]`` log-probs under the policy that sampled them.
            advantages: ``[B]`` or ``[B, T]``.
            completion_mask: ``[B, T]``, 0 on padding.
            ref_logprobs: ``[B, T]`` log-probs under the reference policy (needed when beta > 0).
            num_items_in_batch, world_size: the ``dapo`` normaliser (see :func:`aggregate_loss`).
        """
        mask = _mask(completion_mask, logprobs)
        _same_shape("old_logprobs", old_logprobs, logprobs)
        logprobs, old_logprobs = _clean(logprobs, mask), _clean(old_logprobs, mask)
        if advantages.shape == logprobs.shape:
            advantages = _clean(advantages, mask)
        per_token, low, high = clipped_surrogate(
            logprobs, old_logprobs, advantages, eps_low=self.eps_low, eps_high=self.eps_high
        )
        metrics = {
            "clip_ratio/low_mean": _token_mean(low, mask),
            "clip_ratio/high_mean": _token_mean(high, mask),
            "clip_ratio/region_mean": _token_mean(low | high, mask),
        }
        if self.beta > 0 and ref_logprobs is None:
            raise ValueError(f"beta={self.beta} needs ref_logprobs (the reference policy's token log-probs)")
        if ref_logprobs is not None:
            _same_shape("ref_logprobs", ref_logprobs, logprobs)
            kl = kl_penalty(logprobs, _clean(ref_logprobs, mask), self.kl_estimator)
            metrics["kl"] = _token_mean(kl, mask)
            if self.beta > 0:
                per_token = per_token + self.beta * kl
        loss = aggregate_loss(
            per_token,
            mask,
            self.loss_type,
            max_completion_length=self.max_completion_length,
            num_items_in_batch=num_items_in_batch,
            world_size=world_size,
        )
        return PolicyLossOutput(loss, metrics)


@POLICY_LOSSES.register("on_policy_distillation")
class OnPolicyDistillationLoss(PolicyLoss):
    """Reverse KL to a teacher on the policy's own samples (on-policy distillation).

    The policy samples the completions; a teacher scores the same tokens (``teacher_logprobs``).
    The loss minimises KL(pi_theta || pi_teacher) per token, with the sampled-token estimate
    ``d_t = log pi_theta(y_t) - log pi_teacher(y_t)`` as a per-token negative advantage
    (GLM-5V-Turbo section 2.3 uses on-policy distillation beside RL; the estimator and the
    per-token reward follow Agarwal et al. 2024, GKD, arXiv 2306.13649, and Thinking Machines'
    "On-Policy Distillation", 2025). Per token::

        l_t = rho_t * stopgrad(d_t),   rho_t = exp(log pi_theta(y_t) - stopgrad(old_t))

    On-policy (``old_logprobs`` omitted: the current log-probs, detached), ``rho_t = 1``, so the
    loss value is the mean of ``d_t`` (the k1 estimate of the reverse KL) and its gradient is
    ``d_t * grad log pi_theta(y_t)``, the score-function gradient of the per-token reverse KL.
    Differentiating ``d_t`` directly would not do: its gradient has expectation zero under
    sampling from pi_theta. Each token is its own step (no credit to earlier tokens).

    Args:
        loss_type: aggregation (see :func:`aggregate_loss`).
        max_completion_length: the ``dr_grpo`` constant (default: the padded width).
    """

    def __init__(self, loss_type: LossType = "dapo", max_completion_length: int | None = None) -> None:
        super().__init__()
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"unknown loss_type {loss_type!r}; expected one of {LOSS_TYPES}")
        self.loss_type = loss_type
        self.max_completion_length = max_completion_length

    def forward(
        self,
        logprobs: Tensor,
        teacher_logprobs: Tensor,
        completion_mask: Tensor,
        old_logprobs: Tensor | None = None,
        num_items_in_batch: int | float | Tensor | None = None,
        world_size: int = 1,
    ) -> PolicyLossOutput:
        """Loss over the masked tokens; metric ``reverse_kl`` (token mean of ``d_t``).

        Args:
            logprobs: ``[B, T]`` policy log-probs of its own sampled tokens.
            teacher_logprobs: ``[B, T]`` teacher log-probs of the same tokens.
            completion_mask: ``[B, T]``, 0 on padding.
            old_logprobs: ``[B, T]`` log-probs of the sampling policy when it lags the trained one.
            num_items_in_batch, world_size: the ``dapo`` normaliser (see :func:`aggregate_loss`).
        """
        mask = _mask(completion_mask, logprobs)
        _same_shape("teacher_logprobs", teacher_logprobs, logprobs)
        logprobs, teacher_logprobs = _clean(logprobs, mask), _clean(teacher_logprobs, mask)
        old = logprobs.detach() if old_logprobs is None else old_logprobs
        _same_shape("old_logprobs", old, logprobs)
        old = _clean(old, mask)
        gap = (logprobs - teacher_logprobs).detach()
        per_token = torch.exp(logprobs - old.detach()) * gap
        loss = aggregate_loss(
            per_token,
            mask,
            self.loss_type,
            max_completion_length=self.max_completion_length,
            num_items_in_batch=num_items_in_batch,
            world_size=world_size,
        )
        return PolicyLossOutput(loss, {"reverse_kl": _token_mean(gap, mask)})
