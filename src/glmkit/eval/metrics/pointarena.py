"""PointArena's Point-Bench success rate as its own evaluator computes it (``pointarena``).

Reference: PointArena (pointarena/pointarena) ``model_evaluator.py`` (``evaluate_model``,
``load_mask``, ``is_point_in_mask``) with the Molmo parser of ``molmo_evaluator.py``
(``extract_points`` and the fallbacks of ``call_molmo``).

* **Parsing** (``parser="molmo"``), in this order, every match of each pattern:
  ``Click(x, y)``; ``(x, y)`` with exactly one decimal digit each (``(45.2, 60.1)``; so a
  ``Click(...)`` is read twice); ``x="..." y="..."`` attribute pairs (Molmo's ``<point x="45.2"
  y="60.1">`` and each ``x1``/``y1``, ``x2``/``y2`` pair of ``<points>``); ``p=123,456`` three-digit
  pairs read as tenths. All of these are **percentages** of the image (a value over 100 drops the
  point), converted to pixels. When none matches, the text between the first ``[`` and the last
  ``]`` is searched for ``[x, y]`` pairs, taken as **pixels**; failing that it is parsed as JSON
  (``[[x, y], ...]`` or ``[{"point": [x, y]}, ...]``), and failing that its numbers are paired up.
  Outside the ``counting`` category only the first point is kept.
  ``parser="json"`` is the evaluator's reading for API models (``call_openai``): the text between
  the first ``[`` and the last ``]`` parsed as JSON, a list of ``{"point": [x, y]}`` in pixels.
* **Mask** (``load_mask``): a greyscale mask is foreground where > 127; a colour mask where **any**
  channel is > 127 (an opaque alpha channel therefore marks every pixel).
* **Hit** (``is_point_in_mask``): the point is truncated to whole pixels (``int``: toward zero, so
  ``-0.5`` is column 0), must lie in the image and on the mask.
* **Success**: at least one point; in ``counting``, exactly ``metadata.count`` points (1 when
  missing); and every point a hit. The benchmark score is the success rate.

The response is the GLM model wrapper's (VLMEvalKit ``vlmeval/vlm/glm.py``,
``GLMThinking.extract_answer``) unless ``wrapper="none"``. The answer is ``{"mask":
"masks/3.png"}``; the image size is the mask's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from glmkit.eval.metrics.base import METRICS, scorer_info
from glmkit.eval.metrics.glm_wrapper import check_wrapper, reference_prediction
from glmkit.eval.metrics.pointbench import _mask_path
from glmkit.eval.metrics.pointing import _interior_pixel
from glmkit.scoring import Sample, Scores, Verifier

Point = tuple[float, float]

_CLICK = re.compile(r"Click\(([0-9]+\.[0-9]), ?([0-9]+\.[0-9])\)")
_PAREN_ONE_DECIMAL = re.compile(r"\(([0-9]+\.[0-9]),? ?([0-9]+\.[0-9])\)")
_XY_ATTRIBUTES = re.compile(r'x\d*="\s*([0-9]+(?:\.[0-9]+)?)"\s+y\d*="\s*([0-9]+(?:\.[0-9]+)?)"')
_TENTHS = re.compile(r"(?:\d+|p)\s*=\s*([0-9]{3})\s*,\s*([0-9]{3})")
_BRACKET_PAIR = re.compile(r"\[(\d+\.?\d*),\s*(\d+\.?\d*)\]")
_BARE_NUMBER = re.compile(r"\d+\.?\d*")


def molmo_percent_points(text: str, width: int, height: int) -> list[Point]:
    """``extract_points``: Molmo's percentage formats, converted to pixels (module docstring)."""
    points: list[Point] = []

    def add(x: float, y: float) -> None:
        if max(x, y) > 100:  # treated as an invalid output
            return
        points.append((x / 100.0 * width, y / 100.0 * height))

    for pattern in (_CLICK, _PAREN_ONE_DECIMAL, _XY_ATTRIBUTES):
        for m in pattern.finditer(text):
            add(float(m.group(1)), float(m.group(2)))
    for m in _TENTHS.finditer(text):
        add(int(m.group(1)) / 10.0, int(m.group(2)) / 10.0)
    return points


def _bracketed(text: str) -> str | None:
    """The text from the first ``[`` to the last ``]`` (empty when they are out of order), or None."""
    start = text.find("[")
    if start == -1:
        return None
    return text[start : text.rfind("]") + 1]


def molmo_points(text: str, width: int, height: int) -> list[Point]:
    """All points ``call_molmo`` reads from a Molmo-style reply, in pixels (before the count rule)."""
    points = molmo_percent_points(text, width, height)
    if points:
        return points
    block = _bracketed(text)
    if block is None:
        return []
    pairs = _BRACKET_PAIR.findall(block)
    if pairs:
        return [(float(x), float(y)) for x, y in pairs]
    try:  # any failure here is the reference's "error parsing coordinates": no points
        raw = json.loads(block)
        found: list[Point] = []
        if isinstance(raw, list):
            for item in raw:
                if isinstance(item, list) and len(item) == 2:
                    found.append((float(item[0]), float(item[1])))
                elif (
                    isinstance(item, dict) and isinstance(item.get("point"), list) and len(item["point"]) == 2
                ):
                    found.append((float(item["point"][0]), float(item["point"][1])))
    except (ValueError, TypeError):
        return []
    if found:
        return found
    numbers = _BARE_NUMBER.findall(block)
    return [(float(numbers[i]), float(numbers[i + 1])) for i in range(0, len(numbers) - 1, 2)]


