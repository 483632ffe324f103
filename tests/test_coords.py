"""glmkit.coords: the one 0-1000 <-> pixel conversion, and the three layers that now share it (the
model processor's training targets, the image tools, the grounding metric)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from glmkit import coords
from glmkit.coords import (
    box_from_norm1000,
    box_to_norm1000,
    from_pixels,
    norm1000_from_pixel,
    pixel_index,
    point_from_norm1000,
    point_to_norm1000,
    round_half_up,
    to_pixels,
)


def test_imports_without_torch() -> None:
    code = "import sys, glmkit.coords; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_rounding_is_half_up_on_the_exact_value() -> None:
    assert [round_half_up(v) for v in (2.5, 3.5, -2.5, 2.4999)] == [3, 4, -2, 2]
    # 201 / 400 * 1000 is 502.49999999999994 in floating point; the exact value is 502.5
    assert 201 / 400 * 1000 < 502.5 and norm1000_from_pixel(201, 400) == 503
    assert norm1000_from_pixel(-3, 640) == 0 and norm1000_from_pixel(700, 640) == 1000  # clamped
    # 750 * (18 / 1000) is 13.499999999999998; 750 * 18 / 1000 is 13.5
    assert pixel_index(750, 18) == 14
    assert pixel_index(1000, 200) == 199 and pixel_index(0, 200) == 0  # 1000 maps to W: the last pixel


def test_spaces() -> None:
    assert to_pixels(500, 640) == 320.0 and from_pixels(320, 640) == 500.0
    assert to_pixels(0.25, 640, "norm1") == 160.0 and from_pixels(160, 640, "norm1") == 0.25
    assert to_pixels(17.5, 640, "pixels") == 17.5 == from_pixels(17.5, 640, "pixels")
    assert pixel_index(2.5, 10, "pixels") == 3
    with pytest.raises(ValueError, match="valid: norm1000, norm1, pixels"):
        to_pixels(1, 10, "norm100")


def test_points_and_boxes() -> None:
    size = (640, 480)
    assert box_to_norm1000((64, 48, 320, 480), size) == [100, 100, 500, 1000]
    assert box_from_norm1000([100, 100, 500, 1000], size) == (64.0, 48.0, 320.0, 480.0)
    assert point_to_norm1000((0.5, 479.9), size) == [1, 1000]
    assert point_from_norm1000([500, 500], size) == (320.0, 240.0)
    with pytest.raises(ValueError, match="x1 <= x2"):
        box_to_norm1000((30, 0, 10, 5), size)
    with pytest.raises(ValueError, match="outside 0..1000"):
        point_from_norm1000([1001, 0], size)
    with pytest.raises(ValueError, match=r"image size must be \(width, height\) >= 1"):
        point_to_norm1000((1, 1), (0, 5))


def test_round_trip_within_half_a_unit() -> None:
    for width in (1, 7, 400, 641, 1999, 4096):
        for x in range(0, width + 1, max(1, width // 97)):
            back = to_pixels(norm1000_from_pixel(x, width), width)
            assert abs(back - x) <= 0.5 * width / 1000 + 1e-9


def test_every_layer_converts_through_glmkit_coords() -> None:
    from glmkit.eval.metrics.grounding import format_glm_box
    from glmkit.eval.metrics.grounding import from_pixels as grounding_from_pixels
    from glmkit.eval.metrics.grounding import to_pixels as grounding_to_pixels
    from glmkit.models import vlm_processor
    from glmkit.tools import coords as tool_coords

    # the processor's public names are the shared functions
    for name in ("box_to_norm1000", "box_from_norm1000", "point_to_norm1000", "point_from_norm1000"):
        assert getattr(vlm_processor, name) is getattr(coords, name)
    for size in ((640, 480), (400, 400), (18, 145), (1999, 3)):
        width, height = size
        for box in ((0, 0, width, height), (201 * width / 400, 0.5, width * 0.75, height - 0.5)):
            target = vlm_processor.format_boxes([vlm_processor.box_to_norm1000(box, size)])
            # the grounding oracle writes the very answer the processor trains on
            assert format_glm_box(grounding_from_pixels(box, "norm1000", size)) == target
            corners = [
                tool_coords.pixels_to_norm1000(box[:2], size),
                tool_coords.pixels_to_norm1000(box[2:], size),
            ]
            assert [*corners[0], *corners[1]] == vlm_processor.box_to_norm1000(box, size)
        for v in (0, 1, 250, 333, 500, 750, 999, 1000):
            assert grounding_to_pixels((v, v, v, v), "norm1000", size)[:2] == point_from_norm1000(
                (v, v), size
            )
            assert tool_coords.point_to_pixels([v, v], size) == (
                pixel_index(v, width),
                pixel_index(v, height),
            )
