"""NaFlex inputs: the resize rule and patches against HF SigLIP2, the seeded schedule (ranks, restart,
budget, coverage), exact resume, and CogViT on packed batches and at twice the training budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from glmkit.data.collate import COLLATES, PackCollate, PadCollate
from glmkit.data.mixture import Mixture
from glmkit.data.naflex import (
    NaFlexBatches,
    NaFlexRandomResizedCrop,
    NaFlexResize,
    NaFlexSchedule,
    encoder_inputs,
    naflex_grid,
    naflex_loader,
    naflex_size,
)
from glmkit.data.sources import ImageSource
from glmkit.data.transforms import TRANSFORMS, to_tensor
from glmkit.models.encoders import CogViT
from glmkit.nn.patch_embed import unpatchify

# (height, width): panoramas, portraits, squares, a tiny image and one a single patch wide
SIZES = [(100, 300), (480, 64), (333, 333), (97, 1001), (640, 427), (20, 30), (16, 700), (250, 180)]


def noise_image(height: int, width: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


class MixedAspect(ImageSource):
    """Small images of mixed aspect ratios (log-uniform in [1/3, 3]); image i is a function of i."""

    def __init__(self, n: int = 200) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def describe(self, index: int) -> str:
        return f"mixed:{index}"

    def load(self, index: int) -> Image.Image:
        rng = np.random.default_rng(index)
        aspect = float(np.exp(rng.uniform(np.log(1 / 3), np.log(3))))
        height = int(rng.integers(24, 96))
        return noise_image(height, max(8, round(height * aspect)), seed=index)


def mixture(n: int = 96, seed: int = 0) -> Mixture:
    return Mixture({"mixed": MixedAspect()}, None, None, seed=seed, num_samples=n)


# ------------------------------------------------------------------------------------------ resize
def test_grid_equals_hf_rule_on_random_sizes() -> None:
    from transformers.models.siglip2.image_processing_siglip2 import get_image_size_for_max_num_patches

    rng = np.random.default_rng(0)
    for _ in range(2000):
        height, width = (int(v) for v in rng.integers(1, 3000, 2))
        patch = int(rng.choice([8, 14, 16, 32]))
        budget = int(rng.integers(1, 2048))
        expected = get_image_size_for_max_num_patches(height, width, patch, budget)
        assert naflex_size(height, width, patch, budget) == expected, (height, width, patch, budget)
        rows, cols = naflex_grid(height, width, patch, budget)
        assert rows * cols <= budget


def test_grid_keeps_aspect_ratio_and_fills_the_budget() -> None:
    assert naflex_grid(224, 224, 16, 256) == (16, 16)
    assert naflex_grid(100, 300, 16, 256) == (9, 27)  # 3:1 panorama: 243 of 256 patches
    assert naflex_grid(300, 100, 16, 256) == (27, 9)
    assert naflex_grid(10, 5000, 16, 64) == (1, 64)  # one row, as many columns as the budget allows


def test_max_upscale_keeps_small_images_native() -> None:
    assert naflex_grid(64, 128, 16, 256) == (11, 22)  # upsampled to fill the budget
    assert naflex_grid(64, 128, 16, 256, max_upscale=1.0) == (4, 8)  # native size: 32 patches
    assert naflex_grid(640, 1280, 16, 256, max_upscale=1.0) == (11, 22)  # large images still shrink


@pytest.mark.parametrize("budget", [16, 64, 256])
def test_patches_equal_hf_siglip2_processor(budget: int) -> None:
    """HF's PIL-backend processor exactly; its torchvision backend to one 8-bit level (its resampler)."""
    from transformers import Siglip2ImageProcessor, Siglip2ImageProcessorPil

    images = [noise_image(h, w, seed=i) for i, (h, w) in enumerate(SIZES)]
    transform = NaFlexResize(patch_size=16, max_num_patches=budget)
    batch = PadCollate(("patches", "coords"), multiple=budget)([transform({"image": im}) for im in images])
    valid = batch["patches_valid"]
    ours = (batch["patches"] - 0.5) / 0.5  # SigLIP2's normalisation, which glmkit leaves to the stage
    for processor, tolerance in ((Siglip2ImageProcessorPil, 0.0), (Siglip2ImageProcessor, 2 / 255 + 1e-6)):
        hf = processor(patch_size=16, max_num_patches=budget)(images=images, return_tensors="pt")
        assert torch.equal(hf["spatial_shapes"], batch["grid"])
        assert torch.equal(hf["pixel_attention_mask"].bool(), valid)
        assert hf["pixel_values"].shape == ours.shape == (len(images), budget, 16 * 16 * 3)
        torch.testing.assert_close(hf["pixel_values"][valid], ours[valid], atol=tolerance, rtol=0)


