"""Axial 2D RoPE: reference formula, relative-position property, prefix tokens, caching."""

from __future__ import annotations

import pytest
import torch

from glmkit.nn.rope import RotaryEmbedding2D, apply_rotary, grid_coords

HEAD_DIM = 16


def rotate(x: torch.Tensor, coords: torch.Tensor, rope: RotaryEmbedding2D, prefix: int = 0) -> torch.Tensor:
    """Rotate ``x`` [B, prefix+N, H, D] (token-major) at ``coords`` [B, N, 2]."""
    cos, sin = rope(coords, num_prefix_tokens=prefix)
    return apply_rotary(x, cos, sin)


def complex_reference(x: torch.Tensor, coords: torch.Tensor, theta: float) -> torch.Tensor:
    """Independent formulation: channel pair (j, j + D/2) as one complex number, turned by its angle."""
    d = x.shape[-1]
    quarter = d // 4
    freqs = theta ** (-torch.arange(quarter, dtype=torch.float64) / quarter)
    y, xc = coords[..., 0:1].double(), coords[..., 1:2].double()
    angles = torch.cat([y * freqs, xc * freqs], dim=-1)[:, :, None]  # B, N, 1, D/2
    z = torch.complex(x[..., : d // 2].double(), x[..., d // 2 :].double()) * torch.polar(
        torch.ones_like(angles), angles
    )
    return torch.cat([z.real, z.imag], dim=-1)


def test_matches_complex_rotation_reference() -> None:
    rope = RotaryEmbedding2D(HEAD_DIM, theta=100.0)
    coords = torch.randint(0, 20, (2, 9, 2))
    x = torch.randn(2, 9, 3, HEAD_DIM)
    torch.testing.assert_close(
        rotate(x, coords, rope).double(), complex_reference(x, coords, 100.0), atol=1e-5, rtol=1e-5
    )


def test_dot_product_depends_only_on_coordinate_difference() -> None:
    rope = RotaryEmbedding2D(HEAD_DIM)
    q, k = torch.randn(2, 1, 1, 1, HEAD_DIM).unbind(0)

    def score(pq: tuple[int, int], pk: tuple[int, int]) -> torch.Tensor:
        rq = rotate(q, torch.tensor([[pq]]), rope)
        rk = rotate(k, torch.tensor([[pk]]), rope)
        return (rq * rk).sum()

    base = score((2, 5), (7, 1))
    for shift in [(0, 3), (4, 0), (11, -6), (-2, 9)]:
        shifted = score((2 + shift[0], 5 + shift[1]), (7 + shift[0], 1 + shift[1]))
        torch.testing.assert_close(shifted, base, atol=1e-5, rtol=1e-5)
    # ...and it does depend on the difference, along each axis separately
    assert not torch.allclose(score((2, 5), (8, 1)), base, atol=1e-3)
    assert not torch.allclose(score((2, 5), (7, 2)), base, atol=1e-3)


def test_axes_use_separate_channel_halves() -> None:
    rope = RotaryEmbedding2D(HEAD_DIM)
    x = torch.randn(1, 1, 1, HEAD_DIM)
    quarter, half = HEAD_DIM // 4, HEAD_DIM // 2
    y_pairs = torch.cat([torch.arange(quarter), torch.arange(quarter) + half])
    x_pairs = torch.cat([torch.arange(quarter, half), torch.arange(quarter, half) + half])
    moved_y = rotate(x, torch.tensor([[[3, 0]]]), rope)
    moved_x = rotate(x, torch.tensor([[[0, 3]]]), rope)
    assert torch.equal(moved_y[..., x_pairs], x[..., x_pairs])  # a y move leaves x channels
    assert not torch.allclose(moved_y[..., y_pairs], x[..., y_pairs])
    assert torch.equal(moved_x[..., y_pairs], x[..., y_pairs])
    assert not torch.allclose(moved_x[..., x_pairs], x[..., x_pairs])


def test_rotation_preserves_norm_and_origin_is_identity() -> None:
    rope = RotaryEmbedding2D(HEAD_DIM)
    x = torch.randn(2, 6, 4, HEAD_DIM)
    coords = torch.randint(-50, 50, (2, 6, 2))
    torch.testing.assert_close(rotate(x, coords, rope).norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(rotate(x, torch.zeros(2, 6, 2, dtype=torch.long), rope), x)


def test_prefix_tokens_are_not_rotated() -> None:
    rope = RotaryEmbedding2D(HEAD_DIM)
    coords = torch.randint(1, 10, (2, 5, 2))
    x = torch.randn(2, 3 + 5, 3, HEAD_DIM)
    out = rotate(x, coords, rope, prefix=3)
    assert torch.equal(out[:, :3], x[:, :3])
    torch.testing.assert_close(out[:, 3:], rotate(x[:, 3:], coords, rope))


def test_head_major_layout_with_transposed_tables() -> None:
    rope = RotaryEmbedding2D(HEAD_DIM)
    coords = torch.randint(0, 10, (2, 5, 2))
    x = torch.randn(2, 5, 3, HEAD_DIM)
    cos, sin = rope(coords)
    head_major = apply_rotary(x.transpose(1, 2), cos.transpose(1, 2), sin.transpose(1, 2))
    torch.testing.assert_close(head_major.transpose(1, 2), apply_rotary(x, cos, sin))


def test_grid_tables_are_cached_and_match_coordinates() -> None:
    rope = RotaryEmbedding2D(HEAD_DIM)
    cos, sin = rope.for_grid(3, 4, num_prefix_tokens=2)
    assert cos.shape == (1, 2 + 12, 1, HEAD_DIM)
    ref_cos, ref_sin = rope(grid_coords(3, 4), num_prefix_tokens=2)
    torch.testing.assert_close(cos, ref_cos)
    torch.testing.assert_close(sin, ref_sin)
    assert rope.for_grid(3, 4, num_prefix_tokens=2)[0] is cos
    rope.to(torch.float64)  # moving the module invalidates the cache
    assert rope.for_grid(3, 4, num_prefix_tokens=2)[0] is not cos


def test_dtype_casts_keep_frequencies_in_float32() -> None:
    """model.to(bfloat16) must not round the frequencies: at coordinate 63 bf16 rounding moves the
    angles by about 0.01 rad."""
    reference = RotaryEmbedding2D(64).for_grid(64, 64)
    rope = RotaryEmbedding2D(64)
    rope.for_grid(64, 64)  # a cached table must not survive the cast either
    rope.to(torch.bfloat16)
    assert rope.inv_freq.dtype == torch.float32
    for got, want in zip(rope.for_grid(64, 64), reference, strict=True):
        assert torch.equal(got, want)
    assert torch.nn.Sequential(RotaryEmbedding2D(16)).half()[0].inv_freq.dtype == torch.float32


def test_frequencies_follow_the_inputs_device() -> None:
    """FSDP moves parameters and buffers without ``_apply``: the tables follow the inputs instead
    (shown with the meta device, which needs no GPU)."""
    rope = RotaryEmbedding2D(16)
    cos, _ = rope(grid_coords(2, 3, device="meta"))
    assert cos.device.type == "meta" and rope.inv_freq.device.type == "meta"
    cos, _ = rope.for_grid(2, 3, device=torch.device("cpu"))
    assert cos.device.type == "cpu" and rope.inv_freq.dtype == torch.float32


def test_grid_coords_are_row_major_y_x() -> None:
    assert grid_coords(2, 3).tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="divisible by 4"):
        RotaryEmbedding2D(18)
    with pytest.raises(ValueError, match=r"\[B, N, 2\]"):
        RotaryEmbedding2D(HEAD_DIM)(torch.zeros(2, 5, 3))


def test_rescaled_scaled_and_shifted_coordinates_match_the_reference_at_the_moved_positions() -> None:
    """``ref_grid`` (EVA-02's ``ref_feat_shape``) turns an h x w grid's (y, x) by (y * 14 / h, x * 14 / w),
    then ``scale`` and ``shift`` move them: the reference rotation at those float positions."""
    rope = RotaryEmbedding2D(HEAD_DIM, theta=100.0, ref_grid=(14, 14))
    coords = grid_coords(28, 20)[None]
    extents = torch.tensor([28, 20])
    scale, shift = torch.tensor([1.5, 0.8]), torch.tensor([0.25, -1.0])
    x = torch.randn(1, coords.shape[1], 2, HEAD_DIM)
    cos, sin = rope(coords, extents=extents, scale=scale, shift=shift)
    moved = coords.double() * torch.tensor([14 / 28, 14 / 20], dtype=torch.float64) * scale.double() + shift
    torch.testing.assert_close(
        apply_rotary(x, cos, sin).double(), complex_reference(x, moved, 100.0), atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(rope.for_grid(28, 20)[0][0, :, 0], rope(coords, extents=extents)[0][0, :, 0])
    with pytest.raises(ValueError, match="with ref_grid needs the grid extents"):
        rope(coords)
    with pytest.raises(ValueError, match=r"ref_grid must be two positive sides \(h, w\), got \(14,\)"):
        RotaryEmbedding2D(HEAD_DIM, ref_grid=(14,))
