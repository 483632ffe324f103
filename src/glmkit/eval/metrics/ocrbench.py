"""OCRBench as VLMEvalKit scores it (``ocrbench``): a substring hit per item, summed to a score out
of 1000, and glmkit's lenient variant (``ocrbench_lenient``).

Reference: VLMEvalKit ``vlmeval/dataset/image_vqa.py``, ``OCRBench.evaluate``. An item is a hit
when some answer is a substring of the prediction, after:

* Handwritten Mathematical Expression Recognition: ``strip``, newlines to spaces, then every
  **space** removed, case kept (tabs and other whitespace stay);
* every other category: lower case, ``strip``, newlines to spaces.

The prediction is the whole text the GLM model wrapper returns for OCRBench (VLMEvalKit
``vlmeval/vlm/glm.py``, ``GLMThinking.extract_answer``: thinking blocks removed and the first
``<answer>`` kept, but no box extracted, so an answer anywhere in the reply counts). An empty answer
is a substring of everything. The final score is the number of hits (out of 1000 on the full set),
rolled up into Text Recognition (six categories), Scene Text-centric VQA, Doc-oriented VQA, Key
Information Extraction and Handwritten Mathematical Expression Recognition
(:func:`ocrbench_summary`, which the ``ocrbench`` benchmark adds to its summary).

``ocrbench_lenient`` is glmkit's earlier variant: it searches only the final-answer span (box,
``<answer>`` or ``\\boxed{}``), and removes all whitespace in the maths category.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from glmkit.eval.metrics.base import METRICS, reference_answers, scorer_info
from glmkit.eval.metrics.glm_wrapper import check_wrapper, reference_prediction
from glmkit.eval.metrics.text import extract_answer
from glmkit.scoring import Sample, Scores, Verifier

HMER = "Handwritten Mathematical Expression Recognition"
TEXT_RECOGNITION = (
    "Regular Text Recognition",
    "Irregular Text Recognition",
    "Artistic Text Recognition",
    "Handwriting Recognition",
    "Digit String Recognition",
    "Non-Semantic Text Recognition",
)
OCRBENCH_CATEGORIES = (
    *TEXT_RECOGNITION,
    "Scene Text-centric VQA",
    "Doc-oriented VQA",
    "Key Information Extraction",
    HMER,
)


def ocrbench_hit(prediction: str, answers: Sequence[str], category: str) -> bool:
    """OCRBench's hit for one item (see the module docstring)."""
    if category == HMER:
        pred = str(prediction).strip().replace("\n", " ").replace(" ", "")
        return any(str(a).strip().replace("\n", " ").replace(" ", "") in pred for a in answers)
    pred = str(prediction).lower().strip().replace("\n", " ")
    return any(str(a).lower().strip().replace("\n", " ") in pred for a in answers)


def ocrbench_summary(records: list[dict[str, Any]], key: str = "ocrbench") -> dict[str, Any]:
    """VLMEvalKit's OCRBench roll-up of sample records: hits per group, ``Final Score`` and
    ``Final Score Norm`` (score / 10), as ``OCRBench.evaluate`` reports them."""
    per_category = dict.fromkeys(OCRBENCH_CATEGORIES, 0)
    for r in records:
        category = str(r.get("category", ""))
        if category in per_category:
            per_category[category] += int(r.get("scores", {}).get(key, 0.0) >= 1.0)
    final = {
        "Text Recognition": sum(per_category[c] for c in TEXT_RECOGNITION),
        "Scene Text-centric VQA": per_category["Scene Text-centric VQA"],
        "Doc-oriented VQA": per_category["Doc-oriented VQA"],
        "Key Information Extraction": per_category["Key Information Extraction"],
        HMER: per_category[HMER],
    }
    final["Final Score"] = sum(final.values())
    final["Final Score Norm"] = final["Final Score"] / 10
    return {"ocrbench": final}


@METRICS.register("ocrbench")
class OCRBenchScorer(Verifier):
    """OCRBench's substring hit (1 or 0), as VLMEvalKit ``OCRBench.evaluate`` computes it.

    Reference: VLMEvalKit ``vlmeval/dataset/image_vqa.py``, ``OCRBench.evaluate``; the prediction is
    the GLM model wrapper's for OCRBench unless ``wrapper="none"``. The maths rule applies to the
    sample category ``"Handwritten Mathematical Expression Recognition"``.

    Args:
        wrapper: ``"glm"`` or ``"none"``.
        key: the name the score is reported under.
    """

    name = "ocrbench"

    def __init__(self, wrapper: str = "glm", key: str | None = None) -> None:
        super().__init__(key)
        check_wrapper(wrapper, "ocrbench")
        self.wrapper = wrapper

    def check_answer(self, sample: Sample) -> None:
        reference_answers(sample.answer)

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        prediction = reference_prediction(response, self.wrapper, "OCRBench")
        hit = ocrbench_hit(prediction, reference_answers(sample.answer), sample.category)
        return self._out(float(hit), {"prediction": prediction})

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "wrapper": self.wrapper,
            **scorer_info("VLMEvalKit vlmeval/dataset/image_vqa.py: OCRBench.evaluate"),
        }


@METRICS.register("ocrbench_lenient")
class OCRBenchLenientScorer(Verifier):
    """glmkit's OCRBench-style hit on the final-answer span only (box, ``<answer>``, ``\\boxed{}``);
    in the handwritten-maths category all whitespace is removed and case is kept. Not OCRBench's
    score: use ``ocrbench``.

    Args:
        case_sensitive_categories: categories scored with the maths rule.
        key: the name the score is reported under.
    """

    name = "ocrbench_lenient"

    def __init__(self, case_sensitive_categories: Sequence[str] = (HMER,), key: str | None = None) -> None:
        super().__init__(key)
        self.case_sensitive_categories = set(case_sensitive_categories)

    def check_answer(self, sample: Sample) -> None:
        reference_answers(sample.answer)

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        pred = extract_answer(response)
        refs = reference_answers(sample.answer)
        if sample.category in self.case_sensitive_categories:
            pred_n = "".join(pred.split())
            hit = any("".join(r.split()) in pred_n for r in refs)
        else:
            pred_n = pred.lower().strip().replace("\n", " ")
            hit = any(r.lower().strip().replace("\n", " ") in pred_n for r in refs)
        return self._out(float(hit), {"extracted": pred})

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            **scorer_info("glmkit substring hit on the final-answer span", "lenient"),
        }
