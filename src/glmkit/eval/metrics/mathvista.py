"""MathVista accuracy as its evaluation code computes it (``mathvista``).

Reference: MathVista (lupantech/MathVista) ``evaluation/extract_answer.py``, ``extract_answer``
(the rule steps), and ``evaluation/calculate_score.py``, ``normalize_extracted_answer`` and
``safe_equal``. Each sample's ``metadata`` gives ``question_type`` (``multi_choice`` or
``free_form``), ``answer_type`` (``integer``, ``float``, ``text`` or ``list``), ``precision``
(decimal places of a float answer) and ``choices`` (multi-choice options); the answer is compared
as a string, as MathVista's data stores it.

1. **Extraction** (``extract_answer``): an empty response gives ``""``; a multi-choice response that
   is one of the choices is kept; for an integer answer, ``int(response)`` if it parses; for a float
   answer, ``str(float(response))`` if it parses; with ``quick_extract``, the text of
   ``The answer is "...".``. Otherwise MathVista asks GPT-4 to extract the answer. glmkit does not
   run that model: ``fallback="response"`` (default) passes the response itself on (for GLM models
   the wrapper already reduced it to the boxed answer), ``fallback="empty"`` passes ``""``, which is
   what the reference does when its extraction request fails.
2. **Normalisation** (``normalize_extracted_answer``): multi-choice: the stripped text, a letter in
   parentheses (``(b) text`` -> ``B``), a letter among the options mapped to its choice, else the
   choice closest in Levenshtein distance (the first of equals; an empty extraction picks the
   shortest choice); integer: ``str(int(float(x)))``, so ``3.7`` becomes ``3``; float:
   ``str(round(float(x), precision))``, so ``1.4523`` becomes ``1.45`` at precision 2; list:
   ``str(x)``; anything unparsable becomes ``None`` (never correct).
3. **Comparison** (``safe_equal``): the normalised prediction equals the answer.

The precision may be given as an integral float (``2.0``, as parquet exports store it); it is used
as the integer it holds (the reference's ``round`` would refuse a float and score the item 0).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from glmkit.eval.metrics.base import METRICS, scorer_info
from glmkit.eval.metrics.glm_wrapper import check_wrapper, reference_prediction
from glmkit.eval.metrics.text import levenshtein
from glmkit.scoring import Sample, Scores, Verifier

QUESTION_TYPES = ("multi_choice", "free_form")
ANSWER_TYPES = ("integer", "float", "text", "list")
_QUICK = re.compile(r'The answer is "(.*)"\.')
_LETTER_IN_PARENS = re.compile(r"\(([a-zA-Z])\)")


def extract_by_rules(
    response: str, question_type: str, answer_type: str, choices: Sequence[str], quick_extract: bool = False
) -> str | None:
    """The rule steps of MathVista's ``extract_answer``; None where it would ask GPT-4."""
    if response == "":
        return ""
    if question_type == "multi_choice" and response in choices:
        return response
    if answer_type == "integer":
        try:
            return str(int(response))
        except ValueError:
            pass
    if answer_type == "float":
        try:
            return str(float(response))
        except ValueError:
            pass
    if quick_extract:
        found = _QUICK.search(response)
        if found:
            return found.group(1)
    return None


def most_similar_choice(prediction: str, choices: Sequence[str]) -> str:
    """The choice at the smallest Levenshtein distance from ``prediction`` (the first of equals)."""
    distances = [levenshtein(prediction, str(choice)) for choice in choices]
    return choices[distances.index(min(distances))]


def normalize_extracted_answer(
    extraction: Any, choices: Sequence[str], question_type: str, answer_type: str, precision: int | None
) -> str | None:
    """MathVista's normalisation of an extracted answer to the answer's type (module docstring, step 2)."""
    if question_type == "multi_choice":
        text = extraction.strip() if isinstance(extraction, str) else str(extraction)
        letters = _LETTER_IN_PARENS.findall(text)
        if letters:
            text = letters[0].upper()
        options = [chr(ord("A") + i) for i in range(len(choices))]
        if text in options:
            return choices[options.index(text)]
        return most_similar_choice(text, choices)
    if answer_type == "integer":
        try:
            return str(int(float(extraction)))
        except (TypeError, ValueError, OverflowError):
            return None
    if answer_type == "float":
        try:
            return str(round(float(extraction), int(precision)))  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            return None
    if answer_type == "list":
        return str(extraction)
    return extraction


