"""Joint text/ViT bin-packing: caps, balance, equal micro-batch counts per rank, whole groups per step."""

from __future__ import annotations

import numpy as np
import pytest

from glmkit.data.packing import CostModel, PackItem, microbatch_balance, plan_microbatches


def _mixed_batch(prompts: int, samples: int, seed: int) -> list[PackItem]:
    """Prompts with 0-3 images of 64-4096 merged tokens; samples of a prompt share its images."""
    rng = np.random.default_rng(seed)
    items = []
    for p in range(prompts):
        merged = [int(np.clip(rng.lognormal(np.log(700), 0.9), 64, 4096)) for _ in range(rng.integers(0, 4))]
        prompt = int(rng.integers(30, 1500))
        for _ in range(samples):
            response = int(np.clip(rng.lognormal(np.log(600), 0.9), 8, 8192))
            items.append(PackItem.from_merged_tokens(prompt + sum(merged) + response, merged, group=p))
    return items


def _check_plan(plan, items, max_text, max_vit, dp) -> None:
    seen = sorted(i for step in plan.steps for rank in step for mb in rank for i in mb)
    assert seen == list(range(len(items)))  # every sample exactly once
    for step in plan.steps:
        assert len(step) == dp
        assert len({len(rank) for rank in step}) == 1  # the same micro-batch count on every rank
        for rank in step:
            for mb in rank:
                assert mb, "empty micro-batch"
                assert sum(items[i].text_tokens for i in mb) <= max_text
                assert sum(items[i].vit_patches for i in mb) <= max_vit


def test_cost_model_by_hand() -> None:
    # L = 4, images of 2 and 4 patches:
    # 1*4 + 0.5*4^2 + (2*2 + 0.25*2^2) + (2*4 + 0.25*4^2) = 4 + 8 + 5 + 12 = 29
    cost = CostModel(text_linear=1.0, text_quadratic=0.5, vit_linear=2.0, vit_quadratic=0.25)
    assert cost.time(PackItem(4, (2, 4))) == pytest.approx(29.0)


def test_patches_are_merged_tokens_times_merge_area() -> None:
    # a 2x2 merge: 16 merged tokens come from 64 patches, 9 from 36
    item = PackItem.from_merged_tokens(100, [16, 9], group="p")
    assert item.image_patches == (64, 36) and item.vit_patches == 100 and item.group == "p"
    assert PackItem.from_merged_tokens(10, [5], spatial_merge_size=1).image_patches == (5,)


def test_images_are_spread_where_text_alone_cannot_tell() -> None:
    # four samples of 3 tokens; two carry an image of 6 patches. Any 2+2 split balances the text,
    # but only one image per micro-batch balances the ViT: each micro-batch gets 6 tokens, 6 patches
    items = [PackItem(3, (6,)), PackItem(3, (6,)), PackItem(3), PackItem(3)]
    plan = plan_microbatches(items, max_text_tokens=100, max_vit_patches=100, min_microbatches_per_rank=2)
    mbs = plan.microbatches()
    assert len(mbs) == 2
    assert sorted(sum(items[i].vit_patches for i in mb) for mb in mbs) == [6, 6]
    assert microbatch_balance(mbs, items) == {"text_tokens": 1.0, "vit_patches": 1.0, "time": 1.0}


def test_fewest_micro_batches_that_fit_in_a_multiple_of_dp() -> None:
    # ten samples of 100 tokens, cap 250: 1000 / 250 = 4 micro-batches by volume, but at most two
    # samples fit in one (300 > 250), so 5 are needed, rounded up to 6 for dp_size 2 (3 per rank)
    items = [PackItem(100) for _ in range(10)]
    plan = plan_microbatches(items, max_text_tokens=250, max_vit_patches=0, dp_size=2)
    assert [len(rank) for rank in plan.steps[0]] == [3, 3]
    _check_plan(plan, items, 250, 0, 2)


def test_realistic_batch_is_balanced_on_every_dimension() -> None:
    items = _mixed_batch(prompts=64, samples=8, seed=0)
    plan = plan_microbatches(items, max_text_tokens=16384, max_vit_patches=32768, dp_size=4)
    _check_plan(plan, items, 16384, 32768, 4)
    stats = plan.balance()
    assert stats["packing/text_tokens_max_over_mean"] <= 1.05
    assert stats["packing/vit_patches_max_over_mean"] <= 1.05
    assert stats["packing/time_max_over_mean"] <= 1.05
    assert stats["packing/rank_time_max_over_mean"] <= 1.05
    # near the fewest micro-batches the caps allow (rounded up to a multiple of dp_size = 4)
    text, vit = sum(it.text_tokens for it in items), sum(it.vit_patches for it in items)
    fewest = 4 * np.ceil(max(np.ceil(text / 16384), np.ceil(vit / 32768)) / 4)
    assert 4 * stats["packing/microbatches_per_rank"] in (fewest, fewest + 4)
    assert all(isinstance(v, float) for v in stats.values())


def test_groups_stay_inside_one_step() -> None:
    items = _mixed_batch(prompts=24, samples=4, seed=1)
    plan = plan_microbatches(items, max_text_tokens=16384, max_vit_patches=32768, dp_size=2, num_steps=3)
    assert len(plan.steps) == 3
    _check_plan(plan, items, 16384, 32768, 2)
    step_of = {i: s for s, step in enumerate(plan.steps) for rank in step for mb in rank for i in mb}
    for group in range(24):
        members = [i for i, it in enumerate(items) if it.group == group]
        assert len({step_of[i] for i in members}) == 1, f"group {group} split across steps"
    # whole groups dealt by load: every step carries a fair share of the tokens
    per_step = [sum(items[i].text_tokens for rank in step for mb in rank for i in mb) for step in plan.steps]
    assert max(per_step) / np.mean(per_step) < 1.25


def test_the_plan_is_deterministic() -> None:
    items = _mixed_batch(prompts=16, samples=4, seed=2)
    a = plan_microbatches(items, max_text_tokens=16384, max_vit_patches=32768, dp_size=2)
    b = plan_microbatches(list(items), max_text_tokens=16384, max_vit_patches=32768, dp_size=2)
    assert a.steps == b.steps


def test_errors_name_the_item_and_the_cap() -> None:
    with pytest.raises(
        ValueError,
        match=r"item 1 alone exceeds a cap: 10 text tokens .* 300 ViT patches \(max_vit_patches=200\)",
    ):
        plan_microbatches([PackItem(5), PackItem(10, (300,))], max_text_tokens=100, max_vit_patches=200)
    with pytest.raises(ValueError, match="a step holds 2 samples, fewer than dp_size x"):
        plan_microbatches([PackItem(5), PackItem(5)], max_text_tokens=100, max_vit_patches=0, dp_size=4)
    with pytest.raises(ValueError, match="2 groups cannot fill num_steps=3"):
        plan_microbatches(
            [PackItem(5, group=g) for g in "aabb"], max_text_tokens=100, max_vit_patches=0, num_steps=3
        )
    with pytest.raises(ValueError, match="image_patches must be positive integers"):
        PackItem(5, (0,))
