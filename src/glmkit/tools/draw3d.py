"""``draw_image_3d_bounding_boxes``: project 9-value 3D boxes into an image (GLM-5V report section 3.1).

A box is ``[x, y, z, sx, sy, sz, a1, a2, a3]``: its centre in metres in the camera frame, its full
extents along its own axes in metres, and three rotation angles. The camera frame is the usual
computer-vision one (Omni3D, Qwen3-VL's 3D grounding cookbook): +x right, +y down, +z forward.

The report does not fix the angle convention, so it is a parameter rather than a guess:

- the three angles are rotations about the box's x, y and z axes, in that order (``a1 = rx``,
  ``a2 = ry``, ``a3 = rz``);
- ``rotation_order`` names the matrix product left to right; the default ``"zyx"`` is
  ``R = Rz(rz) @ Ry(ry) @ Rx(rx)`` (rotate about x first), as in Omni3D's ``euler2mat`` and the
  Qwen3-VL cookbook;
- ``angle_unit`` is ``"radians"`` (default), ``"degrees"`` or ``"pi"`` (multiples of pi, which is
  what Qwen3-VL's cookbook code actually reads: boxes from that cookbook draw correctly with
  ``angle_unit="pi"`` and the default order).

A corner ``c`` maps to ``R @ (s * size / 2) + centre`` for the signs ``s`` in ``{-1, 1}^3``, and a
camera point to pixels by ``u = fx * X / Z + cx``, ``v = fy * Y / Z + cy``. Without intrinsics a
60-degree field of view is assumed on both axes (``fx = W / (2 tan 30deg)``, ``fy = H / (2 tan 30deg)``,
principal point at the image centre), the cookbook's fallback. Corners behind the near plane are
dropped; edges that cross it are clipped there, so a box straddling the camera still shows its
visible part.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import ImageDraw

from glmkit.tools.base import IMAGE_ID_SCHEMA, TOOLS, Tool, ToolContext, ToolError, ToolResult, object_schema
from glmkit.tools.coords import region_to_norm1000
from glmkit.tools.drawing import (
    COLOR_SCHEMA,
    LABEL_SCHEMA,
    LINE_WIDTH_SCHEMA,
    assign_colors,
    clip_segment,
    default_line_width,
    draw_label,
    font_for,
    rgb_canvas,
)

ROTATION_ORDERS: tuple[str, ...] = ("zyx", "zxy", "yxz", "yzx", "xyz", "xzy")
ANGLE_UNITS: tuple[str, ...] = ("radians", "degrees", "pi")

# Corner i has signs CORNER_SIGNS[i] on (x, y, z); an edge joins corners differing in one sign.
CORNER_SIGNS: tuple[tuple[int, int, int], ...] = tuple(itertools.product((-1, 1), repeat=3))  # type: ignore[assignment]
BOX_EDGES: tuple[tuple[int, int], ...] = tuple(
    (i, j)
    for i, j in itertools.combinations(range(8), 2)
    if sum(a != b for a, b in zip(CORNER_SIGNS[i], CORNER_SIGNS[j], strict=True)) == 1
)


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole camera intrinsics in pixels of the image being drawn on."""

    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_fov(cls, size: tuple[int, int], fov_deg: float = 60.0) -> Intrinsics:
        """The fallback camera: ``fov_deg`` on both axes, principal point at the image centre."""
        t = 2.0 * math.tan(math.radians(fov_deg) / 2.0)
        return cls(fx=size[0] / t, fy=size[1] / t, cx=size[0] / 2.0, cy=size[1] / 2.0)


def axis_rotation(axis: str, angle: float) -> np.ndarray:
    """The 3x3 right-handed rotation by ``angle`` radians about ``axis`` (``"x"``, ``"y"`` or ``"z"``)."""
    c, s = math.cos(angle), math.sin(angle)
    if axis == "x":
        return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    if axis == "y":
        return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    if axis == "z":
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    raise ValueError(f"axis must be 'x', 'y' or 'z', got {axis!r}")


def to_radians(angle: float, unit: str) -> float:
    """Convert one angle from ``unit`` (radians, degrees or pi) to radians."""
    if unit == "radians":
        return float(angle)
    if unit == "degrees":
        return math.radians(angle)
    if unit == "pi":
        return float(angle) * math.pi
    raise ToolError(f"unknown angle_unit {unit!r}; use one of {', '.join(ANGLE_UNITS)}")