def _precision(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@METRICS.register("mathvista")
class MathVistaScorer(Verifier):
    """MathVista accuracy: 1 when the extracted, normalised answer equals the reference string.

    Reference: MathVista ``evaluation/extract_answer.py`` (``extract_answer``, rule steps) and
    ``evaluation/calculate_score.py`` (``normalize_extracted_answer``, ``safe_equal``); the
    response is the GLM model wrapper's (VLMEvalKit ``vlmeval/vlm/glm.py``,
    ``GLMThinking.extract_answer``) unless ``wrapper="none"``.

    Args:
        quick_extract: also read ``The answer is "...".`` (MathVista's ``--quick_extract``).
        fallback: what stands in for the GPT-4 extraction: ``"response"`` or ``"empty"``.
        wrapper: ``"glm"`` or ``"none"``.
        key: the name the score is reported under.
    """

    name = "mathvista"

    def __init__(
        self,
        quick_extract: bool = False,
        fallback: Literal["response", "empty"] = "response",
        wrapper: str = "glm",
        key: str | None = None,
    ) -> None:
        super().__init__(key)
        if fallback not in ("response", "empty"):
            raise ValueError(f"mathvista: fallback={fallback!r}; valid: response, empty")
        check_wrapper(wrapper, "mathvista")
        self.quick_extract = quick_extract
        self.fallback = fallback
        self.wrapper = wrapper

    def check_answer(self, sample: Sample) -> None:
        meta = sample.metadata
        if isinstance(sample.answer, (dict, list)) or sample.answer is None:
            raise ValueError(f"mathvista: expected the answer as a string, got {sample.answer!r}")
        if meta.get("question_type") not in QUESTION_TYPES:
            raise ValueError(
                f"mathvista: metadata.question_type must be one of {', '.join(QUESTION_TYPES)}, "
                f"got {meta.get('question_type')!r}"
            )
        if meta.get("answer_type") not in ANSWER_TYPES:
            raise ValueError(
                f"mathvista: metadata.answer_type must be one of {', '.join(ANSWER_TYPES)}, "
                f"got {meta.get('answer_type')!r}"
            )
        if meta["question_type"] == "multi_choice" and not (
            isinstance(meta.get("choices"), list) and meta["choices"]
        ):
            raise ValueError("mathvista: a multi_choice sample needs metadata.choices, a non-empty list")
        if meta["answer_type"] == "float" and not isinstance(_precision(meta.get("precision")), int):
            raise ValueError(
                f"mathvista: a float answer needs metadata.precision (decimal places), got {meta.get('precision')!r}"
            )

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        meta = sample.metadata
        question_type, answer_type = meta["question_type"], meta["answer_type"]
        choices = [str(c) for c in meta.get("choices") or []]
        text = reference_prediction(response, self.wrapper, "MathVista_MINI")
        extraction = extract_by_rules(text, question_type, answer_type, choices, self.quick_extract)
        by_rule = extraction is not None
        if extraction is None:
            extraction = text if self.fallback == "response" else ""
        prediction = normalize_extracted_answer(
            extraction, choices, question_type, answer_type, _precision(meta.get("precision"))
        )
        hit = prediction == str(sample.answer)
        return self._out(
            float(hit), {"extraction": extraction, "extracted_by_rule": by_rule, "prediction": prediction}
        )

    def oracle(self, sample: Sample) -> str:
        return str(sample.answer)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "quick_extract": self.quick_extract,
            "fallback": self.fallback,
            "wrapper": self.wrapper,
            **scorer_info(
                "MathVista evaluation/calculate_score.py: normalize_extracted_answer + safe_equal "
                "(extraction: extract_answer rules; no GPT-4 step)"
            ),
        }
