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

Resolutions other than the training one (stage 1 trains on 14x14 grids; a 448 px image has
coordinates up to 27) are served in two ways:

* ``ref_grid`` (EVA-02's ``ref_feat_shape``): coordinates of an ``h x w`` grid are rescaled by
  ``ref / (h, w)``, so every image spans the coordinate range of the training grid and a 28x28 grid's
  position (2i, 2j) turns exactly like the 14x14 grid's (i, j);
* a per-call ``scale`` and ``shift`` of the coordinates, which :class:`RopeJitter` draws in training
  (DINOv3's RoPE rescale / jitter / shift augmentation), so the model sees other ranges than 0..13.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from glmkit.nn.fixed_precision import FixedPrecisionModule


class RotaryEmbedding2D(FixedPrecisionModule):
    """Cos/sin tables for axial 2D RoPE from integer (y, x) patch coordinates.

    Args:
        head_dim: channels per attention head; must be divisible by 4 (two axes, pairs of channels).
        theta: base of the frequency ladder (10000 as in RoPE; DINOv3 uses 100 with coordinates
            normalised to [-1, 1], glmkit uses integer patch coordinates).
        ref_grid: ``(h_ref, w_ref)``: rescale the coordinates of an ``h x w`` grid by
            ``(h_ref / h, w_ref / w)`` (EVA-02's ``ref_feat_shape``); None keeps integer coordinates.
    """

    def __init__(
        self, head_dim: int, theta: float = 10000.0, ref_grid: tuple[int, int] | None = None
    ) -> None:
        super().__init__()
        if head_dim % 4 != 0:
            raise ValueError(f"2D RoPE needs head_dim divisible by 4, got head_dim={head_dim}")
        if theta <= 0:
            raise ValueError(f"rope theta must be positive, got {theta}")
        if ref_grid is not None and (len(ref_grid) != 2 or min(ref_grid) < 1):
            raise ValueError(f"rope ref_grid must be two positive sides (h, w), got {ref_grid!r}")
        self.head_dim = head_dim
        self.theta = float(theta)
        self.ref_grid = (int(ref_grid[0]), int(ref_grid[1])) if ref_grid is not None else None
        # A plain attribute, not a buffer: derived from (head_dim, theta), so checkpoints stay free of
        # it, and out of reach of dtype casts and FSDP's buffer casting (see nn/fixed_precision.py).
        self.inv_freq = self._frequencies()
        self._grid_cache: dict[tuple, tuple[Tensor, Tensor]] = {}

    def _frequencies(self, device: torch.device | None = None) -> Tensor:
        quarter = self.head_dim // 4
        inv_freq = self.theta ** (-torch.arange(quarter, dtype=torch.float64, device=device) / quarter)
        return inv_freq.float()

    def forward(
        self,
        coords: Tensor,
        num_prefix_tokens: int = 0,
        *,
        extents: Tensor | None = None,
        scale: Tensor | None = None,
        shift: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Cos and sin for ``coords``, shaped to broadcast against token-major ``[B, N, heads, head_dim]``.

        Token-major is the layout the fused qkv projection produces, so rotating there keeps q and k
        in the memory layout SDPA returns its output in (no transpose copy afterwards).

        Args:
            coords: integer (or float) patch coordinates ``[B, N, 2]`` or ``[N, 2]`` as (y, x).
            num_prefix_tokens: identity rows (cos 1, sin 0) prepended for class/register tokens.
            extents: ``(h, w)`` of the grid each token's image lies on, broadcasting against
                ``coords`` (``[2]``, ``[B, 1, 2]`` or ``[B, N, 2]``); needed with ``ref_grid``.
            scale: multiplies the (rescaled) coordinates, ``[2]`` as (y, x) (RoPE augmentation).
            shift: is then added to them, ``[2]``.

        Returns:
            ``(cos, sin)``, each float32 ``[B | 1, num_prefix_tokens + N, 1, head_dim]``.
        """
        if coords.shape[-1] != 2 or coords.ndim not in (2, 3):
            raise ValueError(f"coords must be [B, N, 2] or [N, 2] (y, x), got shape {list(coords.shape)}")
        if coords.ndim == 2:
            coords = coords[None]
        self.follow(coords.device)
        pos = coords.to(dtype=torch.float32)
        if self.ref_grid is not None:
            if extents is None:
                raise ValueError(
                    "RotaryEmbedding2D with ref_grid needs the grid extents (h, w) of the coords"
                )
            ref = torch.tensor(self.ref_grid, dtype=torch.float32, device=pos.device)
            pos = pos * (ref / extents.to(device=pos.device, dtype=torch.float32))  # EVA-02: t / feat * ref
        if scale is not None:
            pos = pos * scale.to(device=pos.device, dtype=torch.float32)
        if shift is not None:
            pos = pos + shift.to(device=pos.device, dtype=torch.float32)
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
            extents = torch.tensor([height, width], device=self.inv_freq.device)
            cached = self(
                grid_coords(height, width, device=self.inv_freq.device), num_prefix_tokens, extents=extents
            )
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
        ref = f", ref_grid={self.ref_grid}" if self.ref_grid is not None else ""
        return f"head_dim={self.head_dim}, theta={self.theta:g}{ref}"


class RopeJitter:
    """DINOv3's RoPE coordinate augmentation in training: one draw per forward pass.

    The coordinates are multiplied by ``exp(u_r + u_y)`` on y and ``exp(u_r + u_x)`` on x, with
    ``u_r ~ U(-log rescale, log rescale)`` shared by both axes and ``u_y, u_x ~ U(-log jitter,
    log jitter)``, then shifted by ``U(-shift, shift)`` patches per axis (DINOv3,
    arXiv 2508.10104; transformers' DINOv3 ViT applies the same rescale / jitter / shift to its RoPE
    coordinates in train mode, on coordinates normalised to [-1, 1]; glmkit's are patch indices,
    so ``shift`` is in patches). With ``rescale = 2`` a 14x14 training
    grid spans coordinates up to 26, about a 448 px image's range. Draws come from torch's global
    generator, which glmkit's stages reseed per micro-batch (exact resume).

    Args:
        rescale: largest factor of the shared rescaling (1: none).
        jitter: largest factor of the per-axis jitter (1: none).
        shift: largest shift in patches (0: none).
    """

    def __init__(self, rescale: float = 1.0, jitter: float = 1.0, shift: float = 0.0) -> None:
        if rescale < 1 or jitter < 1 or shift < 0:
            raise ValueError(
                f"RoPE augmentation needs rescale >= 1, jitter >= 1 and shift >= 0; got rescale={rescale}, "
                f"jitter={jitter}, shift={shift}"
            )
        self.rescale, self.jitter, self.shift = float(rescale), float(jitter), float(shift)

    @property
    def enabled(self) -> bool:
        """Whether any augmentation is on."""
        return self.rescale > 1 or self.jitter > 1 or self.shift > 0

    def draw(self) -> tuple[Tensor, Tensor]:
        """``(scale [2], shift [2])`` for one forward pass, as (y, x)."""
        log_scale = torch.empty(()).uniform_(-math.log(self.rescale), math.log(self.rescale)) + torch.empty(
            2
        ).uniform_(-math.log(self.jitter), math.log(self.jitter))
        return log_scale.exp(), torch.empty(2).uniform_(-self.shift, self.shift)

    def __repr__(self) -> str:
        return f"RopeJitter(rescale={self.rescale}, jitter={self.jitter}, shift={self.shift})"


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


__all__ = ["RopeJitter", "RotaryEmbedding2D", "apply_rotary", "grid_coords", "rotate_half"]
