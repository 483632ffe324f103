"""``ClippedPolicyLoss`` side by side with TRL's ``GRPOTrainer._compute_loss`` on the same inputs.

TRL computes the loss inside its trainer: the per-token log-probs come from the model, then the
clipped surrogate, the k3 KL term and the aggregation named by ``loss_type``. The test runs that
method on a stand-in trainer whose model hands back the test's log-probs (a leaf tensor), so both
implementations see the very same numbers; loss and gradient must agree for every aggregation mode
both libraries name (``grpo``, ``bnpo``, ``dr_grpo``, ``dapo``), with and without the KL penalty,
with off-policy ratios on both sides of the clip range and padded completions.
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from glmkit.losses.policy import ClippedPolicyLoss

trl_grpo = pytest.importorskip("trl.trainer.grpo_trainer", reason="TRL is not installed")


class _Accelerator:
    """The parts of ``accelerate.Accelerator`` the loss touches, for one process."""

    num_processes = 1
    sync_gradients = True

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        return x

    gather_for_metrics = gather

    def reduce(self, x: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        return x


class _TRLTrainer:
    """A stand-in ``GRPOTrainer`` holding only what ``_compute_loss`` reads (TRL's defaults)."""

    def __init__(self, logprobs: torch.Tensor, loss_type: str, beta: float, eps_low: float, eps_high: float):
        self.logprobs = logprobs
        self.loss_type, self.beta = loss_type, beta
        self.epsilon_low, self.epsilon_high = eps_low, eps_high
        self.max_completion_length = logprobs.shape[1]
        self.top_entropy_quantile = 1.0
        self.aux_loss_enabled = False
        self.off_policy_mask_threshold = None
        self.importance_sampling_level = "token"
        self.use_vllm = False
        self.vllm_importance_sampling_correction = False
        self._entropy_bonus_enabled = False
        self.current_gradient_accumulation_steps = 1
        self.model = SimpleNamespace(training=True)
        self.accelerator = _Accelerator()
        self.args = SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1)
        self._metrics: dict[str, Any] = {"train": defaultdict(list), "eval": defaultdict(list)}

    def _get_per_token_logps_and_entropies(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, Any, Any]:
        return self.logprobs, torch.zeros_like(self.logprobs.detach()), None

    compute_loss = trl_grpo.GRPOTrainer._compute_loss


def _inputs(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    batch, width = 6, 7
    lengths = torch.tensor([7, 3, 5, 1, 6, 4])
    mask = (torch.arange(width)[None] < lengths[:, None]).long()
    old = -torch.rand(batch, width, generator=g, dtype=torch.float64) * 3
    # ratios from about 0.5 to 1.6: some clipped below, some above, most inside
    new = old + (torch.rand(batch, width, generator=g, dtype=torch.float64) - 0.45) * 1.0
    ref = old + torch.randn(batch, width, generator=g, dtype=torch.float64) * 0.3
    advantages = torch.randn(batch, generator=g, dtype=torch.float64)
    return {"new": new, "old": old, "ref": ref, "advantages": advantages, "mask": mask}


@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_loss_and_gradient_equal_trl(loss_type: str, beta: float) -> None:
    data = _inputs(seed=["grpo", "bnpo", "dr_grpo", "dapo"].index(loss_type) + (10 if beta else 0))
    mask, tokens = data["mask"], int(data["mask"].sum())
    ours_logp = data["new"].clone().requires_grad_(True)
    ours = ClippedPolicyLoss(eps_low=0.2, eps_high=0.28, loss_type=loss_type, beta=beta, kl_estimator="k3")(
        ours_logp,
        data["old"],
        data["advantages"],
        mask,
        ref_logprobs=data["ref"] if beta else None,
        num_items_in_batch=tokens,
    ).loss
    ours.backward()

    trl_logp = data["new"].clone().requires_grad_(True)
    trainer = _TRLTrainer(trl_logp, loss_type, beta, eps_low=0.2, eps_high=0.28)
    width = mask.shape[1]
    inputs = {
        "prompt_ids": torch.zeros(mask.shape[0], 2, dtype=torch.long),
        "prompt_mask": torch.ones(mask.shape[0], 2, dtype=torch.long),
        "completion_ids": torch.zeros(mask.shape[0], width, dtype=torch.long),
        "completion_mask": mask,
        "advantages": data["advantages"],
        "old_per_token_logps": data["old"],
        "ref_per_token_logps": data["ref"],
        "num_items_in_batch": torch.tensor(float(tokens)),
    }
    theirs = trainer.compute_loss(None, inputs)
    theirs.backward()

    ratio = (data["new"] - data["old"]).exp()[mask.bool()]
    assert (ratio < 0.8).any() and (ratio > 1.28).any()  # both clip bounds are exercised
    torch.testing.assert_close(ours, theirs.to(ours.dtype), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours_logp.grad, trl_logp.grad, rtol=1e-12, atol=1e-12)
    assert ours_logp.grad[~mask.bool()].abs().sum() == 0  # padding gets no gradient
