"""Coordinate spaces: 0-1000 normalised (GLM-V) and pixels."""

from __future__ import annotations

import math
import random

import pytest

from glmkit.tools.base import ToolError
from glmkit.tools.coords import (
    box_to_pixels,
    box_to_region,
    check_space,
    length_to_pixels,
    pixels_to_norm1000,
    point_to_pixels,
    to_pixel_coord,
    validate_box,
)


def test_norm1000_point_maps_by_width_and_height():
    assert point_to_pixels([500, 500], (200, 100)) == (100, 50)
    assert point_to_pixels([250, 100], (640, 480)) == (160, 48)


def test_1000_clamps_to_last_pixel_and_0_to_first():
    assert point_to_pixels([1000, 1000], (200, 100)) == (199, 99)
    assert point_to_pixels([0, 0], (200, 100)) == (0, 0)


def test_halves_round_up_not_to_even():
    # 2.5 and 3.5 both round up (Python's round would give 2 and 4).
    assert to_pixel_coord(250, 10) == 3  # 2.5 -> 3
    assert to_pixel_coord(350, 10) == 4  # 3.5 -> 4
    assert to_pixel_coord(2.5, 10, "pixels") == 3


def test_pixel_space_passes_through_and_clamps():
    assert point_to_pixels([17, 42], (200, 100), "pixels") == (17, 42)
    assert point_to_pixels([200, 100], (200, 100), "pixels") == (199, 99)


@pytest.mark.parametrize(
    ("point", "space", "match"),
    [
        ([1001, 5], "norm1000", "coord_space='pixels'"),
        ([-1, 5], "norm1000", "out of range"),
        ([5, 201], "pixels", "0..100"),
        ([math.nan, 5], "norm1000", "finite"),
    ],
)
def test_out_of_range_points_are_refused_with_a_hint(point, space, match):
    with pytest.raises(ToolError, match=match):
        point_to_pixels(point, (200, 100), space)


def test_unknown_space_is_refused():
    with pytest.raises(ToolError, match="norm1000, pixels"):
        check_space("relative")


def test_box_order_is_checked():
    with pytest.raises(ToolError, match=r"x1 \(600\) must be less than x2 \(500\)"):
        validate_box([600, 0, 500, 10], (100, 100))
    with pytest.raises(ToolError, match="y1"):
        validate_box([0, 10, 5, 10], (100, 100))
    with pytest.raises(ToolError, match=r"\[x1, y1, x2, y2\]"):
        validate_box([0, 1, 2], (100, 100))


def test_box_corners_for_drawing():
    assert box_to_pixels([100, 200, 500, 1000], (200, 100)) == (20, 20, 100, 99)


def test_region_covers_every_touched_pixel():
    # 0.5 * 3 = 1.5 .. 2.5 touches pixels 1 and 2 -> [1, 3)
    assert box_to_region([500, 500, 833.3, 833.3], (3, 3)) == (1, 1, 3, 3)
    assert box_to_region([0, 0, 1000, 1000], (640, 480)) == (0, 0, 640, 480)
    assert box_to_region([10.2, 3.7, 20.1, 9.0], (100, 100), "pixels") == (10, 3, 21, 9)


def test_region_is_never_empty():
    assert box_to_region([500, 500, 500.1, 500.1], (10, 10)) == (5, 5, 6, 6)
    assert box_to_region([999.9, 999.9, 1000, 1000], (10, 10)) == (9, 9, 10, 10)


def test_region_contains_the_continuous_box_property():
    rng = random.Random(0)
    for _ in range(500):
        w, h = rng.randint(1, 3000), rng.randint(1, 3000)
        x1, x2 = sorted(rng.sample(range(1001), 2))
        y1, y2 = sorted(rng.sample(range(1001), 2))
        left, top, right, bottom = box_to_region([x1, y1, x2, y2], (w, h))
        assert 0 <= left < right <= w and 0 <= top < bottom <= h
        assert left <= x1 * w / 1000 + 1e-6 and right >= min(x2 * w / 1000, w) - 1e-6
        assert top <= y1 * h / 1000 + 1e-6 and bottom >= min(y2 * h / 1000, h) - 1e-6
        # and it is tight: at most one pixel of slack on each side
        assert x1 * w / 1000 - left < 1 and right - x2 * w / 1000 < 1


def test_norm1000_round_trip_within_half_a_unit_of_resolution():
    rng = random.Random(1)
    for _ in range(300):
        w, h = rng.randint(10, 4000), rng.randint(10, 4000)
        x, y = rng.randrange(w), rng.randrange(h)
        nx, ny = pixels_to_norm1000((x, y), (w, h))
        px, py = point_to_pixels([nx, ny], (w, h))
        # one norm unit spans w/1000 pixels; rounding twice loses at most that plus one pixel
        assert abs(px - x) <= w / 1000 + 1 and abs(py - y) <= h / 1000 + 1


def test_lengths_scale_with_the_axis():
    assert length_to_pixels(100, 640) == pytest.approx(64)
    assert length_to_pixels(7, 640, "pixels") == 7
    with pytest.raises(ToolError, match="positive"):
        length_to_pixels(0, 640)
