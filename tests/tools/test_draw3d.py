"""3D boxes: rotation conventions, projection against hand-computed values, near-plane clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from glmkit.tools.draw3d import (
    BOX_EDGES,
    Draw3DBoundingBoxesTool,
    Intrinsics,
    axis_rotation,
    box_corners,
    project,
    projected_edges,
    rotation_matrix,
)

RED = (255, 0, 0)
WHITE = (255, 255, 255)
CAMERA = {"fx": 100.0, "fy": 100.0, "cx": 100.0, "cy": 100.0}


@pytest.fixture
def square(context):
    context.images["sq"] = Image.new("RGB", (200, 200), WHITE)
    return context


def test_twelve_edges_each_joining_corners_that_differ_on_one_axis():
    assert len(BOX_EDGES) == 12
    assert all(bin(i ^ j).count("1") == 1 for i, j in BOX_EDGES)


def test_projection_of_an_axis_aligned_cube_matches_hand_computation():
    # cube of side 2 centred 5 m ahead: front face z = 4, back face z = 6
    uv = project(box_corners([0, 0, 5, 2, 2, 2, 0, 0, 0]), Intrinsics(**CAMERA))
    expected = {
        (-1, -1, 4): (75, 75), (1, 1, 4): (125, 125), (-1, 1, 4): (75, 125), (1, -1, 4): (125, 75),
        (-1, -1, 6): (100 - 100 / 6, 100 - 100 / 6), (1, 1, 6): (100 + 100 / 6, 100 + 100 / 6),
    }  # fmt: skip
    corners = box_corners([0, 0, 5, 2, 2, 2, 0, 0, 0])
    for corner, (u, v) in zip(corners, uv, strict=True):
        key = tuple(int(round(c)) for c in corner)
        if key in expected:
            assert (u, v) == pytest.approx(expected[key])


def test_drawn_pixels_sit_on_the_projected_edges(square):
    args = {"image": "sq", "boxes": [{"bbox_3d": [0, 0, 5, 2, 2, 2, 0, 0, 0], "color": "red"}],
            "intrinsics": CAMERA, "line_width": 1}  # fmt: skip
    result = Draw3DBoundingBoxesTool()(args, square)
    assert result.ok, result.error
    out = result.images[0]
    for x, y in [(75, 75), (125, 125), (100, 75), (75, 100), (100, 83), (117, 100), (79, 79)]:
        assert out.getpixel((x, y)) == RED, (x, y)
    for x, y in [(100, 100), (100, 90), (60, 60), (140, 100)]:
        assert out.getpixel((x, y)) == WHITE, (x, y)
    assert result.data["boxes"][0]["visible_corners"] == 8
    assert result.data["boxes"][0]["norm1000_box"] == [375, 375, 630, 630]


def test_axis_rotations_are_right_handed():
    assert axis_rotation("y", math.pi / 2) @ np.array([1.0, 0, 0]) == pytest.approx([0, 0, -1])
    assert axis_rotation("z", math.pi / 2) @ np.array([1.0, 0, 0]) == pytest.approx([0, 1, 0])
    assert axis_rotation("x", math.pi / 2) @ np.array([0.0, 1, 0]) == pytest.approx([0, 0, 1])


def test_default_order_is_rz_ry_rx_and_the_order_is_a_parameter():
    rx, ry, rz = 0.3, -0.7, 1.1
    expected = axis_rotation("z", rz) @ axis_rotation("y", ry) @ axis_rotation("x", rx)
    assert rotation_matrix([rx, ry, rz]) == pytest.approx(expected)
    other = axis_rotation("x", rx) @ axis_rotation("y", ry) @ axis_rotation("z", rz)
    assert rotation_matrix([rx, ry, rz], order="xyz") == pytest.approx(other)
    assert not np.allclose(expected, other)


def test_angle_units_agree():
    radians = rotation_matrix([0.2, math.pi / 2, -0.4])
    assert rotation_matrix([0.2 / math.pi, 0.5, -0.4 / math.pi], unit="pi") == pytest.approx(radians)
    assert rotation_matrix([math.degrees(0.2), 90, math.degrees(-0.4)], unit="degrees") == pytest.approx(
        radians
    )


def test_yaw_of_a_quarter_turn_swaps_the_x_and_z_extents():
    corners = box_corners([0, 0, 10, 4, 1, 2, 0, math.pi / 2, 0])
    extents = corners.max(axis=0) - corners.min(axis=0)
    assert extents == pytest.approx([2, 1, 4])


def test_fallback_intrinsics_follow_a_60_degree_field_of_view(context):
    cam = Intrinsics.from_fov((200, 100))
    assert cam.fx == pytest.approx(200 / (2 * math.tan(math.radians(30))))
    assert cam.fy == pytest.approx(100 / (2 * math.tan(math.radians(30))))
    assert (cam.cx, cam.cy) == (100, 50)
    result = Draw3DBoundingBoxesTool()(
        {"image": "img_0", "boxes": [{"bbox_3d": [0, 0, 5, 1, 1, 1, 0, 0, 0]}]}, context
    )
    assert result.data["intrinsics"]["fx"] == pytest.approx(cam.fx)
    assert "assumed from a 60 degree field of view" in result.text


def test_box_straddling_the_camera_is_clipped_not_dropped(square):
    corners = box_corners([0, 0, 0.5, 1, 1, 2, 0, 0, 0])  # z from -0.5 to 1.5
    edges = projected_edges(corners, Intrinsics(**CAMERA), near=0.05)
    assert len(edges) == 8  # 4 far-face edges + 4 edges cut at the near plane
    args = {"image": "sq", "boxes": [{"bbox_3d": [0, 0, 0.5, 1, 1, 2, 0, 0, 0], "color": "red", "label": "crate"}],
            "intrinsics": CAMERA, "line_width": 1}  # fmt: skip
    result = Draw3DBoundingBoxesTool()(args, square)
    assert result.ok and result.data["boxes"][0]["visible_corners"] == 4
    # far face at z = 1.5: corner (0.5, 0.5) -> (133.3, 133.3)
    assert result.images[0].getpixel((133, 133)) == RED
    assert "4/8 corners" in result.text


def test_box_behind_the_camera_is_reported_not_drawn(square):
    args = {
        "image": "sq",
        "boxes": [{"bbox_3d": [0, 0, -5, 1, 1, 1, 0, 0, 0], "label": "ghost"}],
        "intrinsics": CAMERA,
    }
    result = Draw3DBoundingBoxesTool()(args, square)
    assert result.ok and "ghost: not visible" in result.text
    assert np.all(np.asarray(result.images[0]) == 255)


@pytest.mark.parametrize(
    ("box", "match"),
    [
        ([0, 0, 5, 1, -1, 1, 0, 0, 0], "sizes must be positive"),
        ([0, 0, 5, 1, 1, 1, 0, 0], "bbox_3d"),
    ],
)
def test_invalid_boxes(square, box, match):
    result = Draw3DBoundingBoxesTool()({"image": "sq", "boxes": [{"bbox_3d": box}]}, square)
    assert not result.ok and match in result.error
