"""2D drawing tools: bounding boxes, point markers and geometry (GLM-5V report section 3.1).

Each tool draws on a copy of the referenced image (the original is never changed) and returns
the drawing as a new image, so the model can check its own grounding visually. Lines are drawn
without anti-aliasing so that a box edge lands on exactly the pixels the coordinate conversion
in :mod:`glmkit.tools.coords` gives; the tests rely on that.

Colours: each item may name a colour (CSS name or ``#rrggbb``); otherwise items get distinct
colours from :func:`distinct_colors` in order, and items sharing a label share a colour.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageColor, ImageDraw, ImageFont

from glmkit.tools.base import IMAGE_ID_SCHEMA, TOOLS, Tool, ToolContext, ToolError, ToolResult, object_schema
from glmkit.tools.coords import (
    BOX_SCHEMA,
    COORD_SPACE_SCHEMA,
    POINT_SCHEMA,
    CoordSpace,
    box_to_pixels,
    check_space,
    length_to_pixels,
    point_to_pixels,
)

RGB = tuple[int, int, int]

# Twelve well-separated colours first; beyond them hues follow the golden ratio.
_BASE_PALETTE: tuple[RGB, ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (0, 128, 128),
    (255, 225, 25),
    (170, 110, 40),
    (128, 0, 0),
)

COLOR_SCHEMA: dict[str, Any] = {
    "type": "string",
    "maxLength": 32,
    "description": 'Colour as a CSS name ("red") or hex ("#ff0000"); omitted: a distinct colour is chosen.',
}
LABEL_SCHEMA: dict[str, Any] = {
    "type": "string",
    "maxLength": 200,
    "description": "Text drawn next to the item.",
}
LINE_WIDTH_SCHEMA: dict[str, Any] = {
    "type": "integer",
    "minimum": 1,
    "maximum": 50,
    "description": "Line width in pixels (default: scaled to the image size).",
}


def distinct_colors(n: int) -> list[RGB]:
    """``n`` deterministic, mutually distinct RGB colours (the first twelve hand-picked)."""
    colors = list(_BASE_PALETTE[:n])
    golden = 0.618033988749895
    hue = 0.11
    while len(colors) < n:
        hue = (hue + golden) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
        candidate = (round(r * 255), round(g * 255), round(b * 255))
        if candidate not in colors:
            colors.append(candidate)
    return colors


def parse_color(value: str, *, name: str = "color") -> RGB:
    """An RGB triple from a CSS colour name or hex string; a clear error otherwise."""
    try:
        rgb = ImageColor.getrgb(value)
    except (ValueError, AttributeError):
        raise ToolError(
            f"{name} {value!r} is not a colour; use a CSS name such as 'red' or a hex value such as '#ff8800'"
        ) from None
    return rgb[0], rgb[1], rgb[2]


def assign_colors(labels: Sequence[str | None], explicit: Sequence[str | None]) -> list[RGB]:
    """Colours per item: explicit ones parsed, the rest distinct, one colour per distinct label."""
    used = {parse_color(c, name=f"item {i} color") for i, c in enumerate(explicit) if c}
    palette = iter([c for c in distinct_colors(len(labels) + len(used)) if c not in used])
    by_label: dict[str, RGB] = {}
    out: list[RGB] = []
    for i, (label, color) in enumerate(zip(labels, explicit, strict=True)):
        if color:
            rgb = parse_color(color, name=f"item {i} color")
        elif label and label in by_label:
            rgb = by_label[label]
        else:
            rgb = next(palette)
        if label:
            by_label.setdefault(label, rgb)
        out.append(rgb)
    return out


def rgb_canvas(image: Image.Image) -> Image.Image:
    """An RGB copy of ``image`` to draw on (the stored original stays untouched)."""
    return image.convert("RGB") if image.mode != "RGB" else image.copy()


def default_line_width(size: tuple[int, int]) -> int:
    """A line width that stays visible after the model's resize: about 0.4 % of the shorter side."""
    return max(2, round(min(size) / 250))


