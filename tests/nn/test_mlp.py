"""Mlp and SwiGLU against their formulas; SwiGLU's hidden width keeps the GELU MLP's parameter count."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from glmkit.nn.mlp import Mlp, SwiGLU, swiglu_hidden_features


def test_mlp_is_linear_gelu_linear() -> None:
    torch.manual_seed(0)
    mlp = Mlp(8, 32).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    expected = F.linear(F.gelu(F.linear(x, mlp.fc1.weight, mlp.fc1.bias)), mlp.fc2.weight, mlp.fc2.bias)
    torch.testing.assert_close(mlp(x), expected, atol=0, rtol=0)
    assert set(mlp.state_dict()) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    assert Mlp(8, 32, out_features=4, bias=False)(x.float()).shape == (2, 5, 4)


def test_swiglu_is_silu_gate_times_value() -> None:
    torch.manual_seed(0)
    mlp = SwiGLU(8, 16).double()
    x = torch.randn(3, 8, dtype=torch.float64)
    w_gate, w_value = mlp.fc12.weight.chunk(2)
    b_gate, b_value = mlp.fc12.bias.chunk(2)
    hidden = F.silu(F.linear(x, w_gate, b_gate)) * F.linear(x, w_value, b_value)
    torch.testing.assert_close(mlp(x), F.linear(hidden, mlp.fc3.weight, mlp.fc3.bias))
    assert set(mlp.state_dict()) == {"fc12.weight", "fc12.bias", "fc3.weight", "fc3.bias"}


def test_swiglu_hidden_width() -> None:
    assert swiglu_hidden_features(768, 4.0) == 2048  # 2/3 of 3072
    assert swiglu_hidden_features(96, 4.0) == 256
    assert swiglu_hidden_features(100, 3.0) % 8 == 0  # rounded up to a multiple of 8
    dim = 768
    gelu_weights = 2 * dim * int(dim * 4.0)
    swiglu_weights = 3 * dim * swiglu_hidden_features(dim, 4.0)
    assert swiglu_weights == gelu_weights