def rotation_matrix(angles: Sequence[float], order: str = "zyx", unit: str = "radians") -> np.ndarray:
    """``R`` from angles ``(rx, ry, rz)``; ``order`` is the product left to right (``"zyx"``: Rz Ry Rx)."""
    if order not in ROTATION_ORDERS:
        raise ToolError(f"unknown rotation_order {order!r}; use one of {', '.join(ROTATION_ORDERS)}")
    by_axis = dict(zip("xyz", (to_radians(a, unit) for a in angles), strict=True))
    rot = np.eye(3)
    for axis in order:
        rot = rot @ axis_rotation(axis, by_axis[axis])
    return rot


def box_corners(box: Sequence[float], order: str = "zyx", unit: str = "radians") -> np.ndarray:
    """The eight corners ``(8, 3)`` of a 9-value box in camera coordinates, in :data:`CORNER_SIGNS` order."""
    if len(box) != 9:
        raise ToolError(f"a 3D box needs 9 values [x, y, z, sx, sy, sz, rx, ry, rz], got {len(box)}")
    values = np.asarray(box, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ToolError(f"3D box values must be finite, got {list(box)!r}")
    centre, size = values[:3], values[3:6]
    if np.any(size <= 0):
        raise ToolError(f"3D box sizes must be positive metres, got {size.tolist()}")
    local = np.asarray(CORNER_SIGNS, dtype=np.float64) * (size / 2.0)  # 8, 3
    return local @ rotation_matrix(values[6:9], order, unit).T + centre


def project(points: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Pinhole projection ``(N, 3) -> (N, 2)``: ``u = fx X / Z + cx``, ``v = fy Y / Z + cy``."""
    z = points[:, 2]
    return np.stack(
        [intrinsics.fx * points[:, 0] / z + intrinsics.cx, intrinsics.fy * points[:, 1] / z + intrinsics.cy],
        axis=1,
    )


def projected_edges(
    corners: np.ndarray, intrinsics: Intrinsics, near: float = 0.05
) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """The box's edges in pixels, each clipped at the plane ``z = near``; edges fully behind are dropped."""
    segments = []
    for i, j in BOX_EDGES:
        p, q = corners[i].copy(), corners[j].copy()
        if p[2] < near and q[2] < near:
            continue
        if p[2] < near or q[2] < near:
            t = (near - p[2]) / (q[2] - p[2])
            cut = p + t * (q - p)
            if p[2] < near:
                p = cut
            else:
                q = cut
        uv = project(np.stack([p, q]), intrinsics)
        segments.append(((float(uv[0, 0]), float(uv[0, 1])), (float(uv[1, 0]), float(uv[1, 1]))))
    return segments


@TOOLS.register("draw_image_3d_bounding_boxes")
class Draw3DBoundingBoxesTool(Tool):
    """Project 9-value 3D boxes with camera intrinsics and draw their edges."""

    name = "draw_image_3d_bounding_boxes"
    description = (
        "Draw 3D bounding boxes on an image. Each box is [x, y, z, sx, sy, sz, rx, ry, rz]: centre and "
        "size in metres in the camera frame (+x right, +y down, +z forward) and rotations about the box's "
        "x, y, z axes, combined as R = Rz*Ry*Rx by default. Give the camera intrinsics in pixels if known, "
        "else a 60-degree field of view is assumed."
    )
    parameters = object_schema(
        {
            "image": IMAGE_ID_SCHEMA,
            "boxes": {
                "type": "array",
                "minItems": 1,
                "maxItems": 100,
                "items": object_schema(
                    {
                        "bbox_3d": {
                            "type": "array",
                            "items": {"type": "number"},
                            "minItems": 9,
                            "maxItems": 9,
                            "description": "[x, y, z, sx, sy, sz, rx, ry, rz]",
                        },
                        "label": LABEL_SCHEMA,
                        "color": COLOR_SCHEMA,
                    },
                    required=("bbox_3d",),
                ),
            },
            "intrinsics": object_schema(
                {
                    "fx": {"type": "number", "exclusiveMinimum": 0},
                    "fy": {"type": "number", "exclusiveMinimum": 0},
                    "cx": {"type": "number"},
                    "cy": {"type": "number"},
                },
                required=("fx", "fy", "cx", "cy"),
                description="Pinhole intrinsics in pixels of this image.",
            ),
            "fov_deg": {
                "type": "number",
                "exclusiveMinimum": 0,
                "exclusiveMaximum": 180,
                "default": 60,
                "description": "Field of view assumed when intrinsics are not given.",
            },
            "rotation_order": {
                "type": "string",
                "enum": list(ROTATION_ORDERS),
                "default": "zyx",
                "description": 'Rotation product left to right; "zyx" means R = Rz*Ry*Rx.',
            },
            "angle_unit": {"type": "string", "enum": list(ANGLE_UNITS), "default": "radians"},
            "line_width": LINE_WIDTH_SCHEMA,
        },
        required=("image", "boxes"),
    )

    def __init__(self, near_plane: float = 0.05) -> None:
        if near_plane <= 0:
            raise ValueError(f"near_plane must be positive metres, got {near_plane}")
        self.near_plane = near_plane

    def run(
        self,
        context: ToolContext,
        image: str,
        boxes: list[dict[str, Any]],
        intrinsics: dict[str, float] | None = None,
        fov_deg: float = 60.0,
        rotation_order: str = "zyx",
        angle_unit: str = "radians",
        line_width: int | None = None,
        **_: Any,
    ) -> ToolResult:
        """Project and draw every box of ``boxes`` on a copy of ``image``."""
        canvas = rgb_canvas(context.get_image(image))
        size = canvas.size
        camera = Intrinsics(**intrinsics) if intrinsics else Intrinsics.from_fov(size, fov_deg)
        all_corners = []
        for i, box in enumerate(boxes):
            try:
                all_corners.append(box_corners(box["bbox_3d"], rotation_order, angle_unit))
            except ToolError as exc:
                raise ToolError(f"boxes[{i}].bbox_3d: {exc}") from None
        labels = [b.get("label") or None for b in boxes]
        colors = assign_colors(labels, [b.get("color") or None for b in boxes])
        width = int(line_width) if line_width else default_line_width(size)
        draw = ImageDraw.Draw(canvas)
        font = font_for(size)
        lines, report = [], []
        for i, (corners, color, label) in enumerate(zip(all_corners, colors, labels, strict=True)):
            name = label or f"box {i}"
            drawn = []
            for p, q in projected_edges(corners, camera, self.near_plane):
                clipped = clip_segment(p, q, size)
                if clipped is not None:
                    # Round to the nearest pixel ourselves: Pillow truncates float coordinates.
                    ends = [(math.floor(x + 0.5), math.floor(y + 0.5)) for x, y in clipped]
                    draw.line(ends, fill=color, width=width)
                    drawn.extend(ends)
            visible = corners[:, 2] >= self.near_plane
            entry: dict[str, Any] = {"label": name, "visible_corners": int(visible.sum())}
            if not drawn:
                lines.append(f"{name}: not visible (behind the camera or outside the image)")
                report.append(entry)
                continue
            xs, ys = [pt[0] for pt in drawn], [pt[1] for pt in drawn]
            region = (
                max(0, math.floor(min(xs))),
                max(0, math.floor(min(ys))),
                min(size[0], math.ceil(max(xs)) + 1),
                min(size[1], math.ceil(max(ys)) + 1),
            )
            entry["norm1000_box"] = region_to_norm1000(region, size)
            lines.append(
                f"{name}: 2D extent {entry['norm1000_box']} (norm1000), {entry['visible_corners']}/8 corners in front"
            )
            report.append(entry)
            draw_label(draw, (region[0], region[1]), label or "", color, font, size)
        cam = f"fx={camera.fx:.1f} fy={camera.fy:.1f} cx={camera.cx:.1f} cy={camera.cy:.1f}"
        source = "given" if intrinsics else f"assumed from a {fov_deg:g} degree field of view"
        text = f"Drew {len(boxes)} 3D box(es) on {image}; camera {cam} ({source}).\n" + "\n".join(lines)
        return ToolResult(text=text, images=[canvas], data={"boxes": report, "intrinsics": asdict(camera)})
