"""LayerScale: a per-channel learnable scale named ``gamma`` (checkpoint key ``ls1.gamma``)."""

from __future__ import annotations

import torch

from glmkit.nn.layer_scale import LayerScale


def test_scales_each_channel_and_learns() -> None:
    ls = LayerScale(4, init_values=1e-5)
    assert list(ls.state_dict()) == ["gamma"] and torch.equal(ls.gamma, torch.full((4,), 1e-5))
    with torch.no_grad():
        ls.gamma.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    x = torch.ones(2, 3, 4)
    assert torch.equal(ls(x), x * torch.tensor([1.0, 2.0, 3.0, 4.0]))
    ls(x).sum().backward()
    assert ls.gamma.grad is not None and torch.equal(ls.gamma.grad, torch.full((4,), 6.0))
