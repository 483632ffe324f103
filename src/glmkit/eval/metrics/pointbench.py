"""PointBench pointing accuracy as lmms-eval scores it (``pointbench``).

Reference: lmms-eval ``lmms_eval/tasks/pointbench/utils.py``: ``_text_to_points``,
``_binary_score``, ``pointbench_process_results`` and the two aggregations.

* **Parsing** (``_text_to_points``): every ``(x, y)`` in parentheses (square brackets are not
  read; numbers as ``[-+]?\\d*\\.?\\d+``, no exponent). Each point's space is guessed: both
  coordinates in [0, 1] are fractions of the image, both in [0, 1000] are GLM's 0-1000 grid,
  anything else is pixels. The result is rounded to whole pixels (Python ``round``: halves go to
  the even neighbour), not floored.
* **Mask**: the mask image converted to 8-bit greyscale (PIL ``convert("L")``), foreground > 127.
* ``pointbench`` (``pointbench_binary_acc``, the headline): 1 when the **first** point is inside
  the image and on the mask; in the ``counting`` category **every** point must be, and the number
  of points must equal ``metadata.count``. No point scores 0.
* ``pointbench.acc`` (``pointbench_acc``): the fraction of all points on the mask, points outside
  the image counting as misses (0 with no point).

The prediction is the GLM model wrapper's (VLMEvalKit ``vlmeval/vlm/glm.py``,
``GLMThinking.extract_answer``) unless ``wrapper="none"``. The answer is ``{"mask":
"masks/3.png"}`` (relative to the benchmark file); the image size is the mask's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from glmkit.eval.metrics.base import METRICS, scorer_info
from glmkit.eval.metrics.glm_wrapper import check_wrapper, reference_prediction
from glmkit.eval.metrics.pointing import _interior_pixel
from glmkit.scoring import Sample, Scores, Verifier

_POINT = re.compile(r"\(([-+]?\d*\.?\d+)\s*,\s*([-+]?\d*\.?\d+)\)")


def pointbench_points(text: str, width: int, height: int) -> list[tuple[int, int]]:
    """``_text_to_points``: every ``(x, y)`` as whole pixels (see the module docstring)."""
    points = []
    for x_raw, y_raw in _POINT.findall(text):
        x, y = float(x_raw), float(y_raw)
        if 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0:
            px, py = round(x * width), round(y * height)
        elif 0.0 <= x <= 1000.0 and 0.0 <= y <= 1000.0:
            px, py = round((x / 1000.0) * width), round((y / 1000.0) * height)
        else:
            px, py = round(x), round(y)
        points.append((int(px), int(py)))
    return points


def load_greyscale_mask(path: Any) -> np.ndarray:
    """The mask as lmms-eval's ``_load_mask`` reads it: greyscale (``convert("L")``) > 127."""
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("L")) > 127


def _on_mask(point: tuple[int, int], mask: np.ndarray) -> bool:
    x, y = point
    height, width = mask.shape
    return 0 <= x < width and 0 <= y < height and bool(mask[y, x])


def pointbench_scores(
    points: list[tuple[int, int]], mask: np.ndarray, category: str, expected_count: int
) -> tuple[float, float]:
    """(``_binary_score``, the ``pointbench_acc`` fraction) of parsed pixel points on ``mask``."""
    if not points:
        return 0.0, 0.0
    fraction = sum(_on_mask(p, mask) for p in points) / len(points)
    to_check = points if category == "counting" else points[:1]
    binary = all(_on_mask(p, mask) for p in to_check)
    if category == "counting" and len(points) != expected_count:
        binary = False
    return float(binary), fraction


def _mask_path(sample: Sample) -> Any:
    answer = sample.answer
    if not (isinstance(answer, dict) and isinstance(answer.get("mask"), str)):
        raise ValueError(f"expected {{'mask': 'masks/3.png'}} (a mask image), got {answer!r}")
    return sample.resolve(answer["mask"])


@METRICS.register("pointbench")
class PointBenchScorer(Verifier):
    """PointBench binary accuracy (headline) and point accuracy (``pointbench.acc``).

    Reference: lmms-eval ``lmms_eval/tasks/pointbench/utils.py``, ``pointbench_process_results``
    (``_text_to_points``, ``_binary_score``); the prediction is the GLM model wrapper's unless
    ``wrapper="none"``. ``metadata.count`` is the expected number of points of a ``counting``
    sample (0 when missing, as in the reference).

    Args:
        wrapper: ``"glm"`` or ``"none"``.
        key: the name the score is reported under.
    """

    name = "pointbench"

    def __init__(self, wrapper: str = "glm", key: str | None = None) -> None:
        super().__init__(key)
        check_wrapper(wrapper, "pointbench")
        self.wrapper = wrapper

    def check_answer(self, sample: Sample) -> None:
        path = _mask_path(sample)
        if not path.is_file():
            raise ValueError(f"mask not found: {path}")

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        mask = load_greyscale_mask(_mask_path(sample))
        prediction = reference_prediction(response, self.wrapper, "PointBench")
        points = pointbench_points(prediction, mask.shape[1], mask.shape[0])
        expected = int(sample.metadata.get("count", 0) or 0)
        binary, fraction = pointbench_scores(points, mask, sample.category, expected)
        return self._out(binary, {"prediction": prediction, "points_px": points}, acc=fraction)

    def oracle(self, sample: Sample) -> str:
        mask = load_greyscale_mask(_mask_path(sample))
        height, width = mask.shape
        col, row = _interior_pixel(mask.astype(np.uint8) * 255)
        x, y = int(col), int(row)  # the pixel itself: round((x * 1000 / W) / 1000 * W) gives it back
        point = f"({x * 1000 / width:.4f}, {y * 1000 / height:.4f})"
        count = int(sample.metadata.get("count", 0) or 0) if sample.category == "counting" else 1
        return "[" + ", ".join([point] * max(count, 1)) + "]"

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "wrapper": self.wrapper,
            **scorer_info("lmms-eval lmms_eval/tasks/pointbench/utils.py: pointbench_process_results"),
        }
