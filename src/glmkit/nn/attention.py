"""Attention backends behind one call, chosen by name.

Every backend computes softmax(q kᵀ / sqrt(head_dim) + mask) v for tensors laid out
``[B, heads, N, head_dim]``. Backends register in ``registry("attention")`` so a recipe picks one
by name (``attn_backend: sdpa``) and ``glmkit list attention`` shows them.

Masks are boolean with True meaning "may attend", in one of three shapes:

* ``[B, Nk]``: a key-padding mask (NaFlex padding, GLM-5V-Turbo section 2.1 stage 2);
* ``[B, 1 | heads, Nq, Nk]``: a general mask, e.g. block-diagonal for packed sequences;
* ``None``: full bidirectional attention.

A query row whose keys are all masked returns zeros on every backend (never NaN).
"""

from __future__ import annotations

import importlib.util
import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from glmkit.registry import declare

ATTENTION_BACKENDS = declare("attention", "attention backends (attn_backend=...)")

DEFAULT_BACKEND = "sdpa"


class AttentionFn(Protocol):
    """Signature every registered backend implements."""

    def __call__(
        self, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None, dropout_p: float = 0.0
    ) -> Tensor: ...


def expand_attention_mask(attn_mask: Tensor | None, q: Tensor, k: Tensor) -> Tensor | None:
    """Validate a boolean mask and broadcast it to ``[B, 1 | heads, Nq | 1, Nk]``.

    A key-padding mask ``[B, Nk]`` becomes ``[B, 1, 1, Nk]`` (a view, no copy).
    """
    if attn_mask is None:
        return None
    if attn_mask.dtype != torch.bool:
        raise TypeError(
            f"attn_mask must be a bool tensor (True = may attend), got dtype {attn_mask.dtype}; "
            "convert an additive float mask with `mask == 0`"
        )
    batch, heads, n_k, _ = k.shape
    n_q = q.shape[2]
    if attn_mask.ndim == 2:
        if tuple(attn_mask.shape) != (batch, n_k):
            raise ValueError(
                f"key-padding attn_mask must have shape [B, Nk] = [{batch}, {n_k}], "
                f"got {list(attn_mask.shape)}"
            )
        return attn_mask[:, None, None, :]
    if attn_mask.ndim == 4:
        b, h, nq, nk = attn_mask.shape
        if b not in (1, batch) or h not in (1, heads) or nq not in (1, n_q) or nk != n_k:
            raise ValueError(
                f"attn_mask of shape {list(attn_mask.shape)} does not broadcast to "
                f"[B, heads, Nq, Nk] = [{batch}, {heads}, {n_q}, {n_k}]"
            )
        return attn_mask
    raise ValueError(
        f"attn_mask must be [B, Nk] (key padding) or [B, 1|heads, Nq, Nk], got {attn_mask.ndim} dims "
        f"with shape {list(attn_mask.shape)}"
    )


@ATTENTION_BACKENDS.register("sdpa")
def sdpa_attention(
    q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None, dropout_p: float = 0.0
) -> Tensor:
    """``torch.nn.functional.scaled_dot_product_attention`` (CPU and GPU; picks flash / mem-efficient / math).

    Without a mask PyTorch can use its flash kernels; a boolean mask rules flash out on CUDA and
    the memory-efficient kernel runs instead.
    """
    mask = expand_attention_mask(attn_mask, q, k)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


def is_xformers_available() -> bool:
    """True when the optional ``xformers`` package can be imported."""
    return importlib.util.find_spec("xformers") is not None


@ATTENTION_BACKENDS.register("xformers")
def xformers_attention(
    q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None, dropout_p: float = 0.0
) -> Tensor:
    """``xformers.ops.memory_efficient_attention`` (CUDA only; optional dependency ``glmkit[xformers]``)."""
    if not is_xformers_available():
        raise RuntimeError(
            "attention backend 'xformers' needs the xformers package, which is not installed "
            "(pip install 'glmkit[xformers]'); use attn_backend='sdpa' instead"
        )
    if not q.is_cuda:
        raise RuntimeError(
            f"attention backend 'xformers' runs on CUDA tensors only, got tensors on {q.device}; "
            "use attn_backend='sdpa' on this device"
        )
    import xformers.ops as xops  # optional dependency, imported where used

    mask = expand_attention_mask(attn_mask, q, k)
    bias = None
    if mask is not None:
        bias = _additive_bias(mask, q, k)
    # xformers wants [B, N, heads, head_dim]; transposes are views.
    out = xops.memory_efficient_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_bias=bias, p=dropout_p
    )
    out = out.transpose(1, 2)
    if mask is not None:
        # A fully masked row would softmax over uniform finfo.min logits; SDPA returns zeros there.
        out = out.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)
    return out


def _additive_bias(mask: Tensor, q: Tensor, k: Tensor) -> Tensor:
    """Dense ``[B, heads, Nq, Nk]`` additive bias for xformers from a boolean mask.

    xformers needs the bias materialised (no broadcast) and its last dimension's storage aligned to
    8 elements, so it is allocated padded and sliced. finfo.min (not -inf) keeps rows finite.
    """
    batch, heads, n_q, _ = q.shape
    n_k = k.shape[2]
    padded = math.ceil(n_k / 8) * 8
    bias = torch.zeros(batch, heads, n_q, padded, dtype=q.dtype, device=q.device)[..., :n_k]
    bias.masked_fill_(~mask.expand(batch, heads, n_q, n_k), torch.finfo(q.dtype).min)
    return bias


def get_attention_backend(name: str) -> AttentionFn:
    """The backend registered as ``name`` (unknown names list the registered ones)."""
    return ATTENTION_BACKENDS.get(name)


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    backend: str = DEFAULT_BACKEND,
    dropout_p: float = 0.0,
) -> Tensor:
    """Scaled dot-product attention with the named backend.

    Args:
        q, k, v: ``[B, heads, N, head_dim]``.
        attn_mask: None, a key-padding mask ``[B, Nk]`` or a general mask ``[B, 1|heads, Nq, Nk]``,
            boolean with True = may attend.
        backend: a name registered in ``registry("attention")``: ``sdpa`` (default) or ``xformers``.
        dropout_p: attention-probability dropout (pass 0 at eval time).

    Returns:
        ``[B, heads, Nq, head_dim]``.
    """
    return get_attention_backend(backend)(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)


__all__ = [
    "ATTENTION_BACKENDS",
    "DEFAULT_BACKEND",
    "AttentionFn",
    "attention",
    "expand_attention_mask",
    "get_attention_backend",
    "is_xformers_available",
    "sdpa_attention",
    "xformers_attention",
]
