"""Final-answer extraction from thinking-style outputs: strip_thinking, answer_span, extract_answer."""

from __future__ import annotations

import pytest

from glmkit.eval.metrics.text import answer_span, extract_answer, strip_thinking


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>draft [1,2,3,4]</think>final", "final"),
        ("<THINK>a</THINK>b<think>c</think>d", "bd"),
        # The chat template opened <think> in the prompt: the reply starts inside the block.
        ("reasoning (600, 600)</think>answer", "answer"),
        # A generation cut off while thinking has no answer.
        ("prefix <think>still thinking [5,5,9,9]", "prefix "),
        ("no reasoning at all", "no reasoning at all"),
        (None, ""),
    ],
)
def test_strip_thinking(text: str | None, expected: str) -> None:
    assert strip_thinking(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A box span inside the reasoning is a draft; the one after it is the answer.
        (
            "<think>try <|begin_of_box|>[[5,5,7,7]]<|end_of_box|></think>"
            "<answer><|begin_of_box|>[[1,1,2,2]]<|end_of_box|></answer>",
            "[[1,1,2,2]]",
        ),
        ("<think><answer>no</answer></think><answer>yes</answer>", "yes"),
        ("<|begin_of_box|>a<|end_of_box|> then <|begin_of_box|>b<|end_of_box|>", "b"),
        ("<answer>x</answer> <answer>y</answer>", "y"),
        ("<think>[9,9,9,9]</think>  the cup at [1,2,3,4] ", "the cup at [1,2,3,4]"),
        # When thinking holds the only box, nothing is left to score.
        ("<think><|begin_of_box|>[[1,1,2,2]]<|end_of_box|></think>", ""),
    ],
)
def test_answer_span_prefers_last_box_or_answer_outside_thinking(text: str, expected: str) -> None:
    assert answer_span(text) == expected


def test_extract_answer_ignores_boxes_in_thinking() -> None:
    # Before the fix the box inside <think> won because it was searched for in the raw text.
    assert (
        extract_answer("<think><|begin_of_box|>3<|end_of_box|></think>The answer is 4") == "The answer is 4"
    )
    assert extract_answer("<think>\\boxed{3}</think>\\boxed{4}") == "4"
    assert extract_answer("unclosed draft \\boxed{3}</think>\\boxed{4}") == "4"