def test_patches_are_row_major_with_y_x_coords() -> None:
    image = noise_image(48, 80)
    sample = NaFlexResize(patch_size=16, max_num_patches=15)({"image": image, "caption": "c"})
    assert sorted(sample) == ["caption", "coords", "grid", "patches"]  # the image field is replaced
    assert sample["grid"].tolist() == [3, 5]
    assert sample["coords"].tolist() == [[y, x] for y in range(3) for x in range(5)]
    rebuilt = unpatchify(sample["patches"][None], (3, 5), 16)[0]
    assert torch.equal(rebuilt, to_tensor(image))  # already on the grid: no resampling change


def test_random_resized_crop_is_seeded_and_keeps_the_budget() -> None:
    image = noise_image(120, 360)
    crop = NaFlexRandomResizedCrop(patch_size=16, max_num_patches=40, scale=(0.3, 1.0), hflip=0.5)
    first = crop({"image": image}, np.random.default_rng(3))
    again = crop({"image": image}, np.random.default_rng(3))
    assert torch.equal(first["patches"], again["patches"]) and torch.equal(first["grid"], again["grid"])
    outputs = [crop({"image": image}, np.random.default_rng(seed)) for seed in range(20)]
    assert len({o["patches"].sum().item() for o in outputs}) > 10
    for out in outputs:
        rows, cols = out["grid"].tolist()
        assert rows * cols <= 40 and out["patches"].shape == (rows * cols, 768)
        assert 1.0 <= cols / rows <= 6.0  # crops of a 3:1 image stay wide (ratio relative to 3:1)
    assert crop.with_budget(100).max_num_patches == 100 and crop.max_num_patches == 40


def test_registered_and_errors_name_the_values() -> None:
    assert TRANSFORMS.get("naflex_resize") is NaFlexResize
    assert TRANSFORMS.get("naflex_train_crop") is NaFlexRandomResizedCrop
    assert COLLATES.get("pack") is PackCollate
    with pytest.raises(ValueError, match="max_num_patches must be a positive integer, got 0"):
        NaFlexResize(max_num_patches=0)
    with pytest.raises(ValueError, match=r"ratio factors .* got \(1.2, 1.5\)"):
        NaFlexRandomResizedCrop(ratio=(1.2, 1.5))
    with pytest.raises(KeyError, match="no 'image' field"):
        NaFlexResize()({"picture": noise_image(16, 16)})
    with pytest.raises(TypeError, match="must be a PIL image"):
        NaFlexResize()({"image": torch.zeros(3, 16, 16)})
    with pytest.raises(ValueError, match="height must be a positive integer, got 0"):
        naflex_grid(0, 10)
    with pytest.raises(ValueError, match="mode must be 'pack' or 'pad', got 'packed'"):
        NaFlexSchedule(10, mode="packed")
    with pytest.raises(ValueError, match="row_len=128 is shorter than the largest seq_len 256"):
        NaFlexSchedule(10, seq_lens=(64, 256), row_len=128)
    with pytest.raises(ValueError, match="max_tokens_per_batch=100 is smaller"):
        NaFlexSchedule(10, mode="pad", seq_lens=(64, 128), max_tokens_per_batch=100)
    with pytest.raises(ValueError, match="sample 1 has 40 patches, more than row_len=32"):
        PackCollate(row_len=32)(
            [{"patches": torch.zeros(n, 3), "coords": torch.zeros(n, 2)} for n in (8, 40)]
        )


