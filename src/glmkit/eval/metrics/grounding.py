"""Referring-expression grounding: box parsing, coordinate spaces, Acc@IoU>=0.5 (report section 5).

RefCOCO-style grounding counts a prediction as correct when the IoU of the predicted box with the
reference box is at least 0.5. GLM-V models emit ``<|begin_of_box|>[[x1,y1,x2,y2]]<|end_of_box|>``
in a 0-1000 space (x/W*1000, y/H*1000); other models emit pixels. The coordinate space of the
prediction and of the reference are explicit settings here: public harnesses that guess the space
from the magnitude of the numbers misread small images and tiny boxes.

Only the **first** box of the final-answer span is scored (:func:`~glmkit.eval.metrics.text.answer_span`:
thinking removed, then the last ``<|begin_of_box|>`` or ``<answer>`` span, else the whole reply);
taking the best of several boxes (or of several readings of one box) would be an oracle, and a
box drafted inside ``<think>`` is not the answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torchmetrics import Metric

from glmkit import coords
from glmkit.coords import COORD_SPACES, CoordSpace
from glmkit.eval.metrics.base import METRICS, scorer_info
from glmkit.eval.metrics.text import BEGIN_BOX, END_BOX, answer_span
from glmkit.scoring import Sample, Scores, Verifier

Box = tuple[float, float, float, float]

_NUM = r"[-+]?\d+(?:\.\d+)?"
# Either four numbers in one bracket pair, or two bracketed points. Brackets may be [], (), <>, {}.
_BOX4 = rf"[\[\(<{{]\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*[\]\)>}}]"
_POINT = rf"[\[\(<]\s*({_NUM})\s*,\s*({_NUM})\s*[\]\)>]"
_BOX_RE = re.compile(rf"{_BOX4}|{_POINT}\s*,?\s*(?:to\s+)?{_POINT}")
_LOOSE4 = re.compile(rf"({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})")


def parse_boxes(text: str) -> list[Box]:
    """All boxes in ``text``, in order of appearance, as (x1, y1, x2, y2) with x1<=x2, y1<=y2.

    Understands ``<|begin_of_box|>[[x1,y1,x2,y2]]<|end_of_box|>``, ``[x1,y1,x2,y2]``,
    ``(x1,y1,x2,y2)``, ``(x1,y1),(x2,y2)``, ``[[x1,y1],[x2,y2]]`` and JSON such as
    ``{"bbox_2d": [x1,y1,x2,y2]}``. As a last resort four comma-separated numbers are read as a box.
    """
    if not text:
        return []
    text = str(text).replace(BEGIN_BOX, " ").replace(END_BOX, " ")
    boxes: list[Box] = []
    for m in _BOX_RE.finditer(text):
        nums = [g for g in m.groups() if g is not None]
        boxes.append(_ordered(*map(float, nums)))
    if not boxes:
        m = _LOOSE4.search(text)
        if m:
            boxes.append(_ordered(*map(float, m.groups())))
    return boxes


def parse_box(text: str) -> Box | None:
    """The first box in ``text`` (see :func:`parse_boxes`), or None."""
    boxes = parse_boxes(text)
    return boxes[0] if boxes else None


def _ordered(x1: float, y1: float, x2: float, y2: float) -> Box:
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def to_pixels(box: Sequence[float], space: str, size: tuple[int, int]) -> Box:
    """Convert ``box`` from ``space`` (norm1000, norm1 or pixels) to pixels of an image of ``size`` (W, H)
    (:func:`glmkit.coords.to_pixels` on each coordinate; continuous, unclamped)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    width, height = size
    return _ordered(
        coords.to_pixels(x1, width, space),
        coords.to_pixels(y1, height, space),
        coords.to_pixels(x2, width, space),
        coords.to_pixels(y2, height, space),
    )


def from_pixels(box: Sequence[float], space: str, size: tuple[int, int]) -> Box:
    """Inverse of :func:`to_pixels` (:func:`glmkit.coords.from_pixels`, unrounded)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    width, height = size
    return _ordered(
        coords.from_pixels(x1, width, space),
        coords.from_pixels(y1, height, space),
        coords.from_pixels(x2, width, space),
        coords.from_pixels(y2, height, space),
    )


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes in continuous coordinates."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def format_glm_box(box: Sequence[float]) -> str:
    """A box in GLM-V's answer format, its coordinates rounded half up as the processor writes
    training targets (:func:`glmkit.coords.round_half_up`)."""
    values = ",".join(str(coords.round_half_up(v)) for v in box)
    return f"{BEGIN_BOX}[[{values}]]{END_BOX}"


def _reference_box(sample: Sample, default_space: str) -> tuple[Box, str]:
    """(box, space) of a sample's answer: ``[x1,y1,x2,y2]`` or ``{"box": [...], "space": ...}``."""
    answer = sample.answer
    space = default_space
    if isinstance(answer, dict):
        space = answer.get("space", default_space)
        answer = answer.get("box", answer.get("bbox"))
    if (
        not isinstance(answer, (list, tuple))
        or len(answer) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in answer)
    ):
        raise ValueError(
            f"expected a box [x1, y1, x2, y2] or {{'box': [...], 'space': ...}}, got {sample.answer!r}"
        )
    if space not in COORD_SPACES:
        raise ValueError(f"unknown coordinate space {space!r}; valid: {', '.join(COORD_SPACES)}")
    return _ordered(*map(float, answer)), space


