"""Distillation losses against their closed forms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from glmkit.losses import LOSSES, CombinedDistillLoss, CosineDistillLoss, MSEDistillLoss, SmoothL1DistillLoss


def test_cosine_loss_is_zero_for_scaled_targets_and_two_for_opposite() -> None:
    x = torch.randn(7, 16)
    assert CosineDistillLoss()(x, 3.0 * x).item() == pytest.approx(0.0, abs=1e-6)
    assert CosineDistillLoss()(x, -x).item() == pytest.approx(2.0, abs=1e-6)


def test_mse_and_smooth_l1_match_torch() -> None:
    a, b = torch.randn(5, 8), torch.randn(5, 8)
    assert torch.allclose(MSEDistillLoss()(a, b), ((a - b) ** 2).mean())
    assert torch.allclose(SmoothL1DistillLoss(beta=0.5)(a, b), F.smooth_l1_loss(a, b, beta=0.5))


def test_combined_is_weighted_sum() -> None:
    a, b = torch.randn(5, 8), torch.randn(5, 8)
    combined = CombinedDistillLoss({"cosine": 2.0, "mse": 0.5})(a, b)
    expected = 2.0 * CosineDistillLoss()(a, b) + 0.5 * MSEDistillLoss()(a, b)
    assert torch.allclose(combined, expected)


def test_combined_terms_take_their_own_arguments() -> None:
    a, b = torch.randn(5, 8) * 3, torch.randn(5, 8) * 3
    combined = CombinedDistillLoss({"cosine": 1.0, "smooth_l1": {"weight": 0.5, "beta": 0.25}})
    expected = CosineDistillLoss()(a, b) + 0.5 * F.smooth_l1_loss(a, b, beta=0.25)
    assert torch.allclose(combined(a, b), expected)
    assert not torch.allclose(combined(a, b), CombinedDistillLoss({"cosine": 1.0, "smooth_l1": 0.5})(a, b))
    with pytest.raises(ValueError, match="term 'smooth_l1' needs a 'weight'"):
        CombinedDistillLoss({"smooth_l1": {"beta": 0.5}})
    with pytest.raises(TypeError, match="term 'mse': .*unexpected keyword argument 'beta'"):
        CombinedDistillLoss({"mse": {"weight": 1.0, "beta": 0.5}})


def test_shape_mismatch_and_unknown_term_errors() -> None:
    with pytest.raises(ValueError, match=r"same shape, got \(3, 4\) and \(3, 5\)"):
        MSEDistillLoss()(torch.zeros(3, 4), torch.zeros(3, 5))
    with pytest.raises(KeyError, match="Did you mean 'cosine'"):
        CombinedDistillLoss({"cosin": 1.0})


def test_registered_names() -> None:
    assert {"cosine", "mse", "smooth_l1", "combined"} <= set(LOSSES.names())
