"""ANLS, the DocVQA / InfographicVQA metric, as lmms-eval and the DocVQA evaluation compute it (``anls``).

Reference: lmms-eval ``lmms_eval/api/metrics.py``, ``anls`` (after Qwen-VL's
``eval_mm/infographicsvqa_eval.py`` and the DocVQA RRC evaluation script). For each reference
answer the normalised Levenshtein distance is

    NL = lev(norm(answer), norm(prediction)) / max(len(answer.upper()), len(prediction.upper())),

with norm = strip, lower case, runs of whitespace collapsed to one space, but the lengths taken
from the **raw** strings (``"  12 "`` is 5 long, ``"ß".upper()`` is 2); NL is 0 when both are
empty. The score is 1 - min(NL) over the answers, set to 0 when it is below the threshold (0.5):
a score of exactly 0.5 counts (``"13"`` against ``"12"`` scores 0.5).

VLMEvalKit's ``anls_compute`` (``vlmeval/dataset/utils/vqa_eval.py``) takes the lengths from the
normalised strings instead; ``lengths="normalized"`` reproduces it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from glmkit.eval.metrics.base import METRICS, reference_answers, scorer_info
from glmkit.eval.metrics.glm_wrapper import check_wrapper, reference_prediction
from glmkit.eval.metrics.text import levenshtein
from glmkit.scoring import Sample, Scores, Verifier

LengthMode = Literal["raw", "normalized"]


def _norm(text: str) -> str:
    return " ".join(text.strip().lower().split())


def anls_distance(answer: str, prediction: str, lengths: LengthMode = "raw") -> float:
    """The normalised Levenshtein distance NL of one answer (see the module docstring)."""
    gt, det = _norm(answer), _norm(prediction)
    if lengths == "raw":
        longest = max(len(answer.upper()), len(prediction.upper()))
    elif lengths == "normalized":
        longest = max(len(gt), len(det))
    else:
        raise ValueError(f"lengths={lengths!r}; valid: raw, normalized")
    return 0.0 if longest == 0 else levenshtein(gt, det) / longest


def anls(
    prediction: str, references: Sequence[str], threshold: float = 0.5, lengths: LengthMode = "raw"
) -> float:
    """ANLS of one prediction: 1 - the smallest NL over the references, 0 below ``threshold``."""
    similarity = 1.0 - min(anls_distance(str(ref), str(prediction), lengths) for ref in references)
    return 0.0 if similarity < threshold else similarity


@METRICS.register("anls")
class ANLSScorer(Verifier):
    """ANLS with threshold 0.5 (DocVQA, InfographicVQA).

    Reference: lmms-eval ``lmms_eval/api/metrics.py``, ``anls``; the prediction is the GLM model
    wrapper's (VLMEvalKit ``vlmeval/vlm/glm.py``, ``GLMThinking.extract_answer``) unless
    ``wrapper="none"``.

    Args:
        threshold: similarities below it score 0 (0.5).
        lengths: ``"raw"`` (lmms-eval, DocVQA script) or ``"normalized"`` (VLMEvalKit's ``anls_compute``).
        wrapper: ``"glm"`` or ``"none"``.
        key: the name the score is reported under.
    """

    name = "anls"

    def __init__(
        self,
        threshold: float = 0.5,
        lengths: LengthMode = "raw",
        wrapper: str = "glm",
        key: str | None = None,
    ) -> None:
        super().__init__(key)
        anls_distance("", "", lengths)  # validates the mode early
        check_wrapper(wrapper, "anls")
        self.threshold = threshold
        self.lengths = lengths
        self.wrapper = wrapper

    def check_answer(self, sample: Sample) -> None:
        reference_answers(sample.answer)

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        prediction = reference_prediction(response, self.wrapper, "DocVQA_VAL")
        value = anls(prediction, reference_answers(sample.answer), self.threshold, self.lengths)
        return self._out(value, {"prediction": prediction})

    def describe(self) -> dict[str, Any]:
        where = (
            "lmms-eval lmms_eval/api/metrics.py: anls"
            if self.lengths == "raw"
            else "VLMEvalKit vlmeval/dataset/utils/vqa_eval.py: anls_compute + hit_calculate"
        )
        return {
            **super().describe(),
            "threshold": self.threshold,
            "lengths": self.lengths,
            "wrapper": self.wrapper,
            **scorer_info(where),
        }
