"""RefCOCO grounding as VLMEvalKit scores it (``refcoco``): the first box of the GLM wrapper's
answer, its coordinate space guessed from its magnitude, clipped to the image, Acc@IoU>=0.5.

Reference: VLMEvalKit ``vlmeval/dataset/refcoco.py``, ``RefCOCODataset`` (``_parse_prediction``,
``_to_absolute``, ``_compute_iou``, ``evaluate``), after the GLM model wrapper
(``vlmeval/vlm/glm.py``, ``GLMThinking.extract_answer``: thinking removed, the first ``<answer>``,
then the first ``<|begin_of_box|>`` span).

* **Parsing**: the first ``[a, b, c, d]`` whose four numbers are separated by commas or whitespace
  (``[100 200 300 400]`` counts, so does the inner list of ``[[...]]``); failing that, the first
  four numbers anywhere in the text (so a full-width comma ``100，200，300，400`` or ``(1,2),(3,4)``
  still gives a box); fewer than four numbers is no box (IoU 0).
* **Coordinate space, guessed**: the largest absolute value <= 1.5 means 0-1 fractions, <= 1000
  means GLM's 0-1000 grid, anything larger means pixels. A pixel box on a small image (every
  coordinate <= 1000) is therefore read as 0-1000, and a 0-1000 box with every value <= 1.5 as
  fractions, as in the reference.
* **Clipping**: x to [0, W] and y to [0, H], then the corners are swapped into order, so
  ``[-350, 100, 500, 500]`` is the box from x = 0.
* **IoU** of the clipped box with the reference box in pixels; a hit is IoU >= 0.5.

The reference box is the sample's answer in pixels (``[x1, y1, x2, y2]``), or ``{"box": [...],
"space": "pixels" | "norm1000" | "norm1"}``; the image size comes from ``metadata.image_size`` or the
image. VLMEvalKit reports Precision@1 and mean IoU per split (the sample category) and their
macro average over the eight RefCOCO/RefCOCO+/RefCOCOg splits (:func:`refcoco_summary`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from glmkit.eval.metrics.base import METRICS, scorer_info
from glmkit.eval.metrics.glm_wrapper import check_wrapper, reference_prediction
from glmkit.eval.metrics.grounding import _reference_box, format_glm_box, from_pixels, to_pixels
from glmkit.scoring import Sample, Scores, Verifier

Box = tuple[float, float, float, float]

REFCOCO_SPLITS = (
    "RefCOCO_val",
    "RefCOCO_testA",
    "RefCOCO_testB",
    "RefCOCO+_val",
    "RefCOCO+_testA",
    "RefCOCO+_testB",
    "RefCOCOg_val",
    "RefCOCOg_test",
)

_NUMBER = r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?"
_SEP = r"(?:\s*,\s*|\s+)"
_BRACKET_BOX = re.compile(rf"\[\s*({_NUMBER}){_SEP}({_NUMBER}){_SEP}({_NUMBER}){_SEP}({_NUMBER})\s*\]")
_ANY_NUMBER = re.compile(_NUMBER)


def parse_refcoco_box(text: str) -> Box | None:
    """The box VLMEvalKit's ``_parse_prediction`` reads from ``text``, in the model's own units."""
    found = _BRACKET_BOX.search(text)
    if found is not None:
        x1, y1, x2, y2 = (float(v) for v in found.groups())
        return x1, y1, x2, y2
    numbers = _ANY_NUMBER.findall(text)
    if len(numbers) < 4:
        return None
    x1, y1, x2, y2 = (float(v) for v in numbers[:4])
    return x1, y1, x2, y2


def refcoco_to_pixels(box: Sequence[float], width: float, height: float) -> Box | None:
    """VLMEvalKit's ``_to_absolute``: guess the space from the magnitude, clip, order the corners."""
    if width <= 0 or height <= 0 or any(v != v for v in box):  # v != v: NaN
        return None
    x1, y1, x2, y2 = (float(v) for v in box)
    largest = max(abs(x1), abs(y1), abs(x2), abs(y2))
    if largest <= 1.5:
        x1, x2, y1, y2 = x1 * width, x2 * width, y1 * height, y2 * height
    elif largest <= 1000:
        x1, x2 = x1 / 1000.0 * width, x2 / 1000.0 * width
        y1, y2 = y1 / 1000.0 * height, y2 / 1000.0 * height
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def refcoco_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """VLMEvalKit's ``_compute_iou`` (0 for boxes that only touch, and for empty unions)."""
    left, top = max(a[0], b[0]), max(a[1], b[1])
    right, bottom = min(a[2], b[2]), min(a[3], b[3])
    if right <= left or bottom <= top:
        return 0.0
    inter = (right - left) * (bottom - top)
    union = max(a[2] - a[0], 0) * max(a[3] - a[1], 0) + max(b[2] - b[0], 0) * max(b[3] - b[1], 0) - inter
    return inter / union if union > 0 else 0.0


