"""2D drawing tools: golden pixels after the 0-1000 conversion."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image, ImageChops

from glmkit.tools.drawing import (
    DrawBoundingBoxesTool,
    DrawGeometryTool,
    DrawPointMarkersTool,
    assign_colors,
    clip_segment,
    distinct_colors,
)

WHITE = (255, 255, 255)
RED = (255, 0, 0)


def px(image: Image.Image, x: int, y: int) -> tuple[int, int, int]:
    return image.getpixel((x, y))  # type: ignore[return-value]


# ---- colours ---------------------------------------------------------------------------------


def test_distinct_colors_are_distinct_and_deterministic():
    colors = distinct_colors(40)
    assert len(set(colors)) == 40
    assert colors == distinct_colors(40)
    assert distinct_colors(3) == colors[:3]


def test_assign_colors_shares_per_label_and_avoids_explicit_ones():
    first = distinct_colors(1)[0]
    colors = assign_colors(["a", "b", "a", None], [None, None, None, "#{:02x}{:02x}{:02x}".format(*first)])
    assert colors[0] == colors[2] != colors[1]
    assert colors[3] == first and colors[0] != first  # an explicit colour is not reused automatically


# ---- bounding boxes --------------------------------------------------------------------------


def test_box_edges_land_on_the_converted_pixels(context):
    # img_1 is 100 x 100 white; [100, 200, 600, 800] -> pixels (10, 20)-(60, 80)
    args = {"image": "img_1", "boxes": [{"bbox": [100, 200, 600, 800], "color": "red"}], "line_width": 1}
    result = DrawBoundingBoxesTool()(args, context)
    assert result.ok, result.error
    out = result.images[0]
    assert result.data["pixel_boxes"] == [[10, 20, 60, 80]]
    for x, y in [(10, 50), (60, 50), (35, 20), (35, 80), (10, 20), (60, 80)]:
        assert px(out, x, y) == RED, (x, y)
    for x, y in [(9, 50), (11, 50), (59, 50), (61, 50), (35, 19), (35, 21), (35, 79), (35, 81)]:
        assert px(out, x, y) == WHITE, (x, y)


def test_line_width_grows_inwards(context):
    args = {"image": "img_1", "boxes": [{"bbox": [100, 200, 600, 800], "color": "red"}], "line_width": 3}
    out = DrawBoundingBoxesTool()(args, context).images[0]
    assert [px(out, x, 50) for x in range(9, 14)] == [WHITE, RED, RED, RED, WHITE]


def test_pixel_space_boxes(context):
    args = {
        "image": "img_1",
        "boxes": [{"bbox": [5, 5, 30, 40], "color": "#0000ff"}],
        "coord_space": "pixels",
        "line_width": 1,
    }
    out = DrawBoundingBoxesTool()(args, context).images[0]
    assert px(out, 5, 20) == (0, 0, 255) and px(out, 30, 20) == (0, 0, 255) and px(out, 31, 20) == WHITE


def test_auto_colours_differ_and_labels_are_drawn(context):
    args = {
        "image": "img_1",
        "boxes": [
            {"bbox": [100, 300, 400, 600], "label": "cat"},
            {"bbox": [500, 300, 900, 600], "label": "dog"},
        ],
        "line_width": 1,
    }
    result = DrawBoundingBoxesTool()(args, context)
    out = result.images[0]
    c0, c1 = px(out, 10, 45), px(out, 50, 45)
    assert c0 != c1 and WHITE not in (c0, c1)
    assert [tuple(c) for c in result.data["colors"]] == [c0, c1]
    tag = np.asarray(out.crop((10, 0, 40, 30)))  # the label tag sits above the box's top-left corner
    assert (np.all(tag == np.array(c0), axis=-1)).sum() > 20
    assert "cat" in result.text and "dog" in result.text


def test_drawing_leaves_the_original_untouched(context):
    before = context.images["img_1"].copy()
    DrawBoundingBoxesTool()({"image": "img_1", "boxes": [{"bbox": [0, 0, 500, 500]}]}, context)
    assert ImageChops.difference(before, context.images["img_1"]).getbbox() is None


def test_bad_colour_and_bad_box_are_reported(context):
    bad_colour = {"image": "img_1", "boxes": [{"bbox": [0, 0, 10, 10], "color": "blurple"}]}
    result = DrawBoundingBoxesTool()(bad_colour, context)
    assert not result.ok and "blurple" in result.error and "#ff8800" in result.error
    bad_box = {"image": "img_1", "boxes": [{"bbox": [0, 0, 10, 10]}, {"bbox": [0, 50, 10, 40]}]}
    result = DrawBoundingBoxesTool()(bad_box, context)
    assert not result.ok and "boxes[1].bbox" in result.error


# ---- points ----------------------------------------------------------------------------------


def test_point_marker_centre_and_extent(context):
    args = {"image": "img_1", "points": [{"point": [500, 500], "color": "red"}], "radius": 5}
    result = DrawPointMarkersTool()(args, context)
    out = result.images[0]
    assert result.data["pixel_points"] == [[50, 50]]
    assert px(out, 50, 50) == RED and px(out, 52, 50) == RED
    assert px(out, 50, 57) == WHITE and px(out, 57, 50) == WHITE


def test_point_at_1000_is_clamped_into_the_image(context):
    args = {"image": "img_1", "points": [{"point": [1000, 1000], "color": "red"}], "radius": 2}
    out = DrawPointMarkersTool()(args, context).images[0]
    assert px(out, 99, 99) == RED


def test_cross_markers(context):
    args = {"image": "img_1", "points": [{"point": [50, 50], "color": "red"}], "coord_space": "pixels",
            "radius": 6, "shape": "cross"}  # fmt: skip
    out = DrawPointMarkersTool()(args, context).images[0]
    assert px(out, 50, 44) == RED and px(out, 56, 50) == RED and px(out, 50, 50) == RED
    assert px(out, 55, 55) == WHITE


# ---- geometry --------------------------------------------------------------------------------


def draw(context, shapes, **extra):
    result = DrawGeometryTool()({"image": "img_1", "shapes": shapes, **extra}, context)
    assert result.ok, result.error
    return result.images[0]


def test_line_pixels(context):
    out = draw(context, [{"type": "line", "points": [[100, 500], [900, 500]], "color": "red", "width": 1}])
    assert all(px(out, x, 50) == RED for x in range(10, 91))
    assert px(out, 9, 50) == WHITE and px(out, 91, 50) == WHITE and px(out, 50, 49) == WHITE


def test_polygon_is_closed_and_fill_is_translucent(context):
    triangle = [[100, 100], [900, 100], [900, 900]]
    out = draw(context, [{"type": "polygon", "points": triangle, "color": "red", "width": 1}])
    assert px(out, 50, 50) == RED  # on the closing edge (90, 90) -> (10, 10)
    assert px(out, 80, 20) == WHITE  # inside, unfilled
    filled = draw(
        context, [{"type": "polygon", "points": triangle, "color": "red", "width": 1, "fill": True}]
    )
    r, g, b = px(filled, 80, 20)
    assert r == 255 and g == b and 150 < g < 170  # 255 * (1 - 96/255) = 159


def test_polyline_is_open(context):
    out = draw(
        context,
        [{"type": "polyline", "points": [[100, 100], [900, 100], [900, 900]], "color": "red", "width": 1}],
    )
    assert px(out, 50, 10) == RED and px(out, 90, 50) == RED
    assert px(out, 50, 50) == WHITE  # no closing edge


def test_circle_radius_is_measured_along_x(context):
    out = draw(
        context, [{"type": "circle", "points": [[500, 500]], "radius": 200, "color": "red", "width": 1}]
    )
    assert px(out, 70, 50) == RED and px(out, 30, 50) == RED and px(out, 50, 30) == RED
    assert px(out, 50, 50) == WHITE and px(out, 72, 50) == WHITE


def test_arrow_head_points_at_the_second_point(context):
    out = draw(context, [{"type": "arrow", "points": [[100, 500], [900, 500]], "color": "red", "width": 1}])
    assert px(out, 90, 50) == RED and px(out, 85, 52) == RED and px(out, 85, 48) == RED
    assert px(out, 85, 56) == WHITE and px(out, 15, 52) == WHITE  # the head is at the tip only


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ({"type": "line", "points": [[0, 0], [1, 1], [2, 2]]}, "exactly 2"),
        ({"type": "polygon", "points": [[0, 0], [1, 1]]}, "at least 3"),
        ({"type": "circle", "points": [[5, 5]]}, "needs a radius"),
        ({"type": "line", "points": [[0, 0], [1, 1]], "radius": 3}, "circles only"),
        ({"type": "line", "points": [[0, 0], [1001, 1]]}, r"shapes\[0\].points\[1\]"),
    ],
)
def test_geometry_semantic_errors(context, shape, match):
    result = DrawGeometryTool()({"image": "img_1", "shapes": [shape]}, context)
    assert not result.ok
    assert re.search(match, result.error), result.error


def test_clip_segment():
    assert clip_segment((-50, 5), (50, 5), (10, 10), margin=0) == ((0.0, 5.0), (9.0, 5.0))
    assert clip_segment((-50, -5), (50, -5), (10, 10), margin=0) is None
    assert clip_segment((2, 2), (3, 3), (10, 10)) == ((2, 2), (3, 3))


def test_summaries_use_singular_and_plural(context):
    box = {"bbox": [100, 100, 400, 400]}
    one = DrawBoundingBoxesTool()({"image": "img_1", "boxes": [box]}, context)
    assert one.text.startswith("Drew 1 box on img_1")
    two = DrawBoundingBoxesTool()({"image": "img_1", "boxes": [box, box]}, context)
    assert two.text.startswith("Drew 2 boxes on img_1")
    points = DrawPointMarkersTool()({"image": "img_1", "points": [{"point": [5, 5]}] * 2}, context)
    assert points.text.startswith("Drew 2 points on img_1")
