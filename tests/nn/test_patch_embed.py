"""Patchify layout (ph, pw, C), its inverse, and the Linear patch embedding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from glmkit.nn.patch_embed import PatchEmbed, patchify, patchify_pixels, unpatchify


def test_patch_layout_is_ph_pw_c() -> None:
    p, c = 4, 3
    images = torch.randn(2, c, 8, 12)
    patches = patchify_pixels(images, p)
    assert patches.shape == (2, 2 * 3, p * p * c)
    for b, gy, gx, ph, pw, ch in [(0, 0, 0, 0, 0, 0), (1, 1, 2, 3, 1, 2), (0, 1, 0, 2, 3, 1)]:
        n = gy * 3 + gx
        assert patches[b, n, (ph * p + pw) * c + ch] == images[b, ch, gy * p + ph, gx * p + pw]


def test_patchify_coords_valid_and_inverse() -> None:
    images = torch.randn(2, 3, 32, 48)
    out = patchify(images, 16)
    assert out.grid_size == (2, 3)
    assert out.coords.shape == (2, 6, 2) and out.coords[1, 4].tolist() == [1, 1]
    assert out.valid.all() and out.valid.shape == (2, 6)
    assert torch.equal(unpatchify(out.patches, out.grid_size, 16), images)


def test_linear_embedding_equals_stride_p_convolution() -> None:
    embed = PatchEmbed(patch_size=4, in_chans=3, embed_dim=10)
    images = torch.randn(2, 3, 8, 12)
    tokens, grid = embed.forward_image(images)
    weight = embed.proj.weight.reshape(10, 4, 4, 3).permute(0, 3, 1, 2)  # D, C, ph, pw
    conv = F.conv2d(images, weight, embed.proj.bias, stride=4)  # B, D, gh, gw
    torch.testing.assert_close(tokens, conv.flatten(2).transpose(1, 2))
    assert grid == (2, 3)


def test_errors_name_sizes() -> None:
    with pytest.raises(ValueError, match=r"H=30, W=48 is not divisible by patch_size=16.*H=32"):
        patchify(torch.randn(1, 3, 30, 48), 16)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        patchify(torch.randn(3, 32, 32), 16)
    embed = PatchEmbed(patch_size=4, in_chans=3, embed_dim=8)
    with pytest.raises(ValueError, match="expected patch_size\\*patch_size\\*in_chans = 4\\*4\\*3 = 48"):
        embed(torch.randn(1, 5, 47))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        embed.forward_image(torch.randn(1, 1, 8, 8))
