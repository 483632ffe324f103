"""Parity of ``mmsearch`` with MMSearch ``score/f1_score.py``, ``get_f1_score`` (as vendored in lmms-eval
``tasks/mmsearch/score/f1_score.py``), maximised over the alternative answers as lmms-eval's
``mmsearch_aggregate_results_f1_score`` does, after the GLM wrapper.

Tokens: lower case, ASCII punctuation (``string.punctuation``) deleted, the words a / an / the
removed, split on whitespace; F1 over the shared-token multiset; 1 if both sides are empty, 0 if one is.
"""

from __future__ import annotations

import pytest

from glmkit.eval.metrics.mmsearch import MMSearchScorer, token_f1
from glmkit.scoring import Sample

# (prediction, answers (first: ground truth), expected F1)
CASES = [
    # "the" is removed
    ("The Eiffel Tower", ["Eiffel Tower"], 1.0),
    # P = 2/4, R = 1
    ("Eiffel Tower in Paris", ["Eiffel Tower"], 2 / 3),
    ("", ["x"], 0.0),
    # both empty: 1
    ("", [""], 1.0),
    # only articles: no token left on the prediction side
    ("a the an", ["Paris"], 0.0),
    # periods deleted without a space: U.S.A. -> usa
    ("U.S.A.", ["USA"], 1.0),
    ("北京", ["北京"], 1.0),
    # no spaces: one token each, and they differ
    ("北京市", ["北京"], 0.0),
    # the ideographic full stop is not ASCII punctuation
    ("北京。", ["北京"], 0.0),
    # the best alternative counts
    ("NYC", ["New York City", "NYC"], 1.0),
    # duplicates: 1 shared token, P = 1/2
    ("paris paris", ["paris"], 2 / 3),
    ("<think>x</think>Paris", ["Paris"], 1.0),
    # an unclosed <think> stays: "<think>paris" loses < and > and becomes one token
    ("<think>Paris", ["Paris"], 0.0),
    ("1,234", ["1234"], 1.0),
    ("2023年", ["2023"], 0.0),
    # hyphens are deleted, not split on
    ("state-of-the-art", ["state of the art"], 0.0),
    ("PARIS", ["paris"], 1.0),
    # "an" inside "another" is no article; "an" alone is
    ("another one", ["an other one"], 0.5),
    ("Beatles", ["The Beatles"], 1.0),
    # P = 1/4, R = 1
    ("Yes, it is Paris.", ["Paris"], 0.4),
    # "Musée du Louvre" shares one token of three with "le louvre paris": 1/3 and 1/3; "Louvre": 1/3 and 1
    ("Le Louvre, Paris", ["Louvre", "Musée du Louvre"], 0.5),
]


@pytest.mark.parametrize(("prediction", "answers", "expected"), CASES)
def test_mmsearch_f1_matches_the_reference(prediction: str, answers: list[str], expected: float) -> None:
    sample = Sample("m", "q", answers if len(answers) > 1 else answers[0])
    assert MMSearchScorer().score(sample, prediction).scores["mmsearch"] == pytest.approx(expected)


def test_alternatives_in_metadata_count_too() -> None:
    sample = Sample("m", "q", "New York City", metadata={"alternative_gt_answers": ["NYC", "New York"]})
    assert MMSearchScorer().score(sample, "nyc").scores["mmsearch"] == 1.0
    assert token_f1("a b c", "c b a") == 1.0