@METRICS.register("grounding")
class GroundingScorer(Verifier):
    """Acc@IoU>=threshold of the first predicted box (RefCOCO protocol), plus the IoU itself.

    Args:
        iou_threshold: IoU needed for a hit (0.5 in RefCOCO).
        pred_space: coordinate space of model outputs (``norm1000`` for GLM-V).
        answer_space: space of reference boxes when the answer does not say.
    """

    name = "grounding"

    def __init__(
        self,
        iou_threshold: float = 0.5,
        pred_space: CoordSpace = "norm1000",
        answer_space: CoordSpace = "pixels",
        key: str | None = None,
    ) -> None:
        super().__init__(key)
        for label, space in (("pred_space", pred_space), ("answer_space", answer_space)):
            if space not in COORD_SPACES:
                raise ValueError(
                    f"{label}={space!r} is not a coordinate space; valid: {', '.join(COORD_SPACES)}"
                )
        self.iou_threshold = iou_threshold
        self.pred_space = pred_space
        self.answer_space = answer_space

    def check_answer(self, sample: Sample) -> None:
        _reference_box(sample, self.answer_space)

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        ref, ref_space = _reference_box(sample, self.answer_space)
        pred = parse_box(answer_span(response))
        if pred is None:
            return self._out(0.0, {"parsed_box": None}, iou=0.0)
        # The image size is only needed when a normalised space is involved.
        size = (1, 1) if self.pred_space == ref_space == "pixels" else sample.image_size()
        pred_px = to_pixels(pred, self.pred_space, size)
        ref_px = to_pixels(ref, ref_space, size)
        iou = box_iou(pred_px, ref_px)
        return self._out(
            float(iou >= self.iou_threshold),
            {"parsed_box": list(pred), "pred_box_px": list(pred_px)},
            iou=iou,
        )

    def oracle(self, sample: Sample) -> str:
        ref, ref_space = _reference_box(sample, self.answer_space)
        size = (1, 1) if self.pred_space == ref_space == "pixels" else sample.image_size()
        return format_glm_box(from_pixels(to_pixels(ref, ref_space, size), self.pred_space, size))

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "iou_threshold": self.iou_threshold,
            "pred_space": self.pred_space,
            **scorer_info(
                "glmkit Acc@IoU with declared coordinate spaces (RefCOCO's reference: refcoco)", "glmkit"
            ),
        }


class GroundingAccuracy(Metric):
    """Acc@IoU>=threshold over batches of pixel boxes, synchronised across processes.

    ``update(preds, targets)`` takes ``(N, 4)`` tensors of (x1, y1, x2, y2) boxes in one common
    space; a row of NaNs in ``preds`` marks an unparseable prediction (a miss).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, iou_threshold: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.iou_threshold = iou_threshold
        self.add_state("hits", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("iou_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        """Accumulate a batch of predicted and reference boxes."""
        preds = torch.as_tensor(preds, dtype=torch.float64).reshape(-1, 4)
        targets = torch.as_tensor(targets, dtype=torch.float64).reshape(-1, 4)
        if preds.shape != targets.shape:
            raise ValueError(f"preds {tuple(preds.shape)} and targets {tuple(targets.shape)} differ in shape")
        lo = torch.maximum(preds[:, :2], targets[:, :2])
        hi = torch.minimum(preds[:, 2:], targets[:, 2:])
        inter = (hi - lo).clamp(min=0).prod(dim=1)
        area_p = (preds[:, 2:] - preds[:, :2]).prod(dim=1)
        area_t = (targets[:, 2:] - targets[:, :2]).prod(dim=1)
        union = area_p + area_t - inter
        iou = torch.where(union > 0, inter / union, torch.zeros_like(inter))
        iou = torch.nan_to_num(iou, nan=0.0)
        self.hits += (iou >= self.iou_threshold).sum()
        self.iou_sum += iou.sum()
        self.total += preds.shape[0]

    def compute(self) -> torch.Tensor:
        """Fraction of hits (0 when nothing was seen)."""
        return self.hits / self.total.clamp(min=1)

    def mean_iou(self) -> torch.Tensor:
        """Mean IoU over everything seen."""
        return self.iou_sum / self.total.clamp(min=1)
