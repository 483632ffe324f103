"""glmkit's lenient VQA matching (``vqa_lenient``, ``numeric``, ...): extraction, normalisation,
numbers with commas and percentages, tolerances."""

from __future__ import annotations

import pytest
import torch

from glmkit.eval.metrics.text import extract_answer, normalize_vqa
from glmkit.eval.metrics.vqa import (
    ExactMatchScorer,
    MatchAccuracy,
    NormalizedMatchScorer,
    NumericScorer,
    VQAScorer,
    VQASoftLenientScorer,
    is_numeral,
    numeric_match,
    parse_number,
    parse_numbers,
)
from glmkit.scoring import Sample, Verifier


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>maybe 3</think>so <|begin_of_box|>4<|end_of_box|>", "4"),
        ("<answer> blue </answer>", "blue"),
        (r"thus \boxed{\frac{1}{2}} done", r"\frac{1}{2}"),
        ("<think>long thoughts</think> Paris", "Paris"),
        ("plain", "plain"),
    ],
)
def test_extract_answer(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


def test_normalize_vqa() -> None:
    assert normalize_vqa("The  Two Dogs!") == "2 dogs"
    assert normalize_vqa("1,000 people") == "1000 people"
    assert normalize_vqa("3.5 kg.") == "3.5 kg"
    assert normalize_vqa("It's a cat") == "its cat"
    assert normalize_vqa("dont") == normalize_vqa("don't")


def test_parse_numbers() -> None:
    assert [n.value for n in parse_numbers("1,234.5 and -3 and .5 and 2e3")] == [1234.5, -3, 0.5, 2000]
    assert parse_number("about 45% of them").percent
    assert parse_number("45 percent").value == 45 and parse_number("45 percent").percent
    assert parse_number("$1,200").value == 1200
    assert parse_number("between 2019-2020").value == 2020  # the hyphen is not a minus sign
    assert parse_number("three apples").value == 3
    assert parse_number("none given", which="first").value == 0
    assert parse_number("no digits") is None
    assert parse_number(True) is None
    assert parse_number(7).value == 7


def test_numeric_match_tolerances_and_percent() -> None:
    assert numeric_match("The answer is 42", 42)
    assert not numeric_match("41", 42)
    assert numeric_match("41", 42, abs_tol=1)
    assert numeric_match("104", 100, rel_tol=0.05) and not numeric_match("106", 100, rel_tol=0.05)
    assert numeric_match("45%", "0.45") and numeric_match("0.45", "45%") and numeric_match("45%", 45)
    assert not numeric_match("4500", "45%")  # only the direction the percent sign allows
    assert not numeric_match("45%", "0.45", percent_equivalence=False)
    assert numeric_match("1,234", "1234") and numeric_match("0.1", 0.1 + 1e-12)
    assert not numeric_match("0", 5, rel_tol=0.05) and numeric_match("0", 0, rel_tol=0.05)
    assert not numeric_match("no number", 3)


def test_scorers() -> None:
    s = Sample("s", "q", ["Blue", "navy"])
    assert ExactMatchScorer().score(s, " Blue ").scores["exact_match"] == 1.0
    assert ExactMatchScorer().score(s, "blue").scores["exact_match"] == 0.0
    assert NormalizedMatchScorer().score(s, "The blue.").scores["normalized_match"] == 1.0
    assert NormalizedMatchScorer().score(s, "it is blue").scores["normalized_match"] == 0.0
    assert NormalizedMatchScorer(contains=True).score(s, "it is blue").scores["normalized_match"] == 1.0
    assert NormalizedMatchScorer(contains=True).score(s, "bluest").scores["normalized_match"] == 0.0
    chart = Sample("c", "q", 80, metadata={"rel_tol": 0.05})
    assert NumericScorer().score(chart, "about 83").scores["numeric"] == 1.0
    assert NumericScorer().score(chart, "85").scores["numeric"] == 0.0
    with pytest.raises(ValueError, match="holds no number"):
        NumericScorer().check_answer(Sample("x", "q", "blue"))
    vqa = VQAScorer()
    assert vqa.key == "vqa_lenient"
    assert vqa.score(Sample("n", "q", 2), "two").scores["vqa_lenient"] == 1.0
    assert vqa.score(Sample("t", "q", "two"), "2").scores["vqa_lenient"] == 1.0  # normalised text path
    assert vqa.score(Sample("t", "q", "red"), "Red.").details["mode"] == "normalized"
    humans = Sample("h", "q", ["cat"] * 2 + ["kitten"] * 8)
    assert VQASoftLenientScorer().score(humans, "cat").scores["vqa_soft_lenient"] == pytest.approx(2 / 3)
    assert VQASoftLenientScorer().score(humans, "kitten").scores["vqa_soft_lenient"] == 1.0


def test_vqa_compares_a_numeral_string_reference_by_value_with_the_tolerance() -> None:
    # Numeral strings are numbers to the lenient matcher (chartqa_lenient is it at 5%).
    from glmkit.eval.metrics.chartqa import ChartQALenientScorer

    lenient = ChartQALenientScorer()
    for answer in ("45", ["45"], " 1,234 ", "45%"):
        sample = Sample("c", "q", answer)
        out = lenient.score(sample, "46" if answer != " 1,234 " else "1,200")
        assert out.scores["chartqa_lenient"] == 1.0 and out.details["mode"] == "numeric", answer
    assert lenient.score(Sample("c", "q", "45"), "48").scores["chartqa_lenient"] == 0.0  # 6.7% off
    assert lenient.score(Sample("c", "q", "45%"), "0.46").scores["chartqa_lenient"] == 1.0
    assert (
        VQAScorer().score(Sample("c", "q", "45"), "45.0").scores["vqa_lenient"] == 1.0
    )  # by value, not text


def test_vqa_keeps_non_numeral_string_references_as_text() -> None:
    vqa = VQAScorer(rel_tol=0.05)
    for answer in ("45 apples", "two", ["45", "forty-five"], "red"):
        assert vqa.score(Sample("t", "q", answer), "46 apples").details["mode"] == "normalized", answer
    assert vqa.score(Sample("t", "q", "45 apples"), "46 apples").scores["vqa_lenient"] == 0.0
    assert vqa.score(Sample("t", "q", ["45", "forty-five"]), "forty-five").scores["vqa_lenient"] == 1.0
    assert all(is_numeral(v) for v in ("-3.5", "$12", "1e5", "45 percent", 7, 0.5))
    assert not any(is_numeral(v) for v in ("4.5.6", "", "45 apples", True, None))


def test_match_accuracy_torchmetric() -> None:
    metric = MatchAccuracy(mode="numeric", rel_tol=0.05)
    metric.update(["100", "50%", "abc"], [102, "0.5", 3])
    assert metric.compute().item() == pytest.approx(2 / 3)
    metric = MatchAccuracy(mode="normalized")
    metric.update(["The Cat"], [["cat", "dog"]])
    assert metric.compute() == torch.tensor(1.0, dtype=torch.float64)
    with pytest.raises(ValueError, match="mode='fuzzy'"):
        MatchAccuracy(mode="fuzzy")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("scorer", "answer"),
    [
        (ExactMatchScorer(), "blue"),
        (ExactMatchScorer(extract=False), "blue"),
        (NormalizedMatchScorer(), "blue"),
        (VQASoftLenientScorer(), ["blue"] * 3),
        (NumericScorer(), "4"),
        (VQAScorer(), "4"),
    ],
)
def test_vqa_scorers_ignore_thinking(scorer: Verifier, answer: str | list[str]) -> None:
    ref = answer[0] if isinstance(answer, list) else answer
    wrong = "7" if ref == "4" else "red"
    sample = Sample("s", "q", answer)
    right_after_draft = f"<think>is it {wrong}? <answer>{wrong}</answer></think>{ref}"
    assert scorer.score(sample, right_after_draft).scores[scorer.key] == 1.0
    draft_right = f"I guess {ref}</think>{wrong}"
    assert scorer.score(sample, draft_right).scores[scorer.key] == 0.0
