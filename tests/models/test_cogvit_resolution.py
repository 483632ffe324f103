"""CogViT across resolutions: RoPE coordinate rescaling (EVA-02) and coordinate jitter (DINOv3).

Stage 1 trains on 224 px (a 14x14 grid, coordinates 0..13); a 448 px image reaches coordinate 27.
Each option is checked against 224 px behaviour at a tiny scale: 64 px (4x4) for training, 128 px
(8x8) for the larger input, or the real 14x14 grid where only the RoPE tables are computed."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from glmkit.models.encoders import CogViT
from glmkit.nn.rope import RopeJitter


def _tables(model: CogViT, size: int) -> torch.Tensor:
    """``[N, head_dim]`` RoPE angles' cos and sin of an image batch at ``size`` px, prefix rows removed."""
    cos, sin = model.embed(torch.rand(1, 3, size, size)).rope
    t = model.num_prefix_tokens
    return torch.cat([cos[0, t:, 0], sin[0, t:, 0]], dim=-1)


def _corresponding(grid: int, factor: int) -> torch.Tensor:
    """Row-major indices on a ``grid * factor`` grid of the positions (factor*i, factor*j)."""
    big = grid * factor
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return (ys * factor * big + xs * factor).flatten()


def test_rescaled_coordinates_turn_a_448_px_grid_like_the_224_px_one() -> None:
    model = CogViT.preset("tiny", rope_ref_grid=(4, 4)).eval()
    small, large = _tables(model, 64), _tables(model, 128)  # 4x4 and 8x8 grids: "224" and "448"
    torch.testing.assert_close(large[_corresponding(4, 2)], small)
    plain = CogViT.preset("tiny").eval()  # without rescaling, (2i, 2j) turns twice as far as (i, j)
    assert not torch.allclose(_tables(plain, 128)[_corresponding(4, 2)], _tables(plain, 64))


def test_rescaling_uses_each_images_own_grid_in_naflex_and_packed_input() -> None:
    from glmkit.nn.patch_embed import patchify
    from glmkit.nn.rope import grid_coords

    model = CogViT.preset("tiny", rope_ref_grid=(4, 4)).eval()
    t = model.num_prefix_tokens
    image_rope = {side: _tables(model, side * 16) for side in (4, 8)}
    small, large = torch.rand(3, 64, 64), torch.rand(3, 128, 128)
    # NaFlex: the 4x4 image padded to the 8x8 one's 64 tokens
    patches = torch.zeros(2, 64, 16 * 16 * 3)
    patches[0, :16], patches[1] = patchify(small[None], 16)[0], patchify(large[None], 16)[0]
    coords = torch.zeros(2, 64, 2, dtype=torch.long)
    coords[0, :16], coords[1] = grid_coords(4, 4), grid_coords(8, 8)
    valid = torch.zeros(2, 64, dtype=torch.bool)
    valid[0, :16], valid[1] = True, True
    cos, sin = model.embed(patches=patches, coords=coords, valid=valid).rope
    tables = torch.cat([cos[:, t:, 0], sin[:, t:, 0]], dim=-1)
    torch.testing.assert_close(tables[0, :16], image_rope[4])
    torch.testing.assert_close(tables[1], image_rope[8])
    # packed: both images in one row
    packed = torch.cat([patches[0, :16], patches[1]])[None]
    packed_coords = torch.cat([coords[0, :16], coords[1]])[None]
    emb = model.embed(patches=packed, coords=packed_coords, seq_lens=torch.tensor([[16, 64]]))
    cos, sin = emb.rope
    positions = emb.packed.patch_pos[0]
    tables = torch.cat([cos[0, positions, 0], sin[0, positions, 0]], dim=-1)
    torch.testing.assert_close(tables[:16], image_rope[4])
    torch.testing.assert_close(tables[16:], image_rope[8])


def test_rescaling_survives_export_and_old_exports_load_without_it(tmp_path: Path) -> None:
    model = CogViT.preset("tiny", rope_ref_grid=[4, 4]).eval()  # a recipe's list
    model.save_pretrained(tmp_path / "new")
    loaded = CogViT.from_pretrained(tmp_path / "new").eval()
    assert loaded.init_args["rope_ref_grid"] == (4, 4)
    torch.testing.assert_close(_tables(loaded, 128), _tables(model, 128))
    import json

    old = CogViT.preset("tiny")
    old.save_pretrained(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    for key in ("rope_ref_grid", "rope_rescale", "rope_jitter", "rope_shift"):  # written before they existed
        config.get("init_args", config).pop(key, None)
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    assert CogViT.from_pretrained(tmp_path / "old").rope.ref_grid is None
    with pytest.raises(ValueError, match=r"rope_ref_grid must be two positive sides"):
        CogViT.preset("tiny", rope_ref_grid=(14,))


def _y_positions(model: CogViT, size: int) -> torch.Tensor:
    """The y coordinate each patch is turned by, read off the lowest y frequency (no wrap-around)."""
    tables = _tables(model, size)
    quarter = model.rope.head_dim // 4
    half = model.rope.head_dim  # cos then sin, head_dim each
    freq = model.rope.inv_freq[quarter - 1]
    return torch.atan2(tables[:, half + quarter - 1], tables[:, quarter - 1]) / freq


def test_training_jitter_shows_224_px_training_the_coordinate_range_of_448_px() -> None:
    """With DINOv3's rescale 2, a 14x14 grid is turned by coordinates up to ~27 (what a 448 px image
    reaches at inference); eval mode keeps the integer coordinates, and draws follow torch's seed."""
    model = CogViT.preset("tiny", rope_rescale=2.0, rope_jitter=1.1, rope_shift=0.5)
    model.eval()
    torch.testing.assert_close(
        _y_positions(model, 224).view(14, 14)[:, 0], torch.arange(14.0), atol=1e-3, rtol=0
    )
    model.train()
    torch.manual_seed(0)
    extents = [float(_y_positions(model, 224).max()) for _ in range(40)]
    assert max(extents) > 24 and min(extents) < 10  # stretched towards 448's range, and shrunk
    torch.manual_seed(0)
    assert float(_y_positions(model, 224).max()) == pytest.approx(extents[0])  # reseeding reproduces
    plain = CogViT.preset("tiny").train()  # off by default: training sees 0..13 only
    assert float(_y_positions(plain, 224).max()) == pytest.approx(13, abs=1e-3)


def test_rope_jitter_arguments_are_checked_and_draws_stay_in_range() -> None:
    with pytest.raises(ValueError, match="rescale >= 1, jitter >= 1 and shift >= 0; got rescale=0.5"):
        CogViT.preset("tiny", rope_rescale=0.5)
    jitter = RopeJitter(rescale=2.0, jitter=1.5, shift=1.0)
    torch.manual_seed(0)
    for _ in range(100):
        scale, shift = jitter.draw()
        assert (scale >= 1 / 3 - 1e-6).all() and (scale <= 3 + 1e-6).all() and (shift.abs() <= 1).all()
    assert not RopeJitter().enabled and math.isclose(RopeJitter(rescale=2).rescale, 2.0)