# ---------------------------------------------------------------------------------------- collate
def test_pack_collate_fills_rows_in_order_and_encoder_inputs() -> None:
    samples = [
        {"patches": torch.full((n, 3), float(i)), "coords": torch.zeros(n, 2, dtype=torch.long), "index": i}
        for i, n in enumerate([5, 4, 3, 6, 2])
    ]
    batch = PackCollate(row_len=10)(samples)
    assert batch["patches"].shape == (3, 10, 3) and batch["coords"].shape == (3, 10, 2)
    assert batch["index"].tolist() == [0, 1, 2, 3, 4]  # per-image fields stay in image order
    # 5 + 4 fill row 0, 3 + 6 row 1; 2 no longer fits row 1 (9 + 2 > 10): a third row
    assert batch["patches_seq_lens"].tolist() == [[5, 4], [3, 6], [2, 0]]
    assert batch["patches_valid"].sum(1).tolist() == [9, 9, 2]
    assert batch["patches"][1, 3:9].eq(3).all() and batch["patches"][1, 9:].eq(0).all()
    inputs = encoder_inputs(batch)
    assert sorted(inputs) == ["coords", "patches", "seq_lens"]
    padded = encoder_inputs(PadCollate(("patches", "coords"), multiple=8)(samples))
    assert sorted(padded) == ["coords", "patches", "valid"] and padded["valid"].sum().item() == 20


# --------------------------------------------------------------------------------------- schedule
def test_schedule_is_the_same_on_every_rank_and_after_a_restart() -> None:
    for mode in ("pack", "pad"):
        kwargs = {
            "mode": mode,
            "seq_lens": (16, 32, 64),
            "max_tokens_per_batch": 256,
            "num_replicas": 3,
            "seed": 5,
        }
        schedule = NaFlexSchedule(1000, **kwargs)
        restarted = NaFlexSchedule(1000, **kwargs)
        for epoch in (0, 1):
            assert schedule.steps(epoch) == restarted.steps(epoch)
            for step in range(len(schedule)):
                layouts = [schedule.step(epoch, step, rank)[0] for rank in range(3)]
                assert layouts[0] == layouts[1] == layouts[2] == restarted.step(epoch, step, 2)[0]
        assert schedule.steps(0) != schedule.steps(1)  # each epoch its own order of the same steps
        assert sorted(map(repr, schedule.steps(0))) == sorted(map(repr, schedule.steps(1)))
        assert schedule.steps(0) != NaFlexSchedule(1000, **{**kwargs, "seed": 6}).steps(0)


