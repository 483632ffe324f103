"""Pointing accuracy: is the predicted point inside the target box or mask (report section 5, PointBench).

The first predicted point of the final-answer span is scored (PointBench's binary accuracy; the
span is :func:`~glmkit.eval.metrics.text.answer_span`, so points inside ``<think>`` do not count);
``pointing.all_points`` is the fraction of all its points that land in the target. Points are read in an explicit
coordinate space (0-1000 for GLM-V); a 0-1000 value that maps to x == W is clamped to W-1, and any
other point outside the image is a miss. Masks are binarised at > 127, as PointBench does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from glmkit.coords import round_half_up
from glmkit.eval.metrics.base import METRICS, scorer_info
from glmkit.eval.metrics.grounding import COORD_SPACES, CoordSpace, to_pixels
from glmkit.eval.metrics.text import BEGIN_BOX, END_BOX, answer_span
from glmkit.scoring import Sample, Scores, Verifier

Point = tuple[float, float]

_NUM = r"[-+]?\d+(?:\.\d+)?"
_POINT_RE = re.compile(rf"[\[\(]\s*({_NUM})\s*,\s*({_NUM})\s*[\]\)]")
_XML_POINT_RE = re.compile(rf"<point>\s*({_NUM})[\s,]+({_NUM})\s*</point>", re.I)


def parse_points(text: str) -> list[Point]:
    """All (x, y) points in ``text`` in order: ``[x, y]``, ``(x, y)``, ``[[x, y]]``, ``<point>x y</point>``.

    A bracket holding four numbers (a box) is not a point.
    """
    if not text:
        return []
    text = str(text).replace(BEGIN_BOX, " ").replace(END_BOX, " ")
    found = [(m.start(), (float(m.group(1)), float(m.group(2)))) for m in _POINT_RE.finditer(text)]
    found += [(m.start(), (float(m.group(1)), float(m.group(2)))) for m in _XML_POINT_RE.finditer(text)]
    return [p for _, p in sorted(found)]


def point_to_pixels(point: Point, space: str, size: tuple[int, int]) -> Point:
    """Map a point from ``space`` to pixel coordinates; 0-1000 / 0-1 values at the far edge map to W-1 / H-1."""
    x, y, _, _ = to_pixels((point[0], point[1], point[0], point[1]), space, size)
    width, height = size
    if space != "pixels":
        # x*W/1000 can equal W for x == 1000; that is still the last column, not outside.
        x = min(x, width - 1) if x <= width else x
        y = min(y, height - 1) if y <= height else y
    return x, y


def point_in_box(point: Point, box: Any) -> bool:
    """True when ``point`` lies in the closed box (x1, y1, x2, y2)."""
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def point_in_mask(point: Point, mask: np.ndarray) -> bool:
    """True when ``point`` (pixels) falls on a mask pixel > 127; points outside the image miss."""
    col, row = int(np.floor(point[0])), int(np.floor(point[1]))
    height, width = mask.shape[:2]
    if not (0 <= col < width and 0 <= row < height):
        return False
    return bool(mask[row, col] > 127)


def load_mask(path: Any) -> np.ndarray:
    """A mask image as a 2-D uint8 array (converted to greyscale)."""
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("L"))


@METRICS.register("pointing")
class PointingScorer(Verifier):
    """Hit rate of the first predicted point in the target region (box or mask).

    The answer is ``{"box": [x1, y1, x2, y2], "space": "pixels"}`` or ``{"mask": "masks/3.png"}``
    (a path relative to the benchmark file). Args as in :class:`GroundingScorer`.
    """

    name = "pointing"

    def __init__(
        self, pred_space: CoordSpace = "norm1000", answer_space: CoordSpace = "pixels", key: str | None = None
    ) -> None:
        super().__init__(key)
        if pred_space not in COORD_SPACES or answer_space not in COORD_SPACES:
            raise ValueError(f"coordinate spaces must be one of {', '.join(COORD_SPACES)}")
        self.pred_space = pred_space
        self.answer_space = answer_space

    def check_answer(self, sample: Sample) -> None:
        answer = sample.answer
        if isinstance(answer, dict) and "mask" in answer:
            mask_path = sample.resolve(answer["mask"])
            if not mask_path.is_file():
                raise ValueError(f"mask not found: {mask_path}")
            return
        if isinstance(answer, dict) and "box" in answer:
            answer = answer["box"]
        if not (isinstance(answer, list) and len(answer) == 4):
            raise ValueError(
                f"expected {{'box': [x1, y1, x2, y2]}} or {{'mask': 'path.png'}}, got {sample.answer!r}"
            )

    def _target(self, sample: Sample) -> tuple[str, Any]:
        answer = sample.answer
        if isinstance(answer, dict) and "mask" in answer:
            return "mask", load_mask(sample.resolve(answer["mask"]))
        space = self.answer_space
        if isinstance(answer, dict):
            space = answer.get("space", space)
            answer = answer["box"]
        size = (1, 1) if space == "pixels" else sample.image_size()
        return "box", to_pixels(answer, space, size)

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        kind, target = self._target(sample)
        points = parse_points(answer_span(response))
        if not points:
            return self._out(0.0, {"parsed_points": []}, all_points=0.0)
        size = (1, 1) if self.pred_space == "pixels" else sample.image_size()
        pixels = [point_to_pixels(p, self.pred_space, size) for p in points]
        hits = [point_in_mask(p, target) if kind == "mask" else point_in_box(p, target) for p in pixels]
        return self._out(
            float(hits[0]), {"parsed_points": points, "points_px": pixels}, all_points=sum(hits) / len(hits)
        )

    def oracle(self, sample: Sample) -> str:
        kind, target = self._target(sample)
        if kind == "box":
            px = ((target[0] + target[2]) / 2, (target[1] + target[3]) / 2)
        else:
            px = _interior_pixel(target)
        size = sample.image_size() if self.pred_space != "pixels" else (1, 1)
        width, height = size
        if self.pred_space == "norm1000":
            x, y = px[0] * 1000 / width, px[1] * 1000 / height
            # GLM-V writes integers (and a tokenizer cannot split them at a decimal point); the
            # decimals stay only where rounding would step off a target a pixel wide
            whole = f"{BEGIN_BOX}[[{round_half_up(x)},{round_half_up(y)}]]{END_BOX}"
            if self.score(sample, whole).scores[self.key] == 1.0:
                return whole
        elif self.pred_space == "norm1":
            x, y = px[0] / width, px[1] / height
        else:
            x, y = px
        return f"{BEGIN_BOX}[[{x:.3f},{y:.3f}]]{END_BOX}"

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "pred_space": self.pred_space,
            **scorer_info(
                "glmkit first-point hit with declared coordinate spaces (PointBench's: pointbench)", "glmkit"
            ),
        }


def _interior_pixel(mask: np.ndarray) -> Point:
    """Centre of a mask pixel deepest inside the mask (robust to rounding in the oracle).

    The mask is eroded (4-neighbourhood) until one more step would empty it; any surviving pixel
    is at maximal distance from the border.
    """
    inside = mask > 127
    if not inside.any():
        raise ValueError("the mask is empty (no pixel > 127)")
    while True:
        eroded = inside.copy()
        eroded[1:, :] &= inside[:-1, :]
        eroded[:-1, :] &= inside[1:, :]
        eroded[:, 1:] &= inside[:, :-1]
        eroded[:, :-1] &= inside[:, 1:]
        eroded[0, :] = eroded[-1, :] = False
        eroded[:, 0] = eroded[:, -1] = False
        if not eroded.any():
            break
        inside = eroded
    rows, cols = np.nonzero(inside)
    mid = len(rows) // 2
    return cols[mid] + 0.5, rows[mid] + 0.5


class PointingAccuracy(Metric):
    """Fraction of points inside their target boxes, synchronised across processes.

    ``update(points, boxes)``: ``(N, 2)`` points and ``(N, 4)`` boxes in one space; a NaN point misses.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("hits", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, points: torch.Tensor, boxes: torch.Tensor) -> None:
        """Accumulate a batch."""
        points = torch.as_tensor(points, dtype=torch.float64).reshape(-1, 2)
        boxes = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
        if points.shape[0] != boxes.shape[0]:
            raise ValueError(f"{points.shape[0]} points but {boxes.shape[0]} boxes")
        inside = (points >= boxes[:, :2]).all(dim=1) & (points <= boxes[:, 2:]).all(dim=1)
        self.hits += inside.sum()
        self.total += points.shape[0]

    def compute(self) -> torch.Tensor:
        """Hit rate (0 when nothing was seen)."""
        return self.hits.double() / self.total.clamp(min=1)
