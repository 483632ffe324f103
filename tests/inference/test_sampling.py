"""Verification rules of speculative decoding and logit warping."""

from __future__ import annotations

import math

import pytest
import torch

from glmkit.inference.sampling import greedy_verify, rejection_verify, sample_tokens, warp_logits
from tests.inference.stats import chi_square_p_value


def test_greedy_verify_accepts_the_matching_prefix_then_the_targets_token() -> None:
    target = torch.tensor([[3, 1, 4, 1]])  # target argmax at 4 positions (k = 3 drafts)
    logits = torch.nn.functional.one_hot(target, 6).float()
    for drafts, accepted, following in (
        ([3, 1, 4], 3, 1),  # all accepted, bonus token
        ([3, 1, 5], 2, 4),
        ([2, 1, 4], 0, 3),  # a later match does not count after a mismatch
    ):
        a, nxt = greedy_verify(torch.tensor([drafts]), logits)
        assert (int(a), int(nxt)) == (accepted, following)
    a, nxt = greedy_verify(torch.zeros(1, 0, dtype=torch.long), logits[:, :1])
    assert (int(a), int(nxt)) == (0, 3)


def test_rejection_sampling_emits_tokens_distributed_as_the_target() -> None:
    """First emitted token ~ p_1; after one acceptance, the next ~ p_2; bonus after k acceptances ~ p_3."""
    generator = torch.Generator().manual_seed(0)
    n, vocab, k = 200_000, 5, 2
    p = torch.tensor([[0.5, 0.2, 0.1, 0.1, 0.1], [0.05, 0.05, 0.3, 0.3, 0.3], [0.1, 0.6, 0.1, 0.1, 0.1]])
    q = torch.tensor([[0.2, 0.2, 0.2, 0.2, 0.2], [0.4, 0.3, 0.1, 0.1, 0.1]])
    drafts = sample_tokens(q.expand(n, k, vocab), generator)
    accepted, following = rejection_verify(
        drafts, q.expand(n, k, vocab), p.expand(n, k + 1, vocab), generator
    )
    first = torch.where(accepted > 0, drafts[:, 0], following)
    assert chi_square_p_value(torch.bincount(first, minlength=vocab), p[0]) > 1e-3
    second = torch.where(accepted > 1, drafts[:, 1], following)[accepted >= 1]
    assert chi_square_p_value(torch.bincount(second, minlength=vocab), p[1]) > 1e-3
    bonus = following[accepted == k]
    assert chi_square_p_value(torch.bincount(bonus, minlength=vocab), p[2]) > 1e-3
    # acceptance of the first draft is sum_x min(p, q)
    assert (accepted > 0).double().mean().item() == pytest.approx(
        float(torch.minimum(p[0], q[0]).sum()), abs=0.005
    )
    # the test has power: emitting the drafts unverified is caught
    assert chi_square_p_value(torch.bincount(drafts[:, 0], minlength=vocab), p[0]) < 1e-6


def test_rejection_sampling_with_identical_distributions_accepts_everything() -> None:
    p = torch.softmax(torch.randn(1, 3, 7), -1)
    drafts = sample_tokens(p[:, :2].expand(1000, 2, 7))
    accepted, _ = rejection_verify(drafts, p[:, :2].expand(1000, 2, 7), p.expand(1000, 3, 7))
    assert bool((accepted == 2).all())


def test_warp_logits() -> None:
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    assert torch.isinf(warp_logits(logits, top_k=2)).tolist() == [False, False, True, True]
    assert torch.isinf(warp_logits(logits, top_p=0.75)).tolist() == [False, False, True, True]
    assert torch.isinf(warp_logits(logits, top_p=0.85)).tolist() == [False, False, False, True]
    assert torch.isinf(warp_logits(logits, top_p=0.1)).tolist() == [False, True, True, True]
    torch.testing.assert_close(warp_logits(logits, temperature=2.0), logits / 2)
    assert math.isclose(float(warp_logits(logits).softmax(-1)[0]), 0.5, rel_tol=1e-6)
    with pytest.raises(ValueError, match="temperature must be > 0 when sampling, got 0"):
        warp_logits(logits, temperature=0)
    with pytest.raises(ValueError, match="top_p must be in"):
        warp_logits(logits, top_p=1.5)
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        warp_logits(logits, top_k=0)


def test_verify_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"target_logits must be \[B, k \+ 1, V\]"):
        greedy_verify(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match=r"draft_probs must be \[B, k, V\]"):
        rejection_verify(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 3, 4), torch.zeros(1, 3, 4))
