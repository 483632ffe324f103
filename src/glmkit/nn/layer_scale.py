"""LayerScale: a learned per-channel scale on a residual branch (CaiT, arXiv 2103.17239, section 2.1).

Initialised small (e.g. 1e-5), it lets deep ViTs start close to the identity and learn how much
each block contributes; DINOv2/v3 use it in every block.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LayerScale(nn.Module):
    """``x * gamma`` with a learnable ``gamma`` of shape ``[dim]``.

    Args:
        dim: channels (last dimension of the input).
        init_values: initial value of every entry of ``gamma``.
    """

    def __init__(self, dim: int, init_values: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: Tensor) -> Tensor:
        """Scale the last dimension of ``x`` channel by channel."""
        return x * self.gamma

    def extra_repr(self) -> str:
        return f"dim={self.gamma.shape[0]}"


__all__ = ["LayerScale"]
