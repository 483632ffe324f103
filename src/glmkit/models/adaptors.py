"""Adaptor heads that map student tokens into a teacher's feature space.

Stage 1 trains one adaptor per teacher on top of the shared student (RADIO-style multi-teacher
distillation, as in GLM-5V-Turbo section 2.1): the student stays teacher-agnostic and each head
absorbs one teacher's idiosyncrasies. The last layer is named ``out`` so the Muon routing sends it
to AdamW with the other output layers.
"""

from __future__ import annotations

from torch import Tensor, nn

from glmkit.registry import declare


class Adaptor(nn.Module):
    """Base class: ``forward(tokens [M, D_student]) -> [M, D_teacher]``; the last layer is ``out``."""


ADAPTORS = declare("adaptors", "student-to-teacher adaptor heads", base=Adaptor)


@ADAPTORS.register("mlp")
class MLPAdaptor(Adaptor):
    """``LayerNorm -> (Linear -> GELU) x (num_layers - 1) -> Linear(out)``.

    Args:
        in_dim: student width.
        out_dim: teacher width.
        hidden_dim: width of the hidden layers (default: ``max(in_dim, out_dim)``).
        num_layers: number of Linear layers (1 gives a linear probe).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int | None = None, num_layers: int = 2) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MLPAdaptor needs num_layers >= 1, got {num_layers}")
        hidden_dim = hidden_dim or max(in_dim, out_dim)
        layers: list[nn.Module] = [nn.LayerNorm(in_dim)]
        width = in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(width, hidden_dim), nn.GELU()]
            width = hidden_dim
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(width, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """``[..., in_dim] -> [..., out_dim]``."""
        return self.out(self.body(x))
