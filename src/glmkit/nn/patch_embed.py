"""Patchify images into NaFlex-style token rows and embed them with one Linear.

NaFlex (SigLIP2, arXiv 2502.14786) feeds a ViT pre-cut patches with their grid coordinates, so
images of any aspect ratio share one batch. CogViT takes both plain image batches and NaFlex
batches (GLM-5V-Turbo section 2.1), and uses the same weights for both: the image path is
``patchify`` followed by the Linear.

Patch pixel order is (ph, pw, C): row inside the patch, then column, then channel fastest. This
matches timm's NaFlex ``Patchify`` and HF's SigLIP2 image processor, so their patches can be fed
unchanged.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from glmkit.nn.rope import grid_coords


class Patches(NamedTuple):
    """A NaFlex batch: ``patches [B, N, P*P*C]``, ``coords [B, N, 2]`` (y, x), ``valid [B, N]``."""

    patches: Tensor
    coords: Tensor
    valid: Tensor
    grid_size: tuple[int, int]


def check_image_size(height: int, width: int, patch_size: int) -> tuple[int, int]:
    """The patch grid ``(height // P, width // P)``; raises when a side is not a multiple of P."""
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"image size H={height}, W={width} is not divisible by patch_size={patch_size}; "
            f"resize or pad to multiples of {patch_size} (e.g. H={_round_up(height, patch_size)}, "
            f"W={_round_up(width, patch_size)})"
        )
    return height // patch_size, width // patch_size


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def patchify_pixels(images: Tensor, patch_size: int) -> Tensor:
    """``[B, C, H, W] -> [B, (H/P)*(W/P), P*P*C]``, row-major over the grid, (ph, pw, C) inside a patch."""
    if images.ndim != 4:
        raise ValueError(f"expected an image batch [B, C, H, W], got shape {list(images.shape)}")
    b, c, h, w = images.shape
    gh, gw = check_image_size(h, w, patch_size)
    x = images.reshape(b, c, gh, patch_size, gw, patch_size)
    x = x.permute(0, 2, 4, 3, 5, 1)  # B, gh, gw, ph, pw, C
    return x.reshape(b, gh * gw, patch_size * patch_size * c)


def patchify(images: Tensor, patch_size: int) -> Patches:
    """Turn an image batch into a NaFlex batch with every patch valid."""
    patches = patchify_pixels(images, patch_size)  # validates the shape
    b, _, h, w = images.shape
    gh, gw = h // patch_size, w // patch_size
    coords = grid_coords(gh, gw, device=images.device).expand(b, -1, -1)
    valid = torch.ones(b, gh * gw, dtype=torch.bool, device=images.device)
    return Patches(patches, coords, valid, (gh, gw))


def unpatchify(patches: Tensor, grid_size: tuple[int, int], patch_size: int) -> Tensor:
    """Inverse of :func:`patchify_pixels`: ``[B, h*w, P*P*C] -> [B, C, h*P, w*P]``."""
    b, n, d = patches.shape
    gh, gw = grid_size
    if n != gh * gw or d % (patch_size * patch_size):
        raise ValueError(
            f"patches of shape {list(patches.shape)} do not fit grid {grid_size} with patch_size={patch_size}"
        )
    c = d // (patch_size * patch_size)
    x = patches.reshape(b, gh, gw, patch_size, patch_size, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, c, gh * patch_size, gw * patch_size)


class PatchEmbed(nn.Module):
    """Linear embedding of flattened (ph, pw, C) patches; equivalent to a stride-P convolution.

    Args:
        patch_size: side of a square patch in pixels.
        in_chans: image channels.
        embed_dim: output width.
        bias: add a bias to the projection.
    """

    def __init__(
        self, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768, bias: bool = True
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.patch_dim = patch_size * patch_size * in_chans
        self.proj = nn.Linear(self.patch_dim, embed_dim, bias=bias)

    def forward(self, patches: Tensor) -> Tensor:
        """``[B, N, P*P*C] -> [B, N, D]``."""
        if patches.shape[-1] != self.patch_dim:
            raise ValueError(
                f"patches have {patches.shape[-1]} values each, expected patch_size*patch_size*in_chans = "
                f"{self.patch_size}*{self.patch_size}*{self.in_chans} = {self.patch_dim} in (ph, pw, C) order"
            )
        return self.proj(patches)

    def forward_image(self, images: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """``[B, C, H, W] -> ([B, (H/P)*(W/P), D], (H/P, W/P))``."""
        if images.ndim != 4 or images.shape[1] != self.in_chans:
            raise ValueError(
                f"expected an image batch [B, {self.in_chans}, H, W], got shape {list(images.shape)}"
            )
        h, w = images.shape[-2:]
        grid = check_image_size(h, w, self.patch_size)
        return self.proj(patchify_pixels(images, self.patch_size)), grid


__all__ = ["PatchEmbed", "Patches", "check_image_size", "patchify", "patchify_pixels", "unpatchify"]
