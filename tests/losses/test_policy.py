"""Policy losses against hand-computed values and exact gradients."""

from __future__ import annotations

import math

import pytest
import torch

from glmkit.losses.policy import (
    POLICY_LOSSES,
    ClippedPolicyLoss,
    OnPolicyDistillationLoss,
    aggregate_loss,
    clipped_surrogate,
    kl_penalty,
)
from glmkit.registry import registry

NAN = float("nan")


def test_registered_by_name() -> None:
    assert registry("policy_losses") is POLICY_LOSSES
    assert POLICY_LOSSES.get("ppo_clip") is ClippedPolicyLoss
    assert POLICY_LOSSES.get("on_policy_distillation") is OnPolicyDistillationLoss


def _two_sequences() -> tuple[torch.Tensor, torch.Tensor]:
    # sequence A: 2 tokens with loss 1; sequence B: 4 tokens with loss 0; padded to T = 8 with NaN
    loss = torch.full((2, 8), NAN)
    loss[0, :2] = 1.0
    loss[1, :4] = 0.0
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[0, :2] = True
    mask[1, :4] = True
    return loss, mask


def test_aggregation_modes() -> None:
    loss, mask = _two_sequences()
    # grpo: per-sequence token means (2/2, 0/4) = (1, 0), then their mean -> 0.5
    assert aggregate_loss(loss, mask, "grpo").item() == pytest.approx(0.5)
    # bnpo: all tokens 2 / 6 -> 1/3
    assert aggregate_loss(loss, mask, "bnpo").item() == pytest.approx(1 / 3)
    # dr_grpo: 2 / (B * L_max) = 2 / (2 * 8) = 0.125 (L_max defaults to the padded width)
    assert aggregate_loss(loss, mask, "dr_grpo").item() == pytest.approx(0.125)
    # ... or a given max_completion_length: 2 / (2 * 16) = 0.0625
    assert aggregate_loss(loss, mask, "dr_grpo", max_completion_length=16).item() == pytest.approx(0.0625)
    # dapo on a batch that is the whole global batch: 2 / 6
    assert aggregate_loss(loss, mask, "dapo").item() == pytest.approx(1 / 3)
    # dapo with a global token count of 12 on 2 ranks: 2 / (12 / 2) = 1/3
    assert aggregate_loss(loss, mask, "dapo", num_items_in_batch=12, world_size=2).item() == pytest.approx(
        1 / 3
    )


def test_dapo_is_the_global_token_mean_across_ranks_and_micro_batches() -> None:
    # 2 ranks x 2 micro-batches of different lengths: summing each rank's micro-batch losses and
    # averaging over ranks (what DDP does to gradients) gives the token mean of the whole batch
    torch.manual_seed(0)
    batches = []
    for length in (3, 5, 2, 7):
        loss = torch.randn(2, length)
        mask = torch.rand(2, length) > 0.3
        mask[:, 0] = True
        batches.append((loss, mask))
    tokens = sum(int(m.sum()) for _, m in batches)
    total = sum(float(loss[m].sum()) for loss, m in batches)
    per_rank = [
        sum(
            aggregate_loss(loss, m, "dapo", num_items_in_batch=tokens, world_size=2)
            for loss, m in batches[r::2]
        )
        for r in range(2)
    ]
    assert float(sum(per_rank) / 2) == pytest.approx(total / tokens)
    # bnpo, by contrast, is a per-micro-batch mean
    bnpo = sum(aggregate_loss(loss, m, "bnpo") for loss, m in batches) / 4
    assert float(bnpo) != pytest.approx(total / tokens)


