"""MMSearch end-to-end score: SQuAD-style token F1 of the answer (``mmsearch``).

Reference: MMSearch (CaraJ7/MMSearch) ``score/f1_score.py``, ``get_f1_score`` and
``normalize_answer`` (copied into lmms-eval as ``lmms_eval/tasks/mmsearch/score/f1_score.py``),
with the best of the ground truth and the alternative answers as lmms-eval's
``mmsearch_aggregate_results_f1_score`` takes it.

Both texts are lower-cased, stripped of ASCII punctuation (``string.punctuation``; full-width and
Chinese punctuation stay), of the whole words a, an and the, and split on whitespace. F1 =
2PR/(P+R) over the multiset of shared tokens; when either side has no token, F1 is 1 if both have
none and 0 otherwise. A text without spaces is one token, so a Chinese answer scores 1 or 0.

The answer is the ground truth, or a list whose first item is the ground truth and the rest its
alternatives (``metadata.alternative_gt_answers`` is read too); the prediction is the GLM model
wrapper's (VLMEvalKit ``vlmeval/vlm/glm.py``, ``GLMThinking.extract_answer``) unless
``wrapper="none"``.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping
from typing import Any

from glmkit.eval.metrics.base import METRICS, reference_answers, scorer_info
from glmkit.eval.metrics.glm_wrapper import check_wrapper, reference_prediction
from glmkit.scoring import Sample, Scores, Verifier

_ARTICLE = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, ASCII punctuation removed, articles removed, whitespace collapsed."""
    text = "".join(ch for ch in str(text).lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLE.sub(" ", text).split())


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def token_f1(prediction: str, answer: str) -> float:
    """SQuAD-style token F1 of ``prediction`` against ``answer`` (see the module docstring)."""
    gold, pred = _tokens(answer), _tokens(prediction)
    if not gold or not pred:
        return float(gold == pred)
    shared = sum((Counter(gold) & Counter(pred)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(pred), shared / len(gold)
    return 2 * precision * recall / (precision + recall)


@METRICS.register("mmsearch")
class MMSearchScorer(Verifier):
    """MMSearch end-to-end F1 against the ground truth and its alternatives (the best counts).

    Reference: MMSearch ``score/f1_score.py``, ``get_f1_score``, maximised over the alternative
    answers as in lmms-eval ``lmms_eval/tasks/mmsearch/lmms_eval_utils.py``,
    ``mmsearch_aggregate_results_f1_score``.

    Args:
        wrapper: ``"glm"`` or ``"none"``.
        key: the name the score is reported under.
    """

    name = "mmsearch"

    def __init__(self, wrapper: str = "glm", key: str | None = None) -> None:
        super().__init__(key)
        check_wrapper(wrapper, "mmsearch")
        self.wrapper = wrapper

    def check_answer(self, sample: Sample) -> None:
        reference_answers(sample.answer)

    def _answers(self, sample: Sample) -> list[str]:
        answers = reference_answers(sample.answer)
        extra = sample.metadata.get("alternative_gt_answers") or []
        return answers + [str(a) for a in (extra if isinstance(extra, list) else [extra])]

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        prediction = reference_prediction(response, self.wrapper, "MMSearch")
        f1 = max(token_f1(prediction, answer) for answer in self._answers(sample))
        return self._out(f1, {"prediction": prediction})

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "wrapper": self.wrapper,
            **scorer_info("MMSearch score/f1_score.py: get_f1_score"),
        }
