"""The regular-expression format verifier."""

from __future__ import annotations

import pytest

from glmkit.eval.metrics import METRICS
from glmkit.eval.metrics.answer_format import AnswerFormat
from glmkit.scoring import Sample

SAMPLE = Sample("s", "How many?", "3")


@pytest.mark.parametrize(
    ("response", "ok"),
    [
        ("<think>count them</think><answer>3</answer>", True),
        ("<think>a\nb</think>\n<answer>3</answer>\n", True),
        ("<answer>3</answer>", True),  # reasoning is optional
        ("3", False),
        ("<think>x</think>3", False),
        ("<think>x</think><answer></answer>", False),  # an empty answer is no answer
        ("<think>x</think><answer>  </answer>", False),
        ("<answer>3</answer><answer>4</answer>", False),  # one answer only
        ("<think>x<think>y</think></think><answer>3</answer>", False),  # unbalanced
        ("<think>x</think><answer>3</answer> trailing text", False),
        ("<think>x</think>", False),
    ],
)
def test_default_think_answer_format(response: str, ok: bool) -> None:
    assert AnswerFormat().score(SAMPLE, response).scores == {"answer_format": float(ok)}


def test_custom_pattern_search_and_oracle() -> None:
    boxed = AnswerFormat(pattern=r"\\boxed\{[^}]+\}", match="search", key="boxed")
    assert boxed.score(SAMPLE, "so \\boxed{3}.").scores == {"boxed": 1.0}
    assert boxed.score(SAMPLE, "so 3.").scores == {"boxed": 0.0}
    assert AnswerFormat().score(SAMPLE, AnswerFormat().oracle(SAMPLE)).scores["answer_format"] == 1.0
    assert METRICS.get("answer_format") is AnswerFormat


def test_bad_settings_name_the_value() -> None:
    with pytest.raises(ValueError, match=r"pattern '\(' is not a regular expression"):
        AnswerFormat(pattern="(")
    with pytest.raises(ValueError, match="match must be 'full' or 'search', got 'all'"):
        AnswerFormat(match="all")  # type: ignore[arg-type]
