"""crop_image: crops equal PIL crops of the converted pixel box."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageChops

from glmkit.tools.image import CropImageTool, grow_region


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and ImageChops.difference(a.convert("RGB"), b.convert("RGB")).getbbox() is None


def test_crop_norm1000_equals_pil_crop_of_the_pixel_box(context):
    source = context.images["img_0"]  # 200 x 100
    result = CropImageTool()({"image": "img_0", "bbox": [100, 200, 600, 900]}, context)
    assert result.ok, result.error
    assert result.data["pixel_box"] == [20, 20, 120, 90]
    assert same(result.images[0], source.crop((20, 20, 120, 90)))


def test_crop_in_pixels(context):
    source = context.images["img_0"]
    result = CropImageTool()({"image": "img_0", "bbox": [30, 10, 90, 70], "coord_space": "pixels"}, context)
    assert same(result.images[0], source.crop((30, 10, 90, 70)))
    assert result.data["norm1000_box"] == [150, 100, 450, 700]


def test_crop_is_stored_as_a_new_image_and_the_original_is_untouched(context):
    before = context.images["img_0"].copy()
    result = CropImageTool()({"image": "img_0", "bbox": [0, 0, 500, 500]}, context)
    assert result.image_ids == ["img_2"]
    assert context.images["img_2"] is result.images[0]
    assert same(context.images["img_0"], before)
    assert "img_2" in result.to_text()


def test_zoom_enlarges_by_the_factor(context):
    result = CropImageTool()({"image": "img_0", "bbox": [0, 0, 500, 500], "zoom": 3}, context)
    assert result.images[0].size == (300, 150)
    assert "x3.00" in result.text


def test_min_side_upscales_the_shorter_side(context):
    result = CropImageTool()({"image": "img_0", "bbox": [0, 0, 500, 500], "min_side": 500}, context)
    assert min(result.images[0].size) == 500
    assert result.images[0].size == (1000, 500)


def test_output_size_is_capped(context):
    result = CropImageTool(max_output_pixels=100 * 50 * 4)(
        {"image": "img_0", "bbox": [0, 0, 500, 500], "zoom": 8}, context
    )
    w, h = result.images[0].size
    assert w * h <= 100 * 50 * 4 + 300 and "capped" in result.text


def test_tiny_box_grows_about_its_centre_to_the_minimum(context):
    args = {"image": "img_0", "bbox": [100, 50, 102, 52], "coord_space": "pixels"}
    result = CropImageTool(min_crop_px=28)(args, context)
    left, top, right, bottom = result.data["pixel_box"]
    assert (right - left, bottom - top) == (28, 28)
    assert (left + right) / 2 == 101 and (top + bottom) / 2 == 51
    assert same(result.images[0], context.images["img_0"].crop((left, top, right, bottom)))


def test_grown_box_is_shifted_inside_the_image():
    assert grow_region((0, 0, 2, 2), (200, 100), 28) == (0, 0, 28, 28)
    assert grow_region((198, 98, 200, 100), (200, 100), 28) == (172, 72, 200, 100)
    assert grow_region((0, 0, 5, 5), (10, 10), 28) == (0, 0, 10, 10)  # image smaller than the minimum


def test_inverted_box_is_an_error_the_model_can_read(context):
    result = CropImageTool()({"image": "img_0", "bbox": [600, 0, 500, 100]}, context)
    assert not result.ok and "x1 (600) must be less than x2 (500)" in result.error


def test_unknown_image_id_lists_the_known_ones(context):
    result = CropImageTool()({"image": "img_9", "bbox": [0, 0, 10, 10]}, context)
    assert not result.ok and "img_0, img_1" in result.error


def test_palette_images_come_back_as_rgb(context):
    context.images["pal"] = Image.new("P", (50, 50), 3)
    result = CropImageTool()({"image": "pal", "bbox": [0, 0, 1000, 1000]}, context)
    assert result.images[0].mode == "RGB"
    assert np.asarray(result.images[0]).shape == (50, 50, 3)
