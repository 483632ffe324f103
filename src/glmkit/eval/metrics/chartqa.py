"""ChartQA relaxed accuracy as VLMEvalKit and lmms-eval compute it (``chartqa``), and glmkit's
lenient variant (``chartqa_lenient``).

Reference: VLMEvalKit ``vlmeval/dataset/utils/vqa_eval.py``, ``relaxed_correctness`` (called by
``process_line(method='relaxed_accuracy')``; ``hit_calculate`` keeps the best answer), the same
function as lmms-eval ``lmms_eval/tasks/chartqa/utils.py``, ``relaxed_correctness`` (from
pix2struct and Qwen-VL). The **whole** stripped prediction is converted with Python's ``float``
(a trailing ``%`` divides by 100); when both sides convert and the target is non-zero, the
prediction is correct within 5% relative change; otherwise it must equal the target ignoring case.
So ``"12"`` is right for ``"12.5"``, while ``"The answer is 12"``, ``"1,234"`` and ``"12%"`` against
``"12"`` are wrong, and ``"0.0"`` against ``"0"`` is wrong (a zero target falls back to text).

``chartqa_lenient`` is glmkit's :class:`~glmkit.eval.metrics.vqa.VQAScorer` at 5% tolerance: it
reads the last number of the answer (separators, currency, number words, percent either way), so it
accepts answers the reference rejects. Its numbers are not ChartQA numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from glmkit.eval.metrics.base import METRICS, reference_answers, scorer_info
from glmkit.eval.metrics.glm_wrapper import check_wrapper, reference_prediction
from glmkit.eval.metrics.vqa import VQAScorer
from glmkit.scoring import Sample, Scores, Verifier


def _as_float(text: str) -> float | None:
    """Python's ``float`` of the text (``%`` at the end: divided by 100), or None."""
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def relaxed_correctness(target: Any, prediction: Any, max_relative_change: float = 0.05) -> bool:
    """ChartQA's relaxed match of one prediction against one target (see the module docstring)."""
    target, prediction = str(target), str(prediction)
    pred_value, target_value = _as_float(prediction), _as_float(target)
    if pred_value is not None and target_value:  # a zero (or unparsable) target compares as text
        return abs(pred_value - target_value) / abs(target_value) <= max_relative_change
    return prediction.lower() == target.lower()


@METRICS.register("chartqa")
class ChartQAScorer(Verifier):
    """ChartQA relaxed accuracy, 1 when the prediction is relaxed-correct for some answer.

    Reference: VLMEvalKit ``vlmeval/dataset/utils/vqa_eval.py``, ``relaxed_correctness`` through
    ``process_line(method='relaxed_accuracy')`` (prediction stripped, best answer kept); the
    prediction is the GLM model wrapper's (``vlmeval/vlm/glm.py``, ``GLMThinking.extract_answer``)
    unless ``wrapper="none"``.

    Args:
        max_relative_change: the tolerance on numbers (0.05 in ChartQA).
        wrapper: ``"glm"`` or ``"none"`` (see :mod:`~glmkit.eval.metrics.glm_wrapper`).
        key: the name the score is reported under.
    """

    name = "chartqa"

    def __init__(
        self, max_relative_change: float = 0.05, wrapper: str = "glm", key: str | None = None
    ) -> None:
        super().__init__(key)
        check_wrapper(wrapper, "chartqa")
        self.max_relative_change = max_relative_change
        self.wrapper = wrapper

    def check_answer(self, sample: Sample) -> None:
        reference_answers(sample.answer)

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        prediction = reference_prediction(response, self.wrapper, "ChartQA_TEST").strip()
        hit = any(
            relaxed_correctness(answer, prediction, self.max_relative_change)
            for answer in reference_answers(sample.answer)
        )
        return self._out(float(hit), {"prediction": prediction})

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "max_relative_change": self.max_relative_change,
            "wrapper": self.wrapper,
            **scorer_info("VLMEvalKit vlmeval/dataset/utils/vqa_eval.py: relaxed_correctness"),
        }


@METRICS.register("chartqa_lenient")
class ChartQALenientScorer(VQAScorer):
    """glmkit's lenient chart-QA match: :class:`~glmkit.eval.metrics.vqa.VQAScorer` with a 5%
    relative tolerance (the last number of the answer, read with separators, currency, number words
    and percent). Not ChartQA's relaxed accuracy: use ``chartqa`` for numbers to publish."""

    name = "chartqa_lenient"

    def __init__(self, rel_tol: float = 0.05, abs_tol: float = 0.0, key: str | None = None) -> None:
        super().__init__(rel_tol=rel_tol, abs_tol=abs_tol, key=key)
