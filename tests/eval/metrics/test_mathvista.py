"""Parity of ``mathvista`` with MathVista ``evaluation/extract_answer.py`` (rule steps) and
``evaluation/calculate_score.py`` (``normalize_extracted_answer``, ``safe_equal``), after the GLM wrapper.

Extraction: "" stays ""; a multi-choice reply equal to a choice is kept; ``int(reply)`` for integer
answers; ``str(float(reply))`` for float answers; with ``quick_extract`` the text of
``The answer is "...".``; else (where MathVista asks GPT-4) the reply itself (``fallback="response"``)
or "" (``fallback="empty"``). Normalisation: letters in parentheses, option letters, else the closest
choice; ``str(int(float(x)))``; ``str(round(float(x), precision))``; ``str(x)``.
"""

from __future__ import annotations

from typing import Any

import pytest

from glmkit.eval.metrics.mathvista import MathVistaScorer, normalize_extracted_answer
from glmkit.scoring import Sample

B, E = "<|begin_of_box|>", "<|end_of_box|>"
CM = ["3 cm", "5 cm", "7 cm"]
FREE, MC = "free_form", "multi_choice"

# (response, answer, question_type, answer_type, precision, choices, quick_extract, fallback, expected)
CASES: list[tuple[Any, ...]] = [
    # float answers are rounded to the answer's precision: 1.4523 -> 1.45
    ("1.4523", "1.45", FREE, "float", 2, None, False, "response", 1.0),
    # integer answers are truncated: int(float("3.7")) == 3
    ("3.7", "3", FREE, "integer", None, None, False, "response", 1.0),
    # a letter in parentheses picks the option
    ("(B) 5 cm", "5 cm", MC, "text", None, CM, False, "response", 1.0),
    ("B", "5 cm", MC, "text", None, CM, False, "response", 1.0),
    # a lower-case bare letter is no option: the closest choice by edit distance (all 4) is the first
    ("b", "5 cm", MC, "text", None, CM, False, "response", 0.0),
    # an empty reply picks the shortest choice ("2" is 1 edit from "")
    ("", "2", MC, "text", None, ["10", "2", "300"], False, "response", 1.0),
    # "1,234" parses neither as int nor as float
    ("1,234", "1234", FREE, "integer", None, None, False, "response", 0.0),
    # int("12.0") fails, but the normaliser's int(float(.)) gives 12
    ("12.0", "12", FREE, "integer", None, None, False, "response", 1.0),
    ("3.14159", "3.1", FREE, "float", 1, None, False, "response", 1.0),
    # str(round(2.5, 2)) is "2.5", not "2.50"
    ("2.5", "2.50", FREE, "float", 2, None, False, "response", 0.0),
    # Python rounds 0.125 half to even: 0.12
    ("0.125", "0.12", FREE, "float", 2, None, False, "response", 1.0),
    ("0.125", "0.13", FREE, "float", 2, None, False, "response", 0.0),
    # truncation toward zero
    ("-3.9", "-3", FREE, "integer", None, None, False, "response", 1.0),
    # text answers compare exactly
    ("Yes", "yes", FREE, "text", None, None, False, "response", 0.0),
    ("[1, 2, 3]", "[1, 2, 3]", FREE, "list", None, None, False, "response", 1.0),
    # quick extraction reads the quoted answer
    ('The answer is "7".', "7", FREE, "integer", None, None, True, "response", 1.0),
    # without it the sentence reaches int(float(.)) and fails
    ('The answer is "7".', "7", FREE, "integer", None, None, False, "response", 0.0),
    # GLM wrapper: the boxed 4.0 -> int(float) -> "4"
    (f"<think>hmm</think>{B}4.0{E}", "4", FREE, "integer", None, None, False, "response", 1.0),
    # fallback "empty" is the reference without its GPT extraction: "" -> None
    ("12.0", "12", FREE, "integer", None, None, False, "empty", 0.0),
    # ... but rule-extracted answers are unaffected
    ("12", "12", FREE, "integer", None, None, False, "empty", 1.0),
    ("5 cm", "5 cm", MC, "text", None, CM, False, "response", 1.0),
    ("(c)", "5 cm", MC, "text", None, CM, False, "response", 0.0),
    # str(float("1e-3")) is "0.001"
    ("1e-3", "0.001", FREE, "float", 3, None, False, "response", 1.0),
    # int(float("inf")) overflows: None
    ("inf", "1", FREE, "integer", None, None, False, "response", 0.0),
    ("北京", "北京", FREE, "text", None, None, False, "response", 1.0),
    # a float precision stored as 2.0 (parquet exports) is used as 2
    ("1.4523", "1.45", FREE, "float", 2.0, None, False, "response", 1.0),
]


@pytest.mark.parametrize(
    ("response", "answer", "qtype", "atype", "precision", "choices", "quick", "fallback", "expected"), CASES
)
def test_mathvista_matches_the_reference(
    response: str,
    answer: str,
    qtype: str,
    atype: str,
    precision: Any,
    choices: list[str] | None,
    quick: bool,
    fallback: str,
    expected: float,
) -> None:
    meta: dict[str, Any] = {"question_type": qtype, "answer_type": atype}
    if precision is not None:
        meta["precision"] = precision
    if choices is not None:
        meta["choices"] = choices
    sample = Sample("m", "q", answer, metadata=meta)
    scorer = MathVistaScorer(quick_extract=quick, fallback=fallback)  # type: ignore[arg-type]
    scorer.check_answer(sample)
    assert scorer.score(sample, response).scores["mathvista"] == expected


def test_bad_metadata_is_refused_and_the_oracle_scores() -> None:
    scorer = MathVistaScorer()
    with pytest.raises(ValueError, match="question_type"):
        scorer.check_answer(Sample("m", "q", "1", metadata={"answer_type": "integer"}))
    with pytest.raises(ValueError, match="needs metadata.choices"):
        scorer.check_answer(Sample("m", "q", "a", metadata={"question_type": MC, "answer_type": "text"}))
    with pytest.raises(ValueError, match="needs metadata.precision"):
        scorer.check_answer(Sample("m", "q", "1.5", metadata={"question_type": FREE, "answer_type": "float"}))
    sample = Sample("m", "q", "5 cm", metadata={"question_type": MC, "answer_type": "text", "choices": CM})
    assert scorer.score(sample, scorer.oracle(sample)).scores["mathvista"] == 1.0
    assert normalize_extracted_answer(None, [], FREE, "list", None) == "None"
