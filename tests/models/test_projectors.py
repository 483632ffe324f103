"""Projectors: the 2x2 (x 2 frames) merge on each item's own grid, GLM-4.xV's merger, registry, export."""

from __future__ import annotations

import pytest
import torch

from glmkit.models.projectors import PROJECTORS, MlpMerger, PatchMerger, Projector
from glmkit.registry import RegistryError


def coordinate_tokens(grid_thw: list[list[int]]) -> torch.Tensor:
    """``[N, 4]`` tokens that spell out (item, frame, y, x), laid out as the projector expects."""
    rows = []
    for i, (t, h, w) in enumerate(grid_thw):
        rows += [[i, f, y, x] for f in range(t) for y in range(h) for x in range(w)]
    return torch.tensor(rows, dtype=torch.float32)


def test_registry_lists_both_and_suggests_on_typo():
    assert {"glm4v_merger", "mlp"} <= set(PROJECTORS.names())
    assert PROJECTORS.get("glm4v_merger") is PatchMerger
    with pytest.raises(RegistryError, match="glm4v_merger"):
        PROJECTORS.get("glm4v_merge")
    with pytest.raises(RegistryError, match="Projector"):
        PROJECTORS.register("not_a_projector")(torch.nn.Linear)


def test_merge_gathers_2x2_neighbours_on_each_naflex_grid():
    grids = [[1, 4, 6], [1, 2, 2], [1, 6, 4]]
    projector = MlpMerger(4, 8)
    tokens = coordinate_tokens(grids)
    merged = Projector.merge(projector, tokens, torch.tensor(grids))  # base merge: no LayerNorm
    assert merged.shape == (6 + 1 + 6, 2 * 2 * 2 * 4)
    blocks = merged.view(-1, 2, 2, 2, 4)  # M, dt, dy, dx, (item, frame, y, x)
    j = 0
    for i, (_, h, w) in enumerate(grids):
        for gy in range(h // 2):
            for gx in range(w // 2):
                for dt in range(2):  # a still image fills both halves of the temporal patch
                    for dy in range(2):
                        for dx in range(2):
                            assert blocks[j, dt, dy, dx].tolist() == [i, 0, 2 * gy + dy, 2 * gx + dx]
                j += 1
    assert projector.num_tokens(torch.tensor(grids)).tolist() == [6, 1, 6]


def test_video_frames_are_fused_in_pairs():
    grids = [[4, 2, 2]]
    projector = MlpMerger(4, 8)
    merged = Projector.merge(projector, coordinate_tokens(grids), torch.tensor(grids)).view(-1, 2, 2, 2, 4)
    assert merged.shape[0] == 2  # 4 frames -> 2 temporal patches of one merged token each
    assert merged[:, :, 0, 0, 1].tolist() == [[0, 1], [2, 3]]  # frames (0, 1) then (2, 3)


@pytest.mark.parametrize("cls", [PatchMerger, MlpMerger])
def test_image_equals_its_frame_repeated_as_a_video(cls):
    torch.manual_seed(0)
    projector = cls(16, 32)
    frame = torch.randn(4 * 6, 16)
    as_image = projector(frame, torch.tensor([[1, 4, 6]]))
    as_video = projector(torch.cat([frame, frame]), torch.tensor([[2, 4, 6]]))
    torch.testing.assert_close(as_image, as_video)
    # the order of the two frames matters: the temporal patch sees motion
    other = torch.randn(4 * 6, 16)
    forward = projector(torch.cat([frame, other]), torch.tensor([[2, 4, 6]]))
    backward = projector(torch.cat([other, frame]), torch.tensor([[2, 4, 6]]))
    assert not torch.allclose(forward, backward)


@pytest.mark.parametrize("cls", [PatchMerger, MlpMerger])
def test_items_are_projected_independently(cls):
    torch.manual_seed(0)
    projector = cls(16, 32)
    grids = [[1, 4, 6], [2, 2, 4], [1, 2, 2]]
    tokens = torch.randn(sum(t * h * w for t, h, w in grids), 16)
    together = projector(tokens, torch.tensor(grids))
    alone, start = [], 0
    for grid in grids:
        n = grid[0] * grid[1] * grid[2]
        alone.append(projector(tokens[start : start + n], torch.tensor([grid])))
        start += n
    torch.testing.assert_close(together, torch.cat(alone))
    assert together.shape == (6 + 2 + 1, 32)


def test_glm_merger_layers_and_gradients():
    projector = PatchMerger(16, 32, hidden_features=48)
    assert projector.downsample.in_features == 2 * 2 * 2 * 16 and projector.downsample.bias is not None
    assert projector.proj.bias is None and projector.mlp.fc12.out_features == 2 * 48
    out = projector(torch.randn(16, 16, requires_grad=True), torch.tensor([[1, 4, 4]]))
    out.sum().backward()
    assert all(p.grad is not None for p in projector.parameters())


def test_bad_grids_and_counts_name_the_item():
    projector = MlpMerger(4, 8)
    with pytest.raises(ValueError, match=r"visual item 1: grid \(t=1, h=3, w=4\)"):
        projector(torch.zeros(4 + 12, 4), torch.tensor([[1, 2, 2], [1, 3, 4]]))
    with pytest.raises(ValueError, match="visual item 0: a video of 3 frames"):
        projector(torch.zeros(12, 4), torch.tensor([[3, 2, 2]]))
    with pytest.raises(ValueError, match="got 5 patch tokens but grid_thw"):
        projector(torch.zeros(5, 4), torch.tensor([[1, 2, 2]]))
    with pytest.raises(ValueError, match="merge_size must be a positive integer"):
        PatchMerger(4, 8, merge_size=0)


def test_export_round_trip(tmp_path):
    torch.manual_seed(0)
    projector = PatchMerger(16, 32, merge_size=2, temporal_patch_size=2, hidden_features=40)
    projector.save_pretrained(tmp_path / "proj")
    loaded = Projector.from_pretrained(tmp_path / "proj")
    assert isinstance(loaded, PatchMerger) and loaded.init_args == projector.init_args
    tokens, grid = torch.randn(24, 16), torch.tensor([[1, 4, 6]])
    torch.testing.assert_close(loaded(tokens, grid), projector(tokens, grid))
