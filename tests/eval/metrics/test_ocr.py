"""OCR metrics: Levenshtein, NED with normalisation options, ANLS, OCRBench hit."""

from __future__ import annotations

import itertools
from functools import cache

import pytest

from glmkit.eval.metrics.ocr import (
    ANLSScorer,
    EditDistanceScorer,
    NormalizedEditDistance,
    OCRBenchScorer,
    anls,
    normalized_edit_distance,
)
from glmkit.eval.metrics.text import levenshtein
from glmkit.scoring import Sample


def _reference_lev(a: str, b: str) -> int:
    @cache
    def d(i: int, j: int) -> int:
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))

    return d(len(a), len(b))


def test_levenshtein_known_values_and_reference() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("flaw", "lawn") == 2
    assert levenshtein("", "abc") == 3
    assert levenshtein("abc", "abc") == 0
    for a, b in itertools.product(["", "a", "ab", "ba", "abc", "cab", "aabb"], repeat=2):
        assert levenshtein(a, b) == _reference_lev(a, b), (a, b)


def test_ned_hand_computed_and_options() -> None:
    assert normalized_edit_distance("kitten", "sitting") == pytest.approx(3 / 7)
    assert normalized_edit_distance("", "") == 0.0
    assert normalized_edit_distance("abc", "") == 1.0
    assert normalized_edit_distance("Hello  World", "hello world") == pytest.approx(2 / 11)
    assert normalized_edit_distance("Hello  World", "hello world", lowercase=True) == 0.0
    assert normalized_edit_distance("a b c", "abc", whitespace="remove") == 0.0
    assert normalized_edit_distance("a  b", "a b", whitespace="keep") == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="whitespace='squash'"):
        normalized_edit_distance("a", "b", whitespace="squash")  # type: ignore[arg-type]


def test_edit_distance_scorer_best_reference_and_extraction() -> None:
    sample = Sample("s", "q", ["EXIT", "Exit sign"])
    scorer = EditDistanceScorer()
    out = scorer.score(sample, "<|begin_of_box|>EXlT<|end_of_box|>")
    assert out.scores == {"ocr_ned": pytest.approx(0.75), "ocr_ned.ned": pytest.approx(0.25)}
    assert scorer.score(sample, scorer.oracle(sample)).scores["ocr_ned"] == 1.0


def test_anls_threshold() -> None:
    assert anls("kitten", ["sitting"]) == pytest.approx(1 - 3 / 7)  # NL 0.43 < 0.5
    assert anls("abcd", ["wxyz"]) == 0.0
    assert anls("Total: 5", ["total: 5", "nope"]) == 1.0
    assert ANLSScorer().score(Sample("s", "q", "abcxyz"), "abcdef").scores["anls"] == 0.0  # NL exactly 0.5


def test_ocrbench_substring_and_case_sensitive_category() -> None:
    scorer = OCRBenchScorer()
    assert scorer.score(Sample("s", "q", "exit"), "The sign says EXIT here").scores["ocrbench"] == 1.0
    assert scorer.score(Sample("s", "q", ["exit", "way out"]), "Entrance").scores["ocrbench"] == 0.0
    hme = Sample("s", "q", "x ^ 2", category="Handwritten Mathematical Expression Recognition")
    assert scorer.score(hme, "$x^2$").scores["ocrbench"] == 1.0
    assert scorer.score(hme, "$X^2$").scores["ocrbench"] == 0.0


def test_torchmetric_mean_ned() -> None:
    metric = NormalizedEditDistance()
    metric.update(["kitten", "abc"], ["sitting", "abc"])
    assert metric.compute().item() == pytest.approx((3 / 7 + 0) / 2)
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        metric.update(["a", "b"], ["a"])


def test_ocr_metrics_ignore_thinking() -> None:
    sample = Sample("s", "q", "EXIT")
    ocrbench = OCRBenchScorer()
    # The reference appears only while reasoning: no hit.
    assert ocrbench.score(sample, "<think>it could read EXIT or ENTRY</think>ENTRY").scores["ocrbench"] == 0.0
    assert (
        ocrbench.score(sample, "reads EXIT?</think><|begin_of_box|>ENTRY<|end_of_box|>").scores["ocrbench"]
        == 0.0
    )
    assert ocrbench.score(sample, "<think>hmm, ENTRY?</think>The sign says EXIT").scores["ocrbench"] == 1.0
    thinking = "<think>ENTRY?</think><|begin_of_box|>EXIT<|end_of_box|>"
    assert EditDistanceScorer().score(sample, thinking).scores["ocr_ned"] == 1.0
    assert (
        EditDistanceScorer(extract=False).score(sample, "<think>ENTRY?</think>EXIT").scores["ocr_ned"] == 1.0
    )
    assert ANLSScorer().score(sample, thinking).scores["anls"] == 1.0
