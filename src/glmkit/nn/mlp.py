"""Feed-forward layers of a transformer block: the GELU MLP and the SiLU-gated SwiGLU.

* :class:`Mlp`: Linear -> GELU -> Linear (ViT, Dosovitskiy et al. 2020, arXiv 2010.11929, eq. 3).
* :class:`SwiGLU`: ``W3 (SiLU(W1 x) * W2 x)`` (Shazeer 2020, arXiv 2002.05202, eq. 6), with the gate
  and value projections fused into one Linear so one matmul computes both.
* :func:`swiglu_hidden_features`: the hidden width that gives a SwiGLU the parameter count of a GELU
  MLP of the same ratio (2/3 of it, as in LLaMA, arXiv 2302.13971, section 2.2).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class Mlp(nn.Module):
    """Linear -> activation -> Linear.

    Args:
        in_features: input width.
        hidden_features: hidden width (``mlp_ratio * in_features`` in a ViT block).
        out_features: output width (default: ``in_features``).
        act_layer: activation module class (exact-erf GELU by default, as in ViT).
        bias: biases on both Linears.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int | None = None,
        act_layer: type[nn.Module] = nn.GELU,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """``[..., in_features] -> [..., out_features]``."""
        return self.fc2(self.act(self.fc1(x)))


class SwiGLU(nn.Module):
    """SiLU-gated MLP: ``fc3(SiLU(gate) * value)`` with ``[gate, value] = fc12(x)``.

    Args:
        in_features: input width.
        hidden_features: width of the gate and of the value (see :func:`swiglu_hidden_features`).
        out_features: output width (default: ``in_features``).
        bias: biases on both Linears.
    """

    def __init__(
        self, in_features: int, hidden_features: int, out_features: int | None = None, bias: bool = True
    ) -> None:
        super().__init__()
        self.fc12 = nn.Linear(in_features, 2 * hidden_features, bias=bias)
        self.fc3 = nn.Linear(hidden_features, out_features or in_features, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """``[..., in_features] -> [..., out_features]``."""
        gate, value = self.fc12(x).chunk(2, dim=-1)  # each [..., hidden]
        return self.fc3(F.silu(gate) * value)


def swiglu_hidden_features(dim: int, mlp_ratio: float, multiple_of: int = 8) -> int:
    """Hidden width of a SwiGLU matching a GELU MLP of width ``dim * mlp_ratio`` in parameters.

    A SwiGLU has three weight matrices where the GELU MLP has two, so its hidden width is 2/3 of
    ``int(dim * mlp_ratio)``, rounded up to a multiple of ``multiple_of`` for matmul kernels.
    """
    hidden = int(int(dim * mlp_ratio) * 2 / 3)
    return -(-hidden // multiple_of) * multiple_of


__all__ = ["Mlp", "SwiGLU", "swiglu_hidden_features"]