def json_points(text: str) -> list[Any]:
    """``call_openai``'s reading: the bracketed text parsed as JSON (a list of ``{"point": [x, y]}``)."""
    block = _bracketed(text)
    if block is None:
        return []
    try:
        raw = json.loads(block)
    except ValueError:
        return []
    return raw if isinstance(raw, list) else []


def load_any_channel_mask(path: Any) -> np.ndarray:
    """PointArena's ``load_mask``: > 127 for a greyscale mask, any channel > 127 for a colour one."""
    from PIL import Image

    with Image.open(path) as img:
        array = np.asarray(img)
    if array.ndim == 2:
        return array > 127
    if array.ndim == 3:
        return np.any(array > 127, axis=2)
    raise ValueError(f"unexpected mask shape {array.shape}")


def point_on_mask(item: Any, mask: np.ndarray) -> bool:
    """``is_point_in_mask`` of a ``{"point": [x, y]}`` item: truncate to whole pixels (``int``),
    inside the image and on the mask. An item of another shape raises, as in the reference."""
    x, y = item["point"]
    col, row = int(x), int(y)
    height, width = mask.shape
    if row < 0 or row >= height or col < 0 or col >= width:
        return False
    return bool(mask[row, col])


def pointarena_success(
    points: list[Any], mask: np.ndarray, category: str, expected_count: int
) -> tuple[bool, str]:
    """(success, reason) of one item, as ``evaluate_model`` decides it."""
    if not points:
        return False, "no points returned"
    if category == "counting" and len(points) != expected_count:
        return False, f"count mismatch: expected {expected_count}, got {len(points)}"
    for point in points:
        if not point_on_mask(point, mask):
            return False, "points outside mask"
    return True, "success"


@METRICS.register("pointarena")
class PointArenaScorer(Verifier):
    """PointArena's Point-Bench success (1 or 0), as its ``model_evaluator.py`` decides it.

    Reference: PointArena ``model_evaluator.py``, ``evaluate_model`` (``load_mask``,
    ``is_point_in_mask``) with ``molmo_evaluator.py``'s ``extract_points`` / ``call_molmo``
    parsing (``parser="molmo"``) or ``call_openai``'s JSON parsing (``parser="json"``).

    Args:
        parser: ``"molmo"`` (percentages, Molmo's formats) or ``"json"`` (pixel JSON points).
        wrapper: ``"glm"`` or ``"none"``.
        key: the name the score is reported under.
    """

    name = "pointarena"

    def __init__(
        self, parser: Literal["molmo", "json"] = "molmo", wrapper: str = "glm", key: str | None = None
    ) -> None:
        super().__init__(key)
        if parser not in ("molmo", "json"):
            raise ValueError(f"pointarena: parser={parser!r}; valid: molmo, json")
        check_wrapper(wrapper, "pointarena")
        self.parser = parser
        self.wrapper = wrapper

    def check_answer(self, sample: Sample) -> None:
        path = _mask_path(sample)
        if not path.is_file():
            raise ValueError(f"mask not found: {path}")

    def parse(self, text: str, width: int, height: int, category: str) -> list[Any]:
        """The points the reference keeps for ``category`` (only the first outside ``counting``)."""
        if self.parser == "molmo":
            points: list[Any] = [{"point": [x, y]} for x, y in molmo_points(text, width, height)]
        else:
            points = json_points(text)
        if category != "counting" and len(points) > 1:
            points = points[:1]
        return points

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        mask = load_any_channel_mask(_mask_path(sample))
        prediction = reference_prediction(response, self.wrapper, "PointArena")
        points = self.parse(prediction, mask.shape[1], mask.shape[0], sample.category)
        expected = int(sample.metadata.get("count", 1))
        try:
            success, reason = pointarena_success(points, mask, sample.category, expected)
        except (TypeError, ValueError, KeyError, IndexError) as exc:  # the reference's "processing error"
            success, reason = False, f"processing error: {exc}"
        return self._out(float(success), {"prediction": prediction, "points": points, "reason": reason})

    def oracle(self, sample: Sample) -> str:
        mask = load_any_channel_mask(_mask_path(sample))
        height, width = mask.shape
        col, row = _interior_pixel(mask.astype(np.uint8) * 255)
        count = int(sample.metadata.get("count", 1)) if sample.category == "counting" else 1
        if self.parser == "json":
            return json.dumps([{"point": [float(col), float(row)]}] * max(count, 1))
        point = f'<point x="{100 * col / width:.4f}" y="{100 * row / height:.4f}">target</point>'
        return " ".join([point] * max(count, 1))

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "parser": self.parser,
            "wrapper": self.wrapper,
            **scorer_info("PointArena model_evaluator.py: evaluate_model (Molmo parser: extract_points)"),
        }
