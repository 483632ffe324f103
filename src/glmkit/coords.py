"""GLM-V's 0-1000 coordinates and pixels: the one conversion every layer uses.

GLM-V writes boxes and points as integers normalised to 0-1000 of the image width and height
(``x / W * 1000``, ``y / H * 1000``; GLM-5V report section 3.1, zai-org/GLM-V README "Grounding",
maintainers in GLM-V#114). The model processor (training targets), the image tools (what a call
means) and the evaluation metrics (what an answer scores) all convert through this module, so a box
written by one reads back the same in the others. It imports nothing but the standard library.

Rules:

* **pixels -> 0-1000 integer** (:func:`norm1000_from_pixel`): ``x * 1000 / W`` rounded half up
  (``floor(v + 0.5)``, not Python's half-to-even) and clamped to ``0..1000``. The product comes first
  so that a tie is decided on the exact value: ``201 / 400 * 1000`` is ``502.49999999999994`` in
  floating point and would round down, ``201 * 1000 / 400`` is ``502.5`` and rounds up.
* **0-1000 -> continuous pixels** (:func:`to_pixels`): ``v * W / 1000`` (what IoU and drawing read).
* **0-1000 -> the pixel a value falls on** (:func:`pixel_index`): the continuous value rounded half
  up and clamped to ``0..W-1``, since ``1000`` maps to ``W``, one past the last pixel.

``norm1`` (fractions, 0-1) and ``pixels`` are the other spaces a benchmark's answers may use. The
space is always explicit: guessing it from magnitudes misreads small images and tiny boxes (the
reference-parity metrics that guess, such as RefCOCO's, keep their own arithmetic on purpose).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

NORM = 1000
CoordSpace = Literal["norm1000", "norm1", "pixels"]
COORD_SPACES: tuple[str, ...] = ("norm1000", "norm1", "pixels")

__all__ = [
    "COORD_SPACES",
    "NORM",
    "CoordSpace",
    "box_from_norm1000",
    "box_to_norm1000",
    "from_pixels",
    "norm1000_from_pixel",
    "pixel_index",
    "point_from_norm1000",
    "point_to_norm1000",
    "round_half_up",
    "to_pixels",
]


def round_half_up(value: float) -> int:
    """``value`` rounded to the nearest integer, halves up (2.5 -> 3, 3.5 -> 4, -2.5 -> -2)."""
    return math.floor(value + 0.5)


def _unknown(space: str) -> ValueError:
    return ValueError(f"unknown coordinate space {space!r}; valid: {', '.join(COORD_SPACES)}")


def to_pixels(value: float, extent: float, space: str = "norm1000") -> float:
    """One coordinate from ``space`` to continuous pixels along an axis of ``extent`` pixels."""
    if space == "norm1000":
        return value * extent / NORM
    if space == "norm1":
        return value * extent
    if space == "pixels":
        return float(value)
    raise _unknown(space)


def from_pixels(value: float, extent: float, space: str = "norm1000") -> float:
    """One continuous pixel coordinate to ``space`` (the inverse of :func:`to_pixels`, unrounded)."""
    if space == "norm1000":
        return value * NORM / extent
    if space == "norm1":
        return value / extent
    if space == "pixels":
        return float(value)
    raise _unknown(space)


def pixel_index(value: float, extent: int, space: str = "norm1000") -> int:
    """The pixel (``0..extent-1``) a coordinate in ``space`` falls on."""
    return min(max(round_half_up(to_pixels(value, extent, space)), 0), extent - 1)


def norm1000_from_pixel(value: float, extent: float) -> int:
    """A pixel coordinate as GLM-V's integer: ``x * 1000 / W`` rounded half up, clamped to ``0..1000``."""
    return min(max(round_half_up(value * NORM / extent), 0), NORM)


def _size(size: Sequence[int]) -> tuple[int, int]:
    width, height = (int(v) for v in size)
    if width < 1 or height < 1:
        raise ValueError(f"image size must be (width, height) >= 1, got {tuple(size)}")
    return width, height


def point_to_norm1000(point: Sequence[float], size: Sequence[int]) -> list[int]:
    """A pixel point ``(x, y)`` of an image of ``size = (W, H)`` as GLM-V integers ``0..1000``."""
    if len(point) != 2:
        raise ValueError(f"a point is (x, y), got {list(point)!r}")
    width, height = _size(size)
    return [norm1000_from_pixel(float(point[0]), width), norm1000_from_pixel(float(point[1]), height)]


def point_from_norm1000(point: Sequence[float], size: Sequence[int]) -> tuple[float, float]:
    """A GLM-V ``0..1000`` point as continuous pixels ``(x * W / 1000, y * H / 1000)``."""
    if len(point) != 2:
        raise ValueError(f"a point is (x, y), got {list(point)!r}")
    width, height = _size(size)
    x, y = (float(v) for v in point)
    for name, value in (("x", x), ("y", y)):
        if not 0 <= value <= NORM:
            raise ValueError(f"0-1000 point {name} = {value:g} is outside 0..{NORM}")
    return to_pixels(x, width), to_pixels(y, height)


def box_to_norm1000(box: Sequence[float], size: Sequence[int]) -> list[int]:
    """A pixel box ``(x1, y1, x2, y2)`` of an image of ``size = (W, H)`` as GLM-V integers ``0..1000``."""
    if len(box) != 4:
        raise ValueError(f"a box is (x1, y1, x2, y2), got {list(box)!r}")
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 < x1 or y2 < y1:
        raise ValueError(f"box {list(box)!r} must have x1 <= x2 and y1 <= y2")
    return [*point_to_norm1000((x1, y1), size), *point_to_norm1000((x2, y2), size)]


def box_from_norm1000(box: Sequence[float], size: Sequence[int]) -> tuple[float, float, float, float]:
    """A GLM-V ``0..1000`` box as a pixel box ``(x1 * W / 1000, y1 * H / 1000, x2 * W / 1000, y2 * H / 1000)``."""
    if len(box) != 4:
        raise ValueError(f"a box is (x1, y1, x2, y2), got {list(box)!r}")
    x1, y1 = point_from_norm1000(box[:2], size)
    x2, y2 = point_from_norm1000(box[2:], size)
    return x1, y1, x2, y2