@pytest.mark.parametrize("mode", ["pack", "pad"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_every_sample_once_per_epoch_and_batches_within_budget(mode: str, shuffle: bool) -> None:
    schedule = NaFlexSchedule(
        1001,
        mode=mode,
        seq_lens=(16, 48, 64),
        max_tokens_per_batch=300,
        num_replicas=4,
        seed=1,
        shuffle=shuffle,
    )
    for epoch in (0, 3):
        seen = []
        for step in range(len(schedule)):
            for rank in range(4):
                layout, indices = schedule.step(epoch, step, rank)
                assert len(indices) == layout.num_images and layout.num_tokens <= 300
                for row in layout.rows:
                    assert sum(row) <= layout.row_len
                    assert mode == "pack" or row == (layout.row_len,)
                seen.extend(indices)
        # 1001 // 4 per rank, each sample at most once: one left over (the last, or a random one)
        assert len(set(seen)) == len(seen) == 1000 and set(seen) <= set(range(1001))
        assert shuffle or sorted(seen) == list(range(1000))


@pytest.mark.parametrize("mode", ["pack", "pad"])
def test_each_bucket_gets_its_share_of_the_patches(mode: str) -> None:
    probs = (0.2, 0.3, 0.5)
    schedule = NaFlexSchedule(
        5000, mode=mode, seq_lens=(64, 128, 256), seq_len_probs=probs, max_tokens_per_batch=1024
    )
    budgets = np.array([b for step in schedule.canonical for row in step.rows for b in row])
    shares = [budgets[budgets == b].sum() / budgets.sum() for b in (64, 128, 256)]
    np.testing.assert_allclose(shares, probs, atol=0.01)  # the same mix of resolutions in both modes
    if mode == "pack":  # 64 + 128 + 256 tile a 256 row: every row but the last step's is full
        assert all(sum(row) == 256 for step in schedule.canonical[:-1] for row in step.rows)


# ------------------------------------------------------------------------------ batches and resume
@pytest.mark.parametrize("mode", ["pack", "pad"])
def test_rank_batches_have_equal_shapes_and_cover_the_epoch(mode: str) -> None:
    schedule = NaFlexSchedule(
        96, mode=mode, seq_lens=(16, 32), max_tokens_per_batch=128, num_replicas=2, seed=2
    )
    batches = NaFlexBatches(mixture(96), schedule, NaFlexRandomResizedCrop(patch_size=16, max_num_patches=32))
    per_rank = [list(naflex_loader(batches, rank=rank)) for rank in range(2)]
    assert len(per_rank[0]) == len(per_rank[1]) == len(schedule)
    seen = []
    for first, second in zip(*per_rank, strict=True):
        for key in ("patches", "coords", "patches_valid", "patches_seq_lens", "grid"):
            if key in first:
                assert first[key].shape == second[key].shape, key
        assert first["patches"].numel() <= 128 * 768
        seen += first["index"].tolist() + second["index"].tolist()
        for batch in (first, second):
            real = batch["patches_valid"].sum().item()
            assert real == int(batch["grid"].prod(1).sum())  # every image's patches, nothing else
    assert sorted(seen) == list(range(96))


def test_packed_rows_are_nearly_all_real_patches() -> None:
    schedule = NaFlexSchedule(192, mode="pack", seq_lens=(16, 32, 64), max_tokens_per_batch=256, seed=0)
    batches = NaFlexBatches(mixture(192), schedule, NaFlexResize(patch_size=16))
    real = total = 0
    for batch in naflex_loader(batches):
        real += int(batch["patches_valid"].sum())
        total += batch["patches_valid"].numel()
        assert (batch["patches_seq_lens"].sum(1) <= 64).all()
    assert real / total >= 0.95


@pytest.mark.parametrize("seq_lens", [(64, 144, 256), (64,)])
def test_packed_images_get_their_bucket_plus_what_the_row_left_never_more_than_the_largest(seq_lens) -> None:
    # Unused budget moves on along a row and the row's unclaimed room goes to its last image: the
    # first image must not take that room (it grew past the largest bucket), nor a lone image in the
    # epoch's short last step the whole row.
    schedule = NaFlexSchedule(
        40, mode="pack", seq_lens=seq_lens, max_tokens_per_batch=1024, row_len=512, seed=0
    )
    batches = NaFlexBatches(mixture(40), schedule, NaFlexResize(patch_size=16))
    for position in range(len(batches)):
        layout, _ = schedule.step(0, position, 0)
        batch = batches[(0, position)]
        sizes = iter(batch["grid"].prod(1).tolist())  # patches of each image, row by row
        for budgets in layout.rows:
            unused = 0
            free = layout.row_len - sum(budgets)
            for j, bucket in enumerate(budgets):
                size = next(sizes)
                allowed = min(bucket + unused + (free if j == len(budgets) - 1 else 0), max(seq_lens))
                assert size <= allowed, (position, budgets, j, size)
                unused = bucket + unused - size if j < len(budgets) - 1 else 0
                assert unused >= 0


def test_resume_mid_epoch_sees_the_uninterrupted_batches() -> None:
    schedule = NaFlexSchedule(
        64, mode="pack", seq_lens=(16, 32), max_tokens_per_batch=96, num_replicas=2, seed=3
    )
    batches = NaFlexBatches(mixture(64), schedule, NaFlexRandomResizedCrop(patch_size=16, max_num_patches=32))
    full = list(naflex_loader(batches, rank=1))
    loader = naflex_loader(batches, rank=1)
    iterator = iter(loader)
    for _ in range(3):
        next(iterator)
    state = loader.state_dict()
    assert state["batches"] == 3 and state["batch_size"] == 1
    resumed = naflex_loader(batches, rank=1)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == len(full) - 3
    for got, want in zip(rest, full[3:], strict=True):
        assert got["index"].tolist() == want["index"].tolist()
        assert torch.equal(got["patches"], want["patches"]) and torch.equal(
            got["patches_seq_lens"], want["patches_seq_lens"]
        )


# ----------------------------------------------------------------------------------------- CogViT
def _per_image(batch: dict) -> list[dict]:
    """Each image's own NaFlex input, cut out of a packed batch."""
    out = []
    for row, lengths in enumerate(batch["patches_seq_lens"].tolist()):
        start = 0
        for n in (n for n in lengths if n > 0):
            out.append(
                {
                    "patches": batch["patches"][row, start : start + n][None],
                    "coords": batch["coords"][row, start : start + n][None],
                }
            )
            start += n
    return out


def test_packed_batch_equals_per_image_forward() -> None:
    torch.manual_seed(0)
    encoder = CogViT.preset("tiny").double().eval()
    schedule = NaFlexSchedule(24, mode="pack", seq_lens=(8, 16, 32), max_tokens_per_batch=96, seed=4)
    batches = NaFlexBatches(mixture(24), schedule, NaFlexResize(patch_size=16))
    batch = next(b for b in naflex_loader(batches) if b["patches_seq_lens"].gt(0).sum(1).max() > 1)
    batch["patches"] = batch["patches"].double()
    out = encoder(**encoder_inputs(batch))
    singles = _per_image(batch)
    assert out.prefix_tokens.shape[0] == len(singles) == len(batch["index"])
    means = [tokens.mean(0) for tokens in out.patch_tokens_per_image()]  # mean pooling per image
    for i, single in enumerate(singles):
        alone = encoder(**single)
        torch.testing.assert_close(
            out.patch_tokens_per_image()[i], alone.patch_tokens[0], atol=1e-12, rtol=1e-12
        )
        torch.testing.assert_close(out.prefix_tokens[i], alone.prefix_tokens[0], atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(means[i], alone.patch_tokens[0].mean(0), atol=1e-12, rtol=1e-12)


def test_packed_batch_runs_as_one_row_without_padding_and_equals_the_row_layout(monkeypatch) -> None:
    # On the CPU, attention costs the same whatever the rows, so all images go on one internal row
    # with no padding; the result (forward and gradients) is the row layout's, which CUDA keeps.
    import glmkit.models.encoders.cogvit as cogvit

    torch.manual_seed(0)
    encoder = CogViT.preset("tiny", depth=2).double().train()
    schedule = NaFlexSchedule(24, mode="pack", seq_lens=(8, 16, 32), max_tokens_per_batch=96, seed=4)
    batches = NaFlexBatches(mixture(24), schedule, NaFlexResize(patch_size=16))
    batch = next(b for b in naflex_loader(batches) if (~b["patches_valid"]).any())  # with padding
    batch["patches"] = batch["patches"].double()
    inputs = encoder_inputs(batch)
    rows, n = batch["patches_valid"].shape
    images = len(batch["index"])
    t = encoder.num_prefix_tokens

    def run() -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        encoder.zero_grad()
        tokens = encoder.embed(**inputs).tokens
        out = encoder(**inputs)
        (out.patch_tokens.square().sum() + out.prefix_tokens.sum()).backward()
        grads = {name: p.grad.clone() for name, p in encoder.named_parameters()}
        return tokens, torch.cat([out.patch_tokens.flatten(), out.prefix_tokens.flatten()]), grads

    tokens, out, grads = run()
    assert tokens.shape[:2] == (1, int(batch["patches_valid"].sum()) + t * images)  # one row, no padding
    monkeypatch.setattr(cogvit, "packed_rows_cost_nothing", lambda *args: False)
    row_tokens, row_out, row_grads = run()
    assert row_tokens.shape[0] == rows and row_tokens.shape[1] >= n + t  # a row per input row, padded
    torch.testing.assert_close(out, row_out, atol=1e-12, rtol=1e-12)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, row_grads[name], atol=1e-12, rtol=1e-12, msg=name)


def test_the_row_layout_is_chosen_for_the_dtype_attention_runs_in(monkeypatch) -> None:
    # Under autocast the tokens are fp32 but attention runs in bf16: on CUDA that decides between
    # the varlen flash kernel (one row) and masked rows, so the encoder must ask for autocast's dtype.
    import glmkit.models.encoders.cogvit as cogvit

    asked = []
    monkeypatch.setattr(cogvit, "packed_rows_cost_nothing", lambda *args: asked.append(args) or False)
    encoder = CogViT.preset("tiny", depth=1)
    schedule = NaFlexSchedule(8, mode="pack", seq_lens=(16,), max_tokens_per_batch=32, seed=0)
    batch = next(iter(naflex_loader(NaFlexBatches(mixture(8), schedule, NaFlexResize(patch_size=16)))))
    encoder(**encoder_inputs(batch))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        encoder(**encoder_inputs(batch))
    head_dim = encoder.blocks[0].attn.head_dim
    assert asked == [
        ("sdpa", torch.device("cpu"), torch.float32, head_dim),
        ("sdpa", torch.device("cpu"), torch.bfloat16, head_dim),
    ]


def test_a_model_trained_at_one_budget_runs_at_twice_the_budget() -> None:
    torch.manual_seed(0)
    encoder = CogViT.preset("tiny")
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-3)
    schedule = NaFlexSchedule(32, mode="pack", seq_lens=(16, 32), max_tokens_per_batch=64, seed=0)
    train = NaFlexBatches(mixture(32), schedule, NaFlexRandomResizedCrop(patch_size=16, max_num_patches=32))
    for batch in naflex_loader(train):  # a few steps at budgets of at most 32 patches
        out = encoder(**encoder_inputs(batch))
        loss = sum(t.mean(0).square().sum() for t in out.patch_tokens_per_image())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    encoder.eval()
    resize = NaFlexResize(patch_size=16, max_num_patches=64)  # twice the largest training budget
    images = [noise_image(h, w, seed=i) for i, (h, w) in enumerate(SIZES[:5])]
    samples = [resize({"image": im}) for im in images]
    assert max(int(s["grid"].prod()) for s in samples) > 32  # grids the model never saw
    with torch.no_grad():
        packed = encoder(**encoder_inputs(PackCollate(row_len=128)(samples)))
        for i, (sample, tokens) in enumerate(zip(samples, packed.patch_tokens_per_image(), strict=True)):
            rows, cols = sample["grid"].tolist()
            assert tokens.shape == (rows * cols, encoder.embed_dim) and torch.isfinite(tokens).all()
            # grid-consistent: the same as the plain image path on the resized image ([1, 3, H, W])
            pixels = images[i].resize((cols * 16, rows * 16), Image.Resampling.BILINEAR)
            image_out = encoder(to_tensor(pixels)[None])
            assert image_out.grid_size == (rows, cols)
            torch.testing.assert_close(tokens, image_out.patch_tokens[0], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(
                packed.prefix_tokens[i], image_out.prefix_tokens[0], atol=1e-4, rtol=1e-4
            )
