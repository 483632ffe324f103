"""Distillation losses against their closed forms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from glmkit.losses import (
    DISTILL_LOSSES,
    CombinedDistillLoss,
    CosineDistillLoss,
    DistillLoss,
    MSEDistillLoss,
    SmoothL1DistillLoss,
)


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
    combined = CombinedDistillLoss(
        {"cosine": CosineDistillLoss(), "mse": MSEDistillLoss()}, {"cosine": 2.0, "mse": 0.5}
    )
    expected = 2.0 * CosineDistillLoss()(a, b) + 0.5 * MSEDistillLoss()(a, b)
    assert torch.allclose(combined(a, b), expected)
    unweighted = CombinedDistillLoss({"cosine": CosineDistillLoss(), "mse": MSEDistillLoss()})  # 1.0 each
    assert torch.allclose(unweighted(a, b), CosineDistillLoss()(a, b) + MSEDistillLoss()(a, b))


def test_combined_terms_are_components_from_the_recipe() -> None:
    from glmkit.config import instantiate

    a, b = torch.randn(5, 8) * 3, torch.randn(5, 8) * 3
    spec = {
        "class_path": "combined",  # the registered name works as a class_path
        "init_args": {
            "terms": {
                "cosine": {"class_path": "CosineDistillLoss"},
                "smooth_l1": {"class_path": "glmkit.losses.SmoothL1DistillLoss", "init_args": {"beta": 0.25}},
            },
            "weights": {"smooth_l1": 0.5},
        },
    }
    combined = instantiate(spec, "distill_losses")
    expected = CosineDistillLoss()(a, b) + 0.5 * F.smooth_l1_loss(a, b, beta=0.25)
    assert torch.allclose(combined(a, b), expected)


def test_shape_mismatch_and_bad_term_errors() -> None:
    with pytest.raises(ValueError, match=r"same shape, got \(3, 4\) and \(3, 5\)"):
        MSEDistillLoss()(torch.zeros(3, 4), torch.zeros(3, 5))
    with pytest.raises(KeyError, match=r"weights name unknown terms \['cosin'\]; terms are \['cosine'\]"):
        CombinedDistillLoss({"cosine": CosineDistillLoss()}, {"cosin": 1.0})
    with pytest.raises(TypeError, match="term 'mse' must be a DistillLoss, got float"):
        CombinedDistillLoss({"mse": 1.0})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="needs at least one term"):
        CombinedDistillLoss({})


def test_registered_names_and_the_family_base() -> None:
    assert {"cosine", "mse", "smooth_l1", "combined"} <= set(DISTILL_LOSSES.names())
    assert DISTILL_LOSSES.base is DistillLoss
