import numpy as np
import pytest
import torch
from PIL import Image

from glmkit.data.transforms import (
    Compose,
    EvalTransform,
    TrainTransform,
    as_generator,
    random_resized_crop_box,
    to_tensor,
)


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, size=(90, 120, 3), dtype=np.uint8), "RGB")


def test_to_tensor_layout_and_range(image):
    t = to_tensor(image)
    assert t.shape == (3, 90, 120) and t.dtype == torch.float32 and t.is_contiguous()
    assert torch.equal(t, torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255)


def test_train_transform_is_a_function_of_the_seed(image):
    tf = TrainTransform(image_size=32)
    a, b = tf.apply(image, 5), tf.apply(image, 5)
    assert a.shape == (3, 32, 32) and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    assert not torch.equal(tf.apply(image, 5), tf.apply(image, 6))
    # a numpy generator, a torch generator and a seed are all accepted
    assert torch.equal(tf.apply(image, np.random.default_rng(9)), tf.apply(image, np.random.default_rng(9)))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(tf.apply(image, g1), tf.apply(image, g2))


def test_flip_is_the_last_draw(image):
    # The crop draws come first, so hflip=1 must equal the mirror image of hflip=0 for the same seed.
    plain = TrainTransform(image_size=24, hflip=0.0).apply(image, 11)
    flipped = TrainTransform(image_size=24, hflip=1.0).apply(image, 11)
    assert torch.equal(flipped, plain.flip(-1))


def test_crop_box_respects_scale_and_ratio():
    rng = np.random.default_rng(0)
    for _ in range(500):
        left, top, right, bottom = random_resized_crop_box(120, 90, (0.4, 1.0), (3 / 4, 4 / 3), rng)
        w, h = right - left, bottom - top
        assert 0 <= left < right <= 120 and 0 <= top < bottom <= 90
        area = w * h / (120 * 90)
        assert 0.38 <= area <= 1.0
        assert 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05


def test_crop_box_fallback_is_centred():
    # A 1000x10 strip cannot hold a 3/4..4/3 crop covering >= 40%: centred fallback with clamped ratio.
    box = random_resized_crop_box(1000, 10, (0.4, 1.0), (3 / 4, 4 / 3), np.random.default_rng(0))
    assert box == (493, 0, 506, 10)


def test_eval_transform_is_a_centre_crop(image):
    out = EvalTransform(image_size=30, interpolation="nearest").apply(image, 123)
    assert torch.equal(out, EvalTransform(image_size=30, interpolation="nearest").apply(image))
    square = image.crop((15, 0, 105, 90)).resize((30, 30), Image.Resampling.NEAREST)
    assert torch.equal(out, to_tensor(square))
    assert EvalTransform(image_size=30, crop_pct=0.5).apply(image).shape == (3, 30, 30)


def test_errors():
    with pytest.raises(ValueError, match=r"crop scale must satisfy 0 < min <= max <= 1, got \(0.5, 1.5\)"):
        TrainTransform(scale=(0.5, 1.5))
    with pytest.raises(ValueError, match="unknown interpolation 'cubic'; valid: nearest, bilinear"):
        TrainTransform(interpolation="cubic")
    with pytest.raises(ValueError, match="crop_pct must be in"):
        EvalTransform(crop_pct=0)
    with pytest.raises(ValueError, match="hflip is a probability"):
        TrainTransform(hflip=2)
    with pytest.raises(TypeError, match="got str"):
        as_generator("seed")


def test_image_transforms_rewrite_one_field_of_a_record(image):
    record = {"image": image, "caption": "a red square"}
    out = TrainTransform(image_size=24)(record, 3)
    assert out["caption"] == "a red square" and record["image"] is image  # input left as it was
    assert torch.equal(out["image"], TrainTransform(image_size=24).apply(image, 3))
    other = EvalTransform(image_size=8, key="thumb")({"thumb": image}, None)
    assert other["thumb"].shape == (3, 8, 8)


def test_a_record_without_the_field_names_what_it_has(image):
    with pytest.raises(
        KeyError, match=r"TrainTransform: the record has no 'image' field; it has \['caption'\]"
    ):
        TrainTransform()({"caption": "x"}, 0)
    with pytest.raises(TypeError, match=r"call \.apply\(image, rng\)"):
        TrainTransform()(image, 0)


def test_compose_draws_every_step_from_one_generator(image):
    both = Compose([TrainTransform(image_size=16, key="a"), TrainTransform(image_size=16, key="b")])
    out = both({"a": image, "b": image}, 7)
    rng = np.random.default_rng(7)
    first = TrainTransform(image_size=16).apply(image, rng)
    second = TrainTransform(image_size=16).apply(image, rng)  # continues the same stream
    assert torch.equal(out["a"], first) and torch.equal(out["b"], second)
