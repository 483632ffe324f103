"""Collates: stack, pad to buckets, pack; the mixture's bookkeeping fields in each."""

import pytest
import torch
from PIL import Image

from glmkit.data.collate import PackCollate, PadCollate, StackCollate


def _samples(lengths, width=3):
    return [
        {
            "patches": torch.arange(n * width, dtype=torch.float32).view(n, width) + 100 * i,
            "caption": f"c{i}",
            "source": "natural" if i % 2 else "science",
            "index": i,
            "weight": 0.5 * i,
            "skipped": [f"bad{i}"] * i,
        }
        for i, n in enumerate(lengths)
    ]


def test_stack_keeps_tags_and_every_skip_report():
    batch = StackCollate()(_samples([2, 2, 2]))
    assert batch["patches"].shape == (3, 2, 3)
    assert batch["source"] == ["science", "natural", "science"] and batch["caption"] == ["c0", "c1", "c2"]
    assert batch["index"].tolist() == [0, 1, 2] and batch["index"].dtype == torch.long
    assert batch["weight"].dtype == torch.float32 and batch["weight"].tolist() == [0.0, 0.5, 1.0]
    assert batch["skipped"] == ["bad1", "bad2", "bad2"]


def test_stack_turns_pil_images_into_tensors():
    image = Image.new("RGB", (4, 2), (255, 0, 0))
    batch = StackCollate()([{"image": image, "skipped": []}] * 2)
    assert batch["image"].shape == (2, 3, 2, 4) and batch["image"][:, 0].eq(1).all()


def test_samples_with_different_fields_are_named():
    samples = _samples([2, 2])
    del samples[1]["caption"]
    with pytest.raises(KeyError, match=r"sample 1 \(source 'natural'\) has"):
        StackCollate()(samples)


def test_pad_rounds_to_the_bucket_and_marks_valid_positions():
    samples = _samples([3, 5, 1])
    batch = PadCollate(["patches"], multiple=4)(samples)
    assert batch["patches"].shape == (3, 8, 3)  # longest 5 -> bucket 8
    valid = batch["patches_valid"]
    assert valid.sum(1).tolist() == [3, 5, 1]
    for i, sample in enumerate(samples):
        n = sample["patches"].shape[0]
        assert torch.equal(batch["patches"][i, :n], sample["patches"])
        assert batch["patches"][i, n:].eq(0).all() and not valid[i, n:].any()


def test_pack_fills_rows_in_order_with_the_encoders_seq_lens_layout():
    samples = _samples([3, 5, 1])
    batch = PackCollate(row_len=8, keys=["patches"])(samples)
    # rows of 8: [3, 5] then [1]; seq_lens [R, S] with 0 in unused slots
    assert batch["patches"].shape == (2, 8, 3) and batch["patches_seq_lens"].tolist() == [[3, 5], [1, 0]]
    assert batch["patches_valid"].sum(1).tolist() == [8, 1]
    assert torch.equal(batch["patches"][0, :3], samples[0]["patches"])
    assert torch.equal(batch["patches"][0, 3:8], samples[1]["patches"])
    assert torch.equal(batch["patches"][1, :1], samples[2]["patches"])
    assert batch["source"] == ["science", "natural", "science"]


def test_pad_and_pack_refuse_what_they_cannot_batch():
    samples = _samples([2, 3])
    samples[1]["patches"] = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="field 'patches' of sample"):
        PackCollate(row_len=8, keys=["patches"])(samples)
    with pytest.raises(KeyError, match="samples have no field 'tokens'"):
        PadCollate(["tokens"])(_samples([2]))
    with pytest.raises(ValueError, match="multiple must be >= 1"):
        PadCollate(multiple=0)