def font_for(size: tuple[int, int]) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A label font scaled to the image: about 3 % of the shorter side, at least 10 px.

    The font comes from glmkit's one font lookup, :func:`glmkit.data.fonts.load_font`.
    """
    # Imported here, not at the top: glmkit.data's package imports torch, which the tool chain must
    # not load just to be imported (tests/agent/test_imports.py).
    from glmkit.data.fonts import load_font

    return load_font(max(10, min(40, round(min(size) * 0.03))))


def contrast_text(rgb: RGB) -> RGB:
    """Black or white, whichever reads better on ``rgb`` (ITU-R BT.601 luma)."""
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


def draw_label(
    draw: ImageDraw.ImageDraw,
    anchor: tuple[float, float],
    text: str,
    color: RGB,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    image_size: tuple[int, int],
    *,
    above: bool = True,
) -> None:
    """Draw ``text`` on a filled tag of ``color`` at ``anchor`` (above it when there is room)."""
    if not text:
        return
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    tw, th = right - left + 4, bottom - top + 4
    x = min(max(int(anchor[0]), 0), max(image_size[0] - tw, 0))
    y = int(anchor[1]) - th if above and anchor[1] - th >= 0 else int(anchor[1])
    y = min(max(y, 0), max(image_size[1] - th, 0))
    draw.rectangle([x, y, x + tw - 1, y + th - 1], fill=color)
    draw.text((x + 2 - left, y + 2 - top), text, fill=contrast_text(color), font=font)


def clip_segment(
    p: tuple[float, float], q: tuple[float, float], size: tuple[int, int], margin: float = 1.0
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Liang-Barsky clip of segment ``pq`` to the image (plus ``margin``); None when outside.

    Projected 3D edges can reach millions of pixels off-image; clipping first keeps drawing cheap.
    """
    xmin, ymin, xmax, ymax = -margin, -margin, size[0] - 1 + margin, size[1] - 1 + margin
    dx, dy = q[0] - p[0], q[1] - p[1]
    t0, t1 = 0.0, 1.0
    for denom, num in ((-dx, p[0] - xmin), (dx, xmax - p[0]), (-dy, p[1] - ymin), (dy, ymax - p[1])):
        if denom == 0:
            if num < 0:
                return None
            continue
        t = num / denom
        if denom < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return None
    return (p[0] + t0 * dx, p[1] + t0 * dy), (p[0] + t1 * dx, p[1] + t1 * dy)


def _item_fields(items: list[dict[str, Any]]) -> tuple[list[str | None], list[str | None]]:
    return [it.get("label") or None for it in items], [it.get("color") or None for it in items]


def _summary(kind: str, n: int, image: str, labels: Sequence[str | None], plural: str | None = None) -> str:
    named = [lab for lab in labels if lab]
    text = f"Drew {n} {kind if n == 1 else plural or kind + 's'} on {image}"
    return text + (f" (labels: {', '.join(dict.fromkeys(named))})" if named else "")


@TOOLS.register("draw_image_bounding_boxes")
class DrawBoundingBoxesTool(Tool):
    """Draw labelled rectangles on an image."""

    name = "draw_image_bounding_boxes"
    description = (
        "Draw bounding boxes (with optional labels and colours) on an image and return the annotated "
        "image. Boxes are [x1, y1, x2, y2], integers 0-1000 relative to the image size unless "
        'coord_space is "pixels".'
    )
    parameters = object_schema(
        {
            "image": IMAGE_ID_SCHEMA,
            "boxes": {
                "type": "array",
                "minItems": 1,
                "maxItems": 200,
                "items": object_schema(
                    {"bbox": BOX_SCHEMA, "label": LABEL_SCHEMA, "color": COLOR_SCHEMA}, required=("bbox",)
                ),
            },
            "coord_space": COORD_SPACE_SCHEMA,
            "line_width": LINE_WIDTH_SCHEMA,
        },
        required=("image", "boxes"),
    )

    def run(
        self,
        context: ToolContext,
        image: str,
        boxes: list[dict[str, Any]],
        coord_space: CoordSpace = "norm1000",
        line_width: int | None = None,
        **_: Any,
    ) -> ToolResult:
        """Draw every box of ``boxes`` on a copy of ``image``."""
        canvas = rgb_canvas(context.get_image(image))
        size = canvas.size
        pixel_boxes = [
            box_to_pixels(b["bbox"], size, coord_space, name=f"boxes[{i}].bbox") for i, b in enumerate(boxes)
        ]
        labels, explicit = _item_fields(boxes)
        colors = assign_colors(labels, explicit)
        width = int(line_width) if line_width else default_line_width(size)
        draw = ImageDraw.Draw(canvas)
        for box, color in zip(pixel_boxes, colors, strict=True):
            draw.rectangle(box, outline=color, width=width)
        font = font_for(size)
        for box, color, label in zip(pixel_boxes, colors, labels, strict=True):
            draw_label(draw, (box[0], box[1]), label or "", color, font, size)
        return ToolResult(
            text=_summary("box", len(boxes), image, labels, plural="boxes"),
            images=[canvas],
            data={"pixel_boxes": [list(b) for b in pixel_boxes], "colors": [list(c) for c in colors]},
        )