def test_clipped_surrogate_asymmetric_clip_by_hand() -> None:
    # eps_low 0.2, eps_high 0.28; four one-token sequences (ratio, advantage):
    #   (1.5, +1): -min(1.5, 1.28) = -1.28, clipped high, no gradient
    #   (0.5, +1): -min(0.5, 0.8) = -0.5, not clipped, d/dlogp = -ratio * A = -0.5
    #   (0.5, -1): -min(-0.5, -0.8) = 0.8, clipped low, no gradient
    #   (1.5, -1): -min(-1.5, -1.28) = 1.5, not clipped, d/dlogp = 1.5
    old = torch.zeros(4, 1)
    logp = torch.log(torch.tensor([[1.5], [0.5], [0.5], [1.5]])).requires_grad_()
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0])
    per_token, low, high = clipped_surrogate(logp, old, adv, eps_low=0.2, eps_high=0.28)
    torch.testing.assert_close(per_token.detach(), torch.tensor([[-1.28], [-0.5], [0.8], [1.5]]))
    assert low.flatten().tolist() == [False, False, True, False]
    assert high.flatten().tolist() == [True, False, False, False]
    # as a module with token-mean aggregation: (-1.28 - 0.5 + 0.8 + 1.5) / 4 = 0.13
    out = ClippedPolicyLoss(eps_low=0.2, eps_high=0.28, loss_type="bnpo")(logp, old, adv, torch.ones(4, 1))
    assert out.loss.item() == pytest.approx(0.13)
    out.loss.backward()
    # gradients / 4 tokens: (0, -0.5, 0, 1.5) / 4
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0], [-0.125], [0.0], [0.375]]))
    assert out.metrics["clip_ratio/low_mean"].item() == pytest.approx(0.25)
    assert out.metrics["clip_ratio/high_mean"].item() == pytest.approx(0.25)
    assert out.metrics["clip_ratio/region_mean"].item() == pytest.approx(0.5)


def test_kl_estimators_by_hand() -> None:
    # pi = 0.5, ref = 0.25: log r = log(0.25 / 0.5) = -log 2
    #   k1 = log 2 = 0.693147; k2 = (log 2)^2 / 2 = 0.240227; k3 = (0.5 - 1) + log 2 = 0.193147
    logp = torch.tensor([[math.log(0.5)]])
    ref = torch.tensor([[math.log(0.25)]])
    assert kl_penalty(logp, ref, "k1").item() == pytest.approx(math.log(2))
    assert kl_penalty(logp, ref, "k2").item() == pytest.approx(math.log(2) ** 2 / 2)
    assert kl_penalty(logp, ref, "k3").item() == pytest.approx(math.log(2) - 0.5)


def test_kl_penalty_in_the_loss() -> None:
    # ratio 1 and advantage 0: the loss is beta * k3 = 0.1 * 0.193147; d k3 / d logp = 1 - ref/pi = 0.5
    logp = torch.tensor([[math.log(0.5)]], requires_grad=True)
    ref = torch.tensor([[math.log(0.25)]])
    loss = ClippedPolicyLoss(beta=0.1)(
        logp, logp.detach(), torch.zeros(1), torch.ones(1, 1), ref_logprobs=ref
    )
    assert loss.loss.item() == pytest.approx(0.1 * (math.log(2) - 0.5))
    assert loss.metrics["kl"].item() == pytest.approx(math.log(2) - 0.5)
    loss.loss.backward()
    assert logp.grad.item() == pytest.approx(0.1 * 0.5)


def _policy_and_teacher() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a 5-token categorical policy and a teacher's log-probs."""
    torch.manual_seed(1)
    theta = torch.randn(5, dtype=torch.float64, requires_grad=True)
    return theta, torch.log_softmax(torch.randn(5, dtype=torch.float64), 0)