def refcoco_summary(records: list[dict[str, Any]], key: str = "refcoco") -> dict[str, Any]:
    """Precision@1 and mean IoU per split (category) and VLMEvalKit's macro ``Average`` over the
    eight RefCOCO splits present (over all samples when none of them is)."""
    splits: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        splits.setdefault(str(r.get("category", "")), []).append(r)

    def row(rs: list[dict[str, Any]]) -> dict[str, float]:
        hits = [r.get("scores", {}).get(key, 0.0) for r in rs]
        ious = [r.get("scores", {}).get(f"{key}.iou", 0.0) for r in rs]
        return {
            "Precision@1": 100 * sum(hits) / len(rs),
            "Average IoU": sum(ious) / len(rs),
            "Samples": len(rs),
        }

    table = {name: row(rs) for name, rs in splits.items()}
    known = [table[s] for s in REFCOCO_SPLITS if s in table]
    if known:
        average = {
            "Precision@1": sum(r["Precision@1"] for r in known) / len(known),
            "Average IoU": sum(r["Average IoU"] for r in known) / len(known),
            "Samples": sum(r["Samples"] for r in known),
        }
    else:
        average = row(records) if records else {"Precision@1": 0.0, "Average IoU": 0.0, "Samples": 0}
    return {"refcoco": {**table, "Average": average}}


@METRICS.register("refcoco")
class RefCOCOScorer(Verifier):
    """Acc@IoU>=0.5 of the first box, read and scaled as VLMEvalKit's RefCOCO evaluation does.

    Reference: VLMEvalKit ``vlmeval/dataset/refcoco.py``, ``RefCOCODataset._parse_prediction``,
    ``_to_absolute``, ``_compute_iou`` and ``evaluate``; the prediction is the GLM model wrapper's
    unless ``wrapper="none"``. Scores: ``refcoco`` (hit) and ``refcoco.iou``.

    Args:
        iou_threshold: IoU needed for a hit (``IOU_THRESHOLD`` = 0.5).
        answer_space: the space of reference boxes whose answer does not say (pixels).
        wrapper: ``"glm"`` or ``"none"``.
        key: the name the score is reported under.
    """

    name = "refcoco"

    def __init__(
        self,
        iou_threshold: float = 0.5,
        answer_space: str = "pixels",
        wrapper: str = "glm",
        key: str | None = None,
    ) -> None:
        super().__init__(key)
        check_wrapper(wrapper, "refcoco")
        self.iou_threshold = iou_threshold
        self.answer_space = answer_space
        self.wrapper = wrapper

    def check_answer(self, sample: Sample) -> None:
        _reference_box(sample, self.answer_space)

    def _reference_px(self, sample: Sample) -> tuple[Box, tuple[int, int]]:
        ref, space = _reference_box(sample, self.answer_space)
        size = sample.image_size()
        return to_pixels(ref, space, size), size

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        ref_px, (width, height) = self._reference_px(sample)
        prediction = reference_prediction(response, self.wrapper, "RefCOCO")
        parsed = parse_refcoco_box(prediction)
        pred_px = None if parsed is None else refcoco_to_pixels(parsed, width, height)
        iou = 0.0 if pred_px is None else refcoco_iou(pred_px, ref_px)
        details = {
            "prediction": prediction,
            "parsed_box": None if parsed is None else list(parsed),
            "pred_box_px": None if pred_px is None else list(pred_px),
        }
        return self._out(float(iou >= self.iou_threshold), details, iou=iou)

    def oracle(self, sample: Sample) -> str:
        ref_px, size = self._reference_px(sample)
        return format_glm_box(from_pixels(ref_px, "norm1000", size))

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "iou_threshold": self.iou_threshold,
            "wrapper": self.wrapper,
            **scorer_info("VLMEvalKit vlmeval/dataset/refcoco.py: RefCOCODataset.evaluate"),
        }
