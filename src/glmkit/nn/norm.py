"""Normalisation layers by name: ``layernorm`` (Ba et al. 2016) or ``rmsnorm`` (Zhang & Sennrich 2019).

Components take a norm *name* so that a recipe can switch every norm of a model with one string;
:func:`create_norm` is the one place that turns the name into a module.
"""

from __future__ import annotations

from typing import Literal, get_args

from torch import nn

NormType = Literal["layernorm", "rmsnorm"]
NORM_TYPES: tuple[str, ...] = get_args(NormType)


def check_norm_type(value: str, key: str = "norm_type") -> None:
    """Raise ``ValueError`` naming ``key`` and ``value`` unless ``value`` is a known norm name."""
    if value not in NORM_TYPES:
        valid = " or ".join(repr(name) for name in NORM_TYPES)
        raise ValueError(f"{key} must be {valid}, got {value!r}")


def create_norm(kind: NormType, dim: int, eps: float = 1e-6) -> nn.Module:
    """``nn.LayerNorm(dim, eps)`` for ``layernorm``, ``nn.RMSNorm(dim, eps)`` for ``rmsnorm``.

    Both normalise over the last dimension and carry a learnable per-channel weight; LayerNorm also
    subtracts the mean and adds a bias.
    """
    check_norm_type(kind, "norm type")
    return nn.LayerNorm(dim, eps=eps) if kind == "layernorm" else nn.RMSNorm(dim, eps=eps)


__all__ = ["NORM_TYPES", "NormType", "check_norm_type", "create_norm"]
