"""Axial 2D rotary position embedding for patch tokens.

CogViT (GLM-5V-Turbo section 2.1) runs one set of weights at 224x224 in stage 1 and at native
aspect ratios (NaFlex) in stage 2, so positions are encoded relatively: RoPE (Su et al. 2021,
arXiv 2104.09864) extended to two axes as in EVA-02 and DINOv3. Half of each head's channels
rotate with the patch row ``y``, the other half with the column ``x``; the rotated dot product
q·k then depends only on (y_q - y_k, x_q - x_k), for any grid.

Layout ("rotate half", NeoX/DINOv3 style): channel ``i`` pairs with channel ``i + head_dim/2``.
Pairs ``0 .. head_dim/4 - 1`` turn with ``y``, pairs ``head_dim/4 .. head_dim/2 - 1`` with ``x``;
axis pair ``j`` has frequency ``theta ** (-j / (head_dim/4))``.

Prefix tokens (class, registers) get cos = 1 and sin = 0, so they pass through unrotated without
slicing and concatenating q and k. An unrotated prefix token acts like a token at the origin, so
patch-to-prefix scores see a patch's absolute coordinates (as in EVA-02 and DINOv3); between
patches only coordinate differences matter.
"""

from __future__ import annotations

import torch
from torch import Tensor

from glmkit.nn.fixed_precision import FixedPrecisionModule


class RotaryEmbedding2D(FixedPrecisionModule):
    """Cos/sin tables for axial 2D RoPE from integer (y, x) patch coordinates.

    Args:
        head_dim: channels per attention head; must be divisible by 4 (two axes, pairs of channels).
        theta: base of the frequency ladder (10000 as in RoPE; DINOv3 uses 100 with coordinates
            normalised to [-1, 1], glmkit uses integer patch coordinates).
    """

    def __init__(self, head_dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 4 != 0:
            raise ValueError(f"2D RoPE needs head_dim divisible by 4, got head_dim={head_dim}")
        if theta <= 0:
            raise ValueError(f"rope theta must be positive, got {theta}")
        self.head_dim = head_dim
        self.theta = float(theta)
        # A plain attribute, not a buffer: derived from (head_dim, theta), so checkpoints stay free of
        # it, and out of reach of dtype casts and FSDP's buffer casting (see nn/fixed_precision.py).
        self.inv_freq = self._frequencies()
        self._grid_cache: dict[tuple, tuple[Tensor, Tensor]] = {}

    def _frequencies(self, device: torch.device | None = None) -> Tensor:
        quarter = self.head_dim // 4
        inv_freq = self.theta ** (-torch.arange(quarter, dtype=torch.float64, device=device) / quarter)
        return inv_freq.float()

    def forward(self, coords: Tensor, num_prefix_tokens: int = 0) -> tuple[Tensor, Tensor]:
        """Cos and sin for ``coords``, shaped to broadcast against token-major ``[B, N, heads, head_dim]``.

        Token-major is the layout the fused qkv projection produces, so rotating there keeps q and k
        in the memory layout SDPA returns its output in (no transpose copy afterwards).

        Args:
            coords: integer (or float) patch coordinates ``[B, N, 2]`` or ``[N, 2]`` as (y, x).
            num_prefix_tokens: identity rows (cos 1, sin 0) prepended for class/register tokens.

        Returns:
            ``(cos, sin)``, each float32 ``[B | 1, num_prefix_tokens + N, 1, head_dim]``.
        """
        if coords.shape[-1] != 2 or coords.ndim not in (2, 3):
            raise ValueError(f"coords must be [B, N, 2] or [N, 2] (y, x), got shape {list(coords.shape)}")
        if coords.ndim == 2:
            coords = coords[None]
        self.follow(coords.device)
        pos = coords.to(dtype=torch.float32)
        # [B, N, 2, 1] * [quarter] -> [B, N, 2, quarter] -> [B, N, head_dim/2] as (y freqs, x freqs)
        angles = (pos[..., None] * self.inv_freq).flatten(-2)
        angles = torch.cat([angles, angles], dim=-1)  # rotate-half pairs i and i + head_dim/2
        cos, sin = angles.cos(), angles.sin()
        if num_prefix_tokens:
            batch = cos.shape[0]
            ones = cos.new_ones(batch, num_prefix_tokens, self.head_dim)
            cos = torch.cat([ones, cos], dim=1)
            sin = torch.cat([torch.zeros_like(ones), sin], dim=1)
        return cos[:, :, None], sin[:, :, None]

    def for_grid(
        self, height: int, width: int, num_prefix_tokens: int = 0, device: torch.device | None = None
    ) -> tuple[Tensor, Tensor]:
        """Cached cos/sin ``[1, num_prefix_tokens + height*width, 1, head_dim]`` for a full grid.

        Image batches share one grid, so the tables are computed once per (grid, device) and
        reused every step. ``device``: where the tables are needed (default: where the module is).
        """
        if device is not None:
            self.follow(device)
        key = (height, width, num_prefix_tokens, self.inv_freq.device)
        cached = self._grid_cache.get(key)
        if cached is None:
            cached = self(grid_coords(height, width, device=self.inv_freq.device), num_prefix_tokens)
            if torch.is_inference_mode_enabled():
                return cached  # inference tensors cannot be saved for a later backward pass
            if len(self._grid_cache) >= 32:  # bounded: variable-resolution eval would grow it forever
                self._grid_cache.clear()
            self._grid_cache[key] = cached
        return cached

    def fixed_device(self) -> torch.device:
        """Where the frequencies are (they follow the module's device, never its dtype)."""
        return self.inv_freq.device

    def place_fixed(self, device: torch.device) -> None:
        """Recompute the float32 frequencies on ``device`` (so ``to_empty()`` loses nothing either);
        cached tables of another device are dropped."""
        self._grid_cache.clear()
        self.inv_freq = self._frequencies(device)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, theta={self.theta:g}"


def grid_coords(height: int, width: int, device: torch.device | str | None = None) -> Tensor:
    """Row-major (y, x) coordinates ``[height*width, 2]`` (int64) of a ``height x width`` patch grid."""
    ys = torch.arange(height, device=device)
    xs = torch.arange(width, device=device)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)


def rotate_half(x: Tensor) -> Tensor:
    """``[x1, x2] -> [-x2, x1]`` over the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` (``[B, N, heads, head_dim]``) by the tables from :class:`RotaryEmbedding2D`.

    Any layout works whose shape the tables broadcast against (transpose them for ``[B, heads, N, D]``).

    Computed in ``x``'s dtype; cos/sin are cast once per call.
    """
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return x * cos + rotate_half(x) * sin


__all__ = ["RotaryEmbedding2D", "apply_rotary", "grid_coords", "rotate_half"]