def _expected_grad(per_token, theta: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Gradient of sum_y pi(y) per_token(y) with pi(y) held fixed: the expected gradient of a loss on
    tokens sampled from pi (the sampling itself is not differentiated), computed exactly."""
    logp = torch.log_softmax(theta, 0)
    total = sum(
        logp[y].exp().detach() * per_token(logp[y].view(1, 1), teacher[y].view(1, 1)) for y in range(5)
    )
    return torch.autograd.grad(total, theta)[0]


def _exact_kl_grad(theta: torch.Tensor, teacher: torch.Tensor, direction: str) -> torch.Tensor:
    logp = torch.log_softmax(theta, 0)
    if direction == "reverse":  # KL(pi || teacher)
        kl = (logp.exp() * (logp - teacher)).sum()
    else:  # KL(teacher || pi)
        kl = (teacher.exp() * (teacher - logp)).sum()
    return torch.autograd.grad(kl, theta)[0]


def test_on_policy_distillation_gradient_is_the_reverse_kl_gradient() -> None:
    theta, teacher = _policy_and_teacher()
    loss = OnPolicyDistillationLoss()
    grad = _expected_grad(lambda lp, tp: loss(lp, tp, torch.ones(1, 1)).loss, theta, teacher)
    torch.testing.assert_close(grad, _exact_kl_grad(theta, teacher, "reverse"))


def test_kl_estimator_gradients_as_documented() -> None:
    # as loss terms: k2 gives grad KL(pi || ref), k3 grad KL(ref || pi), k1 nothing (in expectation)
    theta, ref = _policy_and_teacher()
    grads = {
        k: _expected_grad(lambda lp, rp, k=k: kl_penalty(lp, rp, k).sum(), theta, ref)
        for k in ("k1", "k2", "k3")
    }
    torch.testing.assert_close(grads["k2"], _exact_kl_grad(theta, ref, "reverse"))
    torch.testing.assert_close(grads["k3"], _exact_kl_grad(theta, ref, "forward"))
    torch.testing.assert_close(grads["k1"], torch.zeros_like(theta))


def test_on_policy_distillation_by_hand_and_padding_is_inert() -> None:
    # tokens: pi 0.5 vs teacher 0.25 -> d = log 2; pi 0.25 vs teacher 0.25 -> d = 0; third token padding
    logp = torch.tensor([[math.log(0.5), math.log(0.25), -math.inf]], requires_grad=True)
    teacher = torch.tensor([[math.log(0.25), math.log(0.25), NAN]])
    mask = torch.tensor([[1, 1, 0]])
    out = OnPolicyDistillationLoss()(logp, teacher, mask)
    # dapo over 2 tokens: (log 2 + 0) / 2; gradient d_t / 2
    assert out.loss.item() == pytest.approx(math.log(2) / 2)
    assert out.metrics["reverse_kl"].item() == pytest.approx(math.log(2) / 2)
    out.loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[math.log(2) / 2, 0.0, 0.0]]))


def test_padding_never_reaches_loss_or_gradient() -> None:
    logp = torch.tensor([[-0.5, -1.0, -math.inf], [-0.2, NAN, NAN]], requires_grad=True)
    old = torch.tensor([[-0.6, -1.1, NAN], [-0.2, -math.inf, 0.0]])
    ref = torch.tensor([[-0.4, -1.0, NAN], [-0.3, NAN, NAN]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    adv = torch.tensor([[1.0, 1.0, NAN], [-1.0, NAN, NAN]])
    for loss_type in ("grpo", "bnpo", "dr_grpo", "dapo"):
        out = ClippedPolicyLoss(loss_type=loss_type, beta=0.04)(logp, old, adv, mask, ref_logprobs=ref)
        (grad,) = torch.autograd.grad(out.loss, logp)
        assert torch.isfinite(out.loss) and torch.isfinite(grad).all(), loss_type
        assert (grad[~mask] == 0).all()


def test_bad_arguments_name_the_problem() -> None:
    loss, mask = _two_sequences()
    with pytest.raises(ValueError, match="unknown loss_type 'token_mean'"):
        aggregate_loss(loss, mask, "token_mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"completion_mask must have the log-probs' shape \(2, 8\)"):
        aggregate_loss(loss, mask[:, :4], "bnpo")
    with pytest.raises(ValueError, match="needs num_items_in_batch"):
        aggregate_loss(loss, mask, "dapo", world_size=2)
    with pytest.raises(ValueError, match="unknown KL estimator 'k4'"):
        kl_penalty(torch.zeros(1, 1), torch.zeros(1, 1), "k4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="beta=0.1 needs ref_logprobs"):
        ClippedPolicyLoss(beta=0.1)(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1), torch.ones(1, 2))
    with pytest.raises(ValueError, match=r"advantages must be \[B\] or \[B, T\]"):
        ClippedPolicyLoss()(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="need 0 <= eps_low < 1"):
        ClippedPolicyLoss(eps_low=1.5)
