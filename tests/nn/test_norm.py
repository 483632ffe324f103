"""Norm factory: names map to torch's LayerNorm / RMSNorm, unknown names are refused by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from glmkit.nn.norm import NORM_TYPES, check_norm_type, create_norm


def test_names_build_torch_norms_with_eps() -> None:
    ln = create_norm("layernorm", 8, eps=1e-5)
    rms = create_norm("rmsnorm", 8, eps=1e-3)
    assert isinstance(ln, nn.LayerNorm) and ln.normalized_shape == (8,) and ln.eps == 1e-5
    assert isinstance(rms, nn.RMSNorm) and rms.normalized_shape == (8,) and rms.eps == 1e-3
    assert NORM_TYPES == ("layernorm", "rmsnorm")


def test_rmsnorm_matches_its_formula() -> None:
    x = torch.randn(3, 8, dtype=torch.float64)
    rms = create_norm("rmsnorm", 8, eps=1e-6).double()
    expected = x / torch.sqrt(x.square().mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(rms(x), expected)


def test_unknown_names_are_refused_with_the_key() -> None:
    with pytest.raises(ValueError, match="norm type must be 'layernorm' or 'rmsnorm', got 'batchnorm'"):
        create_norm("batchnorm", 8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="qk_norm_type must be"):
        check_norm_type("l2", "qk_norm_type")
