"""OCR edit distance: Levenshtein, NED with normalisation options (ANLS and OCRBench: their own tests)."""

from __future__ import annotations

import itertools
from functools import cache

import pytest

from glmkit.eval.metrics.ocr import EditDistanceScorer, NormalizedEditDistance, normalized_edit_distance
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


def test_torchmetric_mean_ned() -> None:
    metric = NormalizedEditDistance()
    metric.update(["kitten", "abc"], ["sitting", "abc"])
    assert metric.compute().item() == pytest.approx((3 / 7 + 0) / 2)
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        metric.update(["a", "b"], ["a"])


def test_ocr_ned_ignores_thinking() -> None:
    sample = Sample("s", "q", "EXIT")
    thinking = "<think>ENTRY?</think><|begin_of_box|>EXIT<|end_of_box|>"
    assert EditDistanceScorer().score(sample, thinking).scores["ocr_ned"] == 1.0
    assert (
        EditDistanceScorer(extract=False).score(sample, "<think>ENTRY?</think>EXIT").scores["ocr_ned"] == 1.0
    )
