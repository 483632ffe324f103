import pytest
import torch

from glmkit.data.masking import MASKINGS, BlockMask, RandomMask

GENERATORS = [RandomMask(0.35), BlockMask(0.35), BlockMask(0.6, min_block=2, max_aspect=1.5, max_block=20)]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def masked_neighbours(mask: torch.Tensor, grid: tuple[int, int]) -> float:
    """Mean number of masked 4-neighbours of a masked token."""
    m = mask.view(-1, *grid).float()
    padded = torch.nn.functional.pad(m, (1, 1, 1, 1))
    neighbours = padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]
    return float((neighbours * m).sum() / m.sum())


def test_registry():
    assert MASKINGS.get("random") is RandomMask and MASKINGS.get("block") is BlockMask


@pytest.mark.parametrize("mask_gen", GENERATORS, ids=repr)
@pytest.mark.parametrize("grid", [(14, 14), (16, 16), (7, 10), (1, 5)])
def test_exact_count_and_shape(mask_gen, grid):
    mask = mask_gen(12, grid, gen(0))
    assert mask.shape == (12, grid[0] * grid[1]) and mask.dtype == torch.bool
    expected = round(mask_gen.ratio * grid[0] * grid[1])
    assert mask_gen.num_masked(grid) == expected
    assert mask.sum(dim=1).tolist() == [expected] * 12


def test_glm5v_stage1_counts():
    # 35% of a 14x14 grid (224 px, patch 16) is 69 tokens; of 16x16 (patch 14) it is 90.
    assert BlockMask(0.35)(2, (14, 14), gen(0)).sum(1).tolist() == [69, 69]
    assert RandomMask(0.35).num_masked((16, 16)) == 90


@pytest.mark.parametrize("mask_gen", GENERATORS, ids=repr)
def test_deterministic_per_generator_seed(mask_gen):
    a, b = mask_gen(8, (14, 14), gen(3)), mask_gen(8, (14, 14), gen(3))
    assert torch.equal(a, b)
    assert not torch.equal(a, mask_gen(8, (14, 14), gen(4)))
    assert len({tuple(row.tolist()) for row in a}) == 8  # rows differ from each other


def test_block_masks_are_clustered():
    grid = (14, 14)
    block = masked_neighbours(BlockMask(0.35)(256, grid, gen(0)), grid)
    random = masked_neighbours(RandomMask(0.35)(256, grid, gen(0)), grid)
    assert random == pytest.approx(4 * 0.35 * 196 / 195, abs=0.15)  # ~ 4 * p for independent positions
    assert block > random + 1.0, (block, random)


def test_empty_batch():
    assert BlockMask()(0, (4, 4), gen(0)).shape == (0, 16)
    assert RandomMask()(0, (4, 4), gen(0)).shape == (0, 16)


@pytest.mark.parametrize("ratio", [0, 1, 1.5, -0.1, "0.3", True])
def test_ratio_validated(ratio):
    with pytest.raises(ValueError, match=r"mask ratio must be a number strictly between 0 and 1, got"):
        RandomMask(ratio)
    with pytest.raises(ValueError, match=r"mask ratio must be a number strictly between 0 and 1"):
        BlockMask(ratio)


def test_other_errors():
    with pytest.raises(ValueError, match="min_block must be >= 1"):
        BlockMask(min_block=0)
    with pytest.raises(ValueError, match="max_aspect must be >= 1"):
        BlockMask(max_aspect=0.5)
    with pytest.raises(ValueError, match=r"max_block \(2\) must be >= min_block \(4\)"):
        BlockMask(max_block=2)
    with pytest.raises(ValueError, match=r"grid_size must be positive, got \(0, 4\)"):
        RandomMask()(2, (0, 4), gen(0))
    with pytest.raises(ValueError, match="grid_size must be a pair"):
        BlockMask()(2, 14, gen(0))
    for mask_gen in (RandomMask(0.05), BlockMask(0.05)):  # 0.45 tokens rounds to none: a NaN loss
        with pytest.raises(ValueError, match=r"mask ratio 0.05 masks no token of a 3x3 patch grid"):
            mask_gen(2, (3, 3), gen(0))


def _mixture_module(num_workers: int):
    from glmkit.data import MixtureDataModule, ProceduralImages
    from glmkit.data.masking import DrawMask
    from glmkit.data.transforms import Compose, TrainTransform

    return MixtureDataModule(
        sources={"shapes": ProceduralImages(num_images=100, seed=1, image_size=64, kinds=["shapes"])},
        transform=Compose([TrainTransform(64), DrawMask(BlockMask(0.35), patch_size=16)]),
        batch_size=4,
        num_workers=num_workers,
        samples_per_epoch=16,
        seed=3,
    )


def test_draw_mask_is_a_pure_function_of_the_sample_and_counts_exactly():
    from glmkit.data.masking import DrawMask

    data = _mixture_module(0)
    first, again = data.train_set[(0, 5)], data.train_set[(0, 5)]
    assert first["mask"].shape == (16,) and first["mask"].dtype == torch.bool
    assert int(first["mask"].sum()) == round(0.35 * 16)
    assert torch.equal(first["mask"], again["mask"])
    assert not torch.equal(first["mask"], data.train_set[(1, 5)]["mask"])  # a new epoch draws anew
    with pytest.raises(ValueError, match="image 60x64 is not a whole number of 16-pixel patches"):
        DrawMask(RandomMask(0.5))({"image": torch.zeros(3, 60, 64)}, 0)
    with pytest.raises(TypeError, match="put it after the crop transform"):
        DrawMask(RandomMask(0.5))({"image": "a PIL image"}, 0)


def test_draw_mask_gives_the_same_batches_whatever_the_number_of_workers():
    batches = {}
    for workers in (0, 2):
        loader = _mixture_module(workers).train_dataloader()
        batches[workers] = [batch["mask"] for batch in loader]
    assert len(batches[0]) == 4 and batches[0][0].shape == (4, 16)
    for a, b in zip(batches[0], batches[2], strict=True):
        assert torch.equal(a, b)
