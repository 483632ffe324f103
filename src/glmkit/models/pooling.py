"""Pooling an encoder's patch tokens into one vector per image, never mixing packed images.

A NaFlex batch holds images padded (``valid [B, N]``) or packed back to back in rows
(``seq_lens [B, S]``); :func:`per_image_tokens` turns either into ``[I, n_max, D]`` with a validity
mask, one row per image, so a pooling head only ever sees one image's tokens.

- :class:`MeanPool`: the mean of an image's valid patch tokens.
- :class:`MAPHead`: multihead attention pooling (Lee et al. 2019, "Set Transformer"; SigLIP's and
  big_vision's ``MAPHead``): a learned probe attends over the image's valid tokens, then a residual
  MLP on the pooled vector.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from glmkit.nn.mlp import Mlp


def per_image_tokens(
    patch_tokens: Tensor, valid: Tensor | None = None, seq_lens: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Each image's patch tokens as a row: ``([I, n_max, D], valid [I, n_max])``.

    Args:
        patch_tokens: ``[B, N, D]`` (an encoder output's ``patch_tokens``).
        valid: ``[B, N]`` False at padding (padded input); ``None``: every token is real.
        seq_lens: ``[B, S]`` packed input: patch counts of the images back to back in each row
            (0 = empty slot); images come out in row-major order, as the encoder's prefix tokens.
    """
    if seq_lens is None:
        b, n, _ = patch_tokens.shape
        mask = valid if valid is not None else patch_tokens.new_ones((b, n), dtype=torch.bool)
        return patch_tokens, mask.bool()
    lengths = seq_lens.long()  # B, S
    starts = lengths.cumsum(1) - lengths  # B, S  first position of each image in its row
    keep = lengths > 0
    rows = torch.arange(lengths.shape[0], device=lengths.device)[:, None].expand_as(lengths)[keep]  # I
    starts, lengths = starts[keep], lengths[keep]  # I
    n_max = int(lengths.max()) if lengths.numel() else 0
    offsets = torch.arange(n_max, device=lengths.device)  # n_max
    mask = offsets[None] < lengths[:, None]  # I, n_max
    positions = (starts[:, None] + offsets[None]).clamp_max(patch_tokens.shape[1] - 1)  # I, n_max
    tokens = patch_tokens[rows[:, None], positions]  # I, n_max, D
    return tokens.masked_fill(~mask[..., None], 0.0), mask


class MeanPool(nn.Module):
    """The mean of each image's valid tokens: ``[I, n, D], [I, n] -> [I, D]``."""

    def forward(self, tokens: Tensor, valid: Tensor) -> Tensor:
        """Masked mean over the token axis."""
        w = valid[..., None].to(tokens.dtype)  # I, n, 1
        return (tokens * w).sum(1) / w.sum(1).clamp_min(1.0)


class MAPHead(nn.Module):
    """Multihead attention pooling (SigLIP / big_vision ``MAPHead``): ``[I, n, D], [I, n] -> [I, D]``.

    ``x = MHA(probe, tokens, tokens; key_padding_mask=~valid)``; ``x = x + MLP(LN(x))``.

    Args:
        dim: token width.
        num_heads: attention heads.
        mlp_ratio: hidden width of the MLP as a multiple of ``dim``.
    """

    def __init__(self, dim: int, num_heads: int = 8, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"MAPHead: dim={dim} is not divisible by num_heads={num_heads}")
        self.probe = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.probe, std=0.02)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, tokens: Tensor, valid: Tensor) -> Tensor:
        """Attend from the probe to each image's valid tokens, then the residual MLP."""
        probe = self.probe.expand(tokens.shape[0], -1, -1)  # I, 1, D
        x, _ = self.attn(probe, tokens, tokens, key_padding_mask=~valid, need_weights=False)
        x = x[:, 0]  # I, D
        return x + self.mlp(self.norm(x))


__all__ = ["MAPHead", "MeanPool", "per_image_tokens"]
