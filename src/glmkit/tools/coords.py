"""Coordinate spaces of the image tools: validation of call arguments and mapping to pixels.

GLM-V emits integer coordinates normalised to 0-1000 (``x / W * 1000``, ``y / H * 1000``; GLM-5V
report section 3.1, zai-org/GLM-V README "Grounding"), so that is the default space of every tool.
A call may say ``coord_space: "pixels"`` instead. The space is always explicit: guessing it from
magnitudes misreads small images and tiny boxes. The arithmetic is :mod:`glmkit.coords`', shared
with the model processor and the evaluation metrics; this module adds the checks a tool call needs
(errors the model can read) and the region a crop cuts.

Two mappings to pixels exist because they answer different questions:

- a *point* (marker, box corner to draw) maps to the pixel it falls on: ``v * W / 1000`` with
  halves rounded up (not Python's half-even) and clamped to ``W - 1``, since ``1000`` maps to
  ``W``, one past the last pixel (:func:`glmkit.coords.pixel_index`);
- a *region* (what ``crop_image`` cuts) maps to the half-open pixel box ``[floor(x1'), ceil(x2'))``
  that covers every pixel the box touches, clamped to ``[0, W]``.

Boxes are ``[x1, y1, x2, y2]`` with ``x1 < x2`` and ``y1 < y2``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from glmkit.coords import NORM, norm1000_from_pixel, pixel_index, to_pixels
from glmkit.tools.base import ToolError

CoordSpace = Literal["norm1000", "pixels"]
COORD_SPACES: tuple[str, ...] = ("norm1000", "pixels")

COORD_SPACE_SCHEMA: dict[str, Any] = {
    "type": "string",
    "enum": list(COORD_SPACES),
    "default": "norm1000",
    "description": (
        'Space of all coordinates in this call: "norm1000" (integers 0-1000, x/W*1000 and y/H*1000; '
        'the default) or "pixels" of the referenced image.'
    ),
}
BOX_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {"type": "number"},
    "minItems": 4,
    "maxItems": 4,
    "description": "Box [x1, y1, x2, y2] (top-left, bottom-right) in coord_space.",
}
POINT_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {"type": "number"},
    "minItems": 2,
    "maxItems": 2,
    "description": "Point [x, y] in coord_space.",
}


def check_space(space: str) -> CoordSpace:
    """Return ``space`` if it is a known coordinate space, else raise naming the valid ones."""
    if space not in COORD_SPACES:
        raise ToolError(f"unknown coord_space {space!r}; use one of {', '.join(COORD_SPACES)}")
    return space  # type: ignore[return-value]


def _check_value(value: float, limit: float, what: str, space: CoordSpace, extent: int) -> float:
    if not math.isfinite(value):
        raise ToolError(f"{what} is {value!r}; coordinates must be finite numbers")
    if value < 0 or value > limit:
        hint = (
            f"norm1000 coordinates lie in 0..{NORM}; pass coord_space='pixels' for pixel values"
            if space == "norm1000"
            else f"pixel coordinates lie in 0..{extent} for this image"
        )
        raise ToolError(f"{what} = {value:g} is out of range ({hint})")
    return float(value)


def _limit(space: CoordSpace, extent: int) -> float:
    return float(NORM) if space == "norm1000" else float(extent)


def to_pixel_coord(value: float, extent: int, space: CoordSpace = "norm1000") -> int:
    """The pixel index (``0..extent-1``) a single coordinate falls on (:func:`glmkit.coords.pixel_index`)."""
    return pixel_index(value, extent, space)


def point_to_pixels(
    point: Sequence[float], size: tuple[int, int], space: CoordSpace = "norm1000", *, name: str = "point"
) -> tuple[int, int]:
    """Validate ``[x, y]`` in ``space`` and map it to the pixel it falls on (clamped to W-1, H-1)."""
    space = check_space(space)
    if len(point) != 2:
        raise ToolError(f"{name} must be [x, y], got {list(point)!r}")
    width, height = size
    x = _check_value(point[0], _limit(space, width), f"{name} x", space, width)
    y = _check_value(point[1], _limit(space, height), f"{name} y", space, height)
    return to_pixel_coord(x, width, space), to_pixel_coord(y, height, space)


def validate_box(
    box: Sequence[float], size: tuple[int, int], space: CoordSpace = "norm1000", *, name: str = "bbox"
) -> tuple[float, float, float, float]:
    """Check ``[x1, y1, x2, y2]``: four finite values in range with ``x1 < x2`` and ``y1 < y2``."""
    space = check_space(space)
    if len(box) != 4:
        raise ToolError(f"{name} must be [x1, y1, x2, y2], got {list(box)!r}")
    width, height = size
    x1 = _check_value(box[0], _limit(space, width), f"{name} x1", space, width)
    y1 = _check_value(box[1], _limit(space, height), f"{name} y1", space, height)
    x2 = _check_value(box[2], _limit(space, width), f"{name} x2", space, width)
    y2 = _check_value(box[3], _limit(space, height), f"{name} y2", space, height)
    if not x1 < x2:
        raise ToolError(f"{name}: x1 ({x1:g}) must be less than x2 ({x2:g}); boxes are [x1, y1, x2, y2]")
    if not y1 < y2:
        raise ToolError(f"{name}: y1 ({y1:g}) must be less than y2 ({y2:g}); boxes are [x1, y1, x2, y2]")
    return x1, y1, x2, y2


def box_to_pixels(
    box: Sequence[float], size: tuple[int, int], space: CoordSpace = "norm1000", *, name: str = "bbox"
) -> tuple[int, int, int, int]:
    """Validate a box and map its corners to pixel indices (inclusive, for drawing outlines)."""
    x1, y1, x2, y2 = validate_box(box, size, space, name=name)
    width, height = size
    return (
        to_pixel_coord(x1, width, space),
        to_pixel_coord(y1, height, space),
        to_pixel_coord(x2, width, space),
        to_pixel_coord(y2, height, space),
    )


def box_to_region(
    box: Sequence[float], size: tuple[int, int], space: CoordSpace = "norm1000", *, name: str = "bbox"
) -> tuple[int, int, int, int]:
    """Validate a box and return the half-open pixel region ``(left, top, right, bottom)`` it covers.

    This is the box :meth:`PIL.Image.Image.crop` takes; it is at least one pixel wide and high.
    """
    x1, y1, x2, y2 = validate_box(box, size, space, name=name)
    width, height = size
    # 1e-9 absorbs float error of fractional inputs (833.3 * 3 / 1000 is not exact).
    left = min(max(math.floor(to_pixels(x1, width, space) + 1e-9), 0), width - 1)
    top = min(max(math.floor(to_pixels(y1, height, space) + 1e-9), 0), height - 1)
    right = min(max(math.ceil(to_pixels(x2, width, space) - 1e-9), left + 1), width)
    bottom = min(max(math.ceil(to_pixels(y2, height, space) - 1e-9), top + 1), height)
    return left, top, right, bottom


def length_to_pixels(
    value: float, extent: int, space: CoordSpace = "norm1000", *, name: str = "radius"
) -> float:
    """A length (e.g. a circle radius) in ``space`` measured along an axis of ``extent`` pixels."""
    space = check_space(space)
    if not math.isfinite(value) or value <= 0:
        raise ToolError(f"{name} must be a positive number, got {value!r}")
    return to_pixels(value, extent, space)


def pixels_to_norm1000(point: Sequence[float], size: tuple[int, int]) -> tuple[int, int]:
    """Map a pixel point to integer 0-1000 coordinates (the inverse the model reads back;
    :func:`glmkit.coords.norm1000_from_pixel`)."""
    width, height = size
    return norm1000_from_pixel(point[0], width), norm1000_from_pixel(point[1], height)


def region_to_norm1000(region: Sequence[int], size: tuple[int, int]) -> list[int]:
    """A half-open pixel region ``(l, t, r, b)`` as a 0-1000 box, for reporting back to the model."""
    x1, y1 = pixels_to_norm1000((region[0], region[1]), size)
    x2, y2 = pixels_to_norm1000((region[2], region[3]), size)
    return [x1, y1, x2, y2]
