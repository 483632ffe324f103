"""An example glmkit plugin: one encoder and one loss, registered at import."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from glmkit.losses import DISTILL_LOSSES, DistillLoss
from glmkit.models.encoders import ENCODERS, EncoderOutput

__all__ = ["CharbonnierDistillLoss", "ConvPatchEncoder"]


@ENCODERS.register("example_conv")
class ConvPatchEncoder(nn.Module):
    """Patchify with a strided convolution, then a few depthwise-separable conv blocks.

    Implements the encoder interface glmkit's stages use: ``embed_dim``, ``patch_size`` and
    ``forward(images [B, 3, H, W], mask=None, mask_token=None) -> EncoderOutput``.
    """

    def __init__(self, embed_dim: int = 32, patch_size: int = 16, depth: int = 2) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.patch_embed = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(embed_dim, embed_dim, 3, padding=1, groups=embed_dim),
                nn.Conv2d(embed_dim, embed_dim, 1),
                nn.GELU(),
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim)

    def forward(
        self, images: Tensor, mask: Tensor | None = None, mask_token: Tensor | None = None
    ) -> EncoderOutput:
        """Encode images; masked patches are replaced by ``mask_token`` before the blocks."""
        x = self.patch_embed(images)  # B, D, h, w
        b, d, h, w = x.shape
        if mask is not None and mask_token is not None:
            tokens = x.flatten(2).transpose(1, 2)  # B, N, D
            tokens = torch.where(mask.unsqueeze(-1), mask_token.to(tokens.dtype), tokens)
            x = tokens.transpose(1, 2).reshape(b, d, h, w)
        for block in self.blocks:
            x = x + block(x)
        tokens = self.norm(x.flatten(2).transpose(1, 2))  # B, N, D
        return EncoderOutput(patch_tokens=tokens, prefix_tokens=tokens[:, :0], grid_size=(h, w), valid=None)


@DISTILL_LOSSES.register("charbonnier")
class CharbonnierDistillLoss(DistillLoss):
    """Charbonnier loss ``sqrt((pred - target)^2 + eps^2) - eps``, averaged over tokens and channels."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Mean Charbonnier penalty."""
        self._check(pred, target)
        diff = pred.float() - target.float()
        return (torch.sqrt(diff * diff + self.eps**2) - self.eps).mean()
