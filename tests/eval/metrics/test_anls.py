"""Parity of ``anls`` with lmms-eval ``lmms_eval/api/metrics.py``, ``anls`` (lengths from the raw
strings), and with VLMEvalKit ``anls_compute`` + ``hit_calculate`` (``lengths="normalized"``).

NL = lev(norm(answer), norm(prediction)) / max(len(answer.upper()), len(prediction.upper())) with
norm = strip + lower + collapse whitespace; score = 1 - min NL, set to 0 only when **below** 0.5.
"""

from __future__ import annotations

import pytest

from glmkit.eval.metrics.anls import ANLSScorer, anls
from glmkit.scoring import Sample

B, E = "<|begin_of_box|>", "<|end_of_box|>"

# (prediction, references, lmms-eval score, VLMEvalKit score)
CASES = [
    # NL exactly 0.5 is kept: 1 - 0.5 is not below the threshold
    ("13", ["12"], 0.5, 0.5),
    # 3 edits / 7
    ("kitten", ["sitting"], 1 - 3 / 7, 1 - 3 / 7),
    ("abcd", ["wxyz"], 0.0, 0.0),
    # raw lengths: the padded reference is 6 long, so NL = 1/6; normalised lengths give 1/2
    ("13", ["  12  "], 1 - 1 / 6, 0.5),
    # ß vs ss: 2 edits over 7 (STRASSE is 7 long either way)
    ("straße", ["strasse"], 1 - 2 / 7, 1 - 2 / 7),
    # "ß".upper() is "SS": raw length 2, 1 edit -> 0.5; normalised length 1 -> 0
    ("ß", ["s"], 0.5, 0.0),
    # case and whitespace runs are normalised away
    ("Total  5", ["total 5"], 1.0, 1.0),
    # two empty strings: NL 0
    ("", [""], 1.0, 1.0),
    ("", ["abc"], 0.0, 0.0),
    # the best reference counts
    ("Paris", ["paris france", "paris"], 1.0, 1.0),
    # one insertion over 3 characters
    ("北京市", ["北京"], 1 - 1 / 3, 1 - 1 / 3),
    # GLM wrapper: the box is the prediction
    (f"<think>x</think>{B}12{E}", ["12"], 1.0, 1.0),
    # a sentence is far from a short answer
    ("The answer is 12", ["12"], 0.0, 0.0),
    # 2 edits over 4: exactly 0.5 again
    ("12.0", ["12"], 0.5, 0.5),
    ("ab", ["abc"], 1 - 1 / 3, 1 - 1 / 3),
    # a tab is whitespace: normalised to one space
    ("a\tb", ["a b"], 1.0, 1.0),
    # "İ".lower() is two characters: raw length 1 gives NL 1 (0); normalised length 2 gives 0.5
    ("İ", ["i"], 0.0, 0.5),
    # an unclosed <think> stays in the prediction
    ("<think>12", ["12"], 0.0, 0.0),
    # 3 edits over 6: exactly 0.5
    ("abcxyz", ["abcdef"], 0.5, 0.5),
    ("AbC", ["abc "], 1.0, 1.0),
    # min NL over the references: "1" and "123" are both one edit, over 2 and 3 characters
    ("12", ["1", "123", "xx"], 1 - 1 / 3, 1 - 1 / 3),
]


@pytest.mark.parametrize(("prediction", "refs", "lmms", "vlmeval"), CASES)
def test_anls_matches_both_references(prediction: str, refs: list[str], lmms: float, vlmeval: float) -> None:
    sample = Sample("d", "q", refs)
    assert ANLSScorer().score(sample, prediction).scores["anls"] == pytest.approx(lmms, abs=1e-12)
    assert ANLSScorer(lengths="normalized").score(sample, prediction).scores["anls"] == pytest.approx(
        vlmeval, abs=1e-12
    )


def test_raw_lengths_include_the_padding_of_an_unwrapped_prediction() -> None:
    # the GLM wrapper strips; without it the prediction's 9 raw characters set the length: 1 - 1/9
    assert ANLSScorer(wrapper="none").score(Sample("d", "q", "abd"), "   abc   ").scores[
        "anls"
    ] == pytest.approx(8 / 9)
    assert anls("abc", ["abd"], threshold=0.7) == 0.0  # 0.667 < 0.7
    with pytest.raises(ValueError, match="lengths='chars'"):
        ANLSScorer(lengths="chars")  # type: ignore[arg-type]