@TOOLS.register("draw_image_point_markers")
class DrawPointMarkersTool(Tool):
    """Draw labelled point markers (dots or crosses) on an image."""

    name = "draw_image_point_markers"
    description = (
        "Draw point markers with optional labels on an image and return the annotated image. Points "
        'are [x, y], integers 0-1000 relative to the image size unless coord_space is "pixels".'
    )
    parameters = object_schema(
        {
            "image": IMAGE_ID_SCHEMA,
            "points": {
                "type": "array",
                "minItems": 1,
                "maxItems": 500,
                "items": object_schema(
                    {"point": POINT_SCHEMA, "label": LABEL_SCHEMA, "color": COLOR_SCHEMA}, required=("point",)
                ),
            },
            "coord_space": COORD_SPACE_SCHEMA,
            "radius": {
                "type": "integer",
                "minimum": 1,
                "maximum": 200,
                "description": "Marker radius in pixels (default: scaled to the image size).",
            },
            "shape": {"type": "string", "enum": ["circle", "cross"], "default": "circle"},
        },
        required=("image", "points"),
    )

    def run(
        self,
        context: ToolContext,
        image: str,
        points: list[dict[str, Any]],
        coord_space: CoordSpace = "norm1000",
        radius: int | None = None,
        shape: str = "circle",
        **_: Any,
    ) -> ToolResult:
        """Draw every point of ``points`` on a copy of ``image``."""
        canvas = rgb_canvas(context.get_image(image))
        size = canvas.size
        pixels = [
            point_to_pixels(p["point"], size, coord_space, name=f"points[{i}].point")
            for i, p in enumerate(points)
        ]
        labels, explicit = _item_fields(points)
        colors = assign_colors(labels, explicit)
        r = int(radius) if radius else max(3, round(min(size) / 100))
        draw = ImageDraw.Draw(canvas)
        font = font_for(size)
        for (x, y), color in zip(pixels, colors, strict=True):
            if shape == "cross":
                w = max(1, r // 3)
                draw.line([(x - r, y), (x + r, y)], fill=color, width=w)
                draw.line([(x, y - r), (x, y + r)], fill=color, width=w)
            else:
                # A white ring keeps the dot visible on any background; the centre stays the colour.
                draw.ellipse(
                    [x - r, y - r, x + r, y + r], fill=color, outline=(255, 255, 255), width=max(1, r // 4)
                )
        for (x, y), color, label in zip(pixels, colors, labels, strict=True):
            draw_label(draw, (x + r + 2, y - r), label or "", color, font, size)
        return ToolResult(
            text=_summary("point", len(points), image, labels),
            images=[canvas],
            data={"pixel_points": [list(p) for p in pixels], "colors": [list(c) for c in colors]},
        )


SHAPE_TYPES = ("line", "polyline", "polygon", "circle", "arrow")
_MIN_POINTS = {"line": (2, 2), "arrow": (2, 2), "polyline": (2, None), "polygon": (3, None), "circle": (1, 1)}


def arrow_head(
    tail: tuple[float, float], tip: tuple[float, float], length: float, half_angle_deg: float = 25.0
) -> list[tuple[float, float]]:
    """The triangle of an arrow head at ``tip`` pointing away from ``tail``."""
    angle = math.atan2(tip[1] - tail[1], tip[0] - tail[0])
    spread = math.radians(half_angle_deg)
    return [
        tip,
        (tip[0] - length * math.cos(angle - spread), tip[1] - length * math.sin(angle - spread)),
        (tip[0] - length * math.cos(angle + spread), tip[1] - length * math.sin(angle + spread)),
    ]


@TOOLS.register("draw_image_geometry")
class DrawGeometryTool(Tool):
    """Draw lines, polylines, polygons, circles and arrows on an image."""

    name = "draw_image_geometry"
    description = (
        "Draw geometric shapes on an image and return the annotated image: line (2 points), arrow "
        "(2 points, head at the second), polyline (>= 2 points), polygon (>= 3 points), circle (1 centre "
        'point plus radius). Coordinates are 0-1000 relative to the image unless coord_space is "pixels"; '
        "a circle radius is measured along the x axis (norm1000: radius*W/1000 pixels)."
    )
    parameters = object_schema(
        {
            "image": IMAGE_ID_SCHEMA,
            "shapes": {
                "type": "array",
                "minItems": 1,
                "maxItems": 200,
                "items": object_schema(
                    {
                        "type": {"type": "string", "enum": list(SHAPE_TYPES)},
                        "points": {"type": "array", "items": POINT_SCHEMA, "minItems": 1, "maxItems": 1000},
                        "radius": {"type": "number", "exclusiveMinimum": 0},
                        "fill": {
                            "type": "boolean",
                            "default": False,
                            "description": "Fill polygons and circles with a translucent colour.",
                        },
                        "width": LINE_WIDTH_SCHEMA,
                        "label": LABEL_SCHEMA,
                        "color": COLOR_SCHEMA,
                    },
                    required=("type", "points"),
                ),
            },
            "coord_space": COORD_SPACE_SCHEMA,
        },
        required=("image", "shapes"),
    )

    def run(
        self,
        context: ToolContext,
        image: str,
        shapes: list[dict[str, Any]],
        coord_space: CoordSpace = "norm1000",
        **_: Any,
    ) -> ToolResult:
        """Draw every shape of ``shapes`` on a copy of ``image``."""
        check_space(coord_space)
        canvas = rgb_canvas(context.get_image(image))
        size = canvas.size
        parsed = [self._parse(i, s, size, coord_space) for i, s in enumerate(shapes)]
        labels, explicit = _item_fields(shapes)
        colors = assign_colors(labels, explicit)
        default_width = default_line_width(size)
        overlay = Image.new("RGBA", size, (0, 0, 0, 0))
        fill_draw = ImageDraw.Draw(overlay)
        for (kind, pts, radius), shape, color in zip(parsed, shapes, colors, strict=True):
            if shape.get("fill") and kind == "polygon":
                fill_draw.polygon(pts, fill=(*color, 96))
            elif shape.get("fill") and kind == "circle":
                (cx, cy) = pts[0]
                fill_draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=(*color, 96))
        if overlay.getbbox() is not None:
            canvas = Image.alpha_composite(canvas.convert("RGBA"), overlay).convert("RGB")
        draw = ImageDraw.Draw(canvas)
        for (kind, pts, radius), shape, color in zip(parsed, shapes, colors, strict=True):
            width = int(shape.get("width") or default_width)
            if kind in ("line", "polyline"):
                draw.line(pts, fill=color, width=width, joint="curve")
            elif kind == "polygon":
                draw.line([*pts, pts[0]], fill=color, width=width, joint="curve")
            elif kind == "circle":
                (cx, cy) = pts[0]
                draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=color, width=width)
            elif kind == "arrow":
                head = arrow_head(pts[0], pts[1], max(8.0, 4.0 * width))
                # Stop the shaft at the head's base so a thick shaft does not poke through the tip.
                base = ((head[1][0] + head[2][0]) / 2, (head[1][1] + head[2][1]) / 2)
                draw.line([pts[0], base], fill=color, width=width)
                draw.polygon(head, fill=color)
        font = font_for(size)
        for (_kind, pts, _r), color, label in zip(parsed, colors, labels, strict=True):
            draw_label(draw, pts[0], label or "", color, font, size)
        return ToolResult(
            text=_summary("shape", len(shapes), image, labels),
            images=[canvas],
            data={"pixel_points": [[list(p) for p in pts] for _, pts, _ in parsed]},
        )

    @staticmethod
    def _parse(
        index: int, shape: dict[str, Any], size: tuple[int, int], space: CoordSpace
    ) -> tuple[str, list[tuple[int, int]], float]:
        kind = shape["type"]
        points = shape["points"]
        lo, hi = _MIN_POINTS[kind]
        if len(points) < lo or (hi is not None and len(points) > hi):
            want = f"exactly {lo}" if lo == hi else f"at least {lo}"
            raise ToolError(f"shapes[{index}]: a {kind} needs {want} point(s), got {len(points)}")
        pts = [
            point_to_pixels(p, size, space, name=f"shapes[{index}].points[{j}]") for j, p in enumerate(points)
        ]
        radius = 0.0
        if kind == "circle":
            if "radius" not in shape:
                raise ToolError(f"shapes[{index}]: a circle needs a radius")
            radius = length_to_pixels(shape["radius"], size[0], space, name=f"shapes[{index}].radius")
        elif "radius" in shape:
            raise ToolError(f"shapes[{index}]: radius applies to circles only, not to a {kind}")
        return kind, pts, radius
