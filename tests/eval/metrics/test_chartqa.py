"""Parity of ``chartqa`` with VLMEvalKit ``vlmeval/dataset/utils/vqa_eval.py``, ``relaxed_correctness``
(the same function as lmms-eval ``tasks/chartqa/utils.py``) after the GLM wrapper, and the lenient
variant ``chartqa_lenient``.

The reference converts the **whole** stripped prediction with Python's ``float`` (``x%`` -> x / 100);
with both sides numeric and a non-zero target it allows 5% relative change, otherwise it compares
the lower-cased strings.
"""

from __future__ import annotations

import pytest

from glmkit.eval.metrics.chartqa import ChartQALenientScorer, ChartQAScorer, relaxed_correctness
from glmkit.scoring import Sample

B, E = "<|begin_of_box|>", "<|end_of_box|>"

# (target, response, expected)
CASES = [
    # float() of the whole sentence fails, the strings differ
    ("12", "The answer is 12%.", 0.0),
    # "12%" is 0.12, far from 12
    ("12%", "12", 0.0),
    # thousands separators do not parse: compared as text
    ("1234", "1,234", 0.0),
    ("12", "Between 10 and 12", 0.0),
    # |12.5 - 12| / 12 = 4.2% <= 5%
    ("12", "12.5", 1.0),
    # 5.8% > 5%
    ("12", "12.7", 0.0),
    # a zero target is falsy: compared as text, "0.0" != "0"
    ("0", "0.0", 0.0),
    ("0", "0", 1.0),
    # percent on both sides: 0.12 == 0.12
    ("12%", "0.12", 1.0),
    # text compares ignoring case
    ("Yes", "yes", 1.0),
    # the prediction is stripped
    ("12", " 12 ", 1.0),
    ("12", f"<think>13</think>{B}12{E}", 1.0),
    # an unclosed <think> stays in the prediction: float fails, text differs
    ("12", "<think>unclosed 12", 0.0),
    # Python's float accepts digit separators "_"
    ("12", "1_2", 1.0),
    # ... and full-width digits
    ("12", "１２", 1.0),
    ("100", "1e2", 1.0),
    # nan is truthy but never within tolerance
    ("nan", "nan", 0.0),
    ("12", "", 0.0),
    ("北京", "北京", 1.0),
    # rstrip("%") removes both signs: 0.12
    ("12", "12%%", 0.0),
    ("twelve", "Twelve", 1.0),
    # |-5.2 + 5| / 5 = 4%
    ("-5", "-5.2", 1.0),
    ("12", "+12", 1.0),
    ("0.5", "50%", 1.0),
    ("1.0", "1", 1.0),
    ("12", "<answer>12</answer>", 1.0),
    # the first box is the prediction
    ("12", f"{B}12{E} or 13", 1.0),
]


@pytest.mark.parametrize(("target", "response", "expected"), CASES)
def test_chartqa_matches_the_reference(target: str, response: str, expected: float) -> None:
    assert ChartQAScorer().score(Sample("c", "q", target), response).scores["chartqa"] == expected


def test_best_answer_counts_and_the_function_takes_target_first() -> None:
    assert ChartQAScorer().score(Sample("c", "q", ["12", "twelve"]), "TWELVE").scores["chartqa"] == 1.0
    assert relaxed_correctness("100", "104") and not relaxed_correctness("104", "100", 0.03)
    assert ChartQAScorer(wrapper="none").score(Sample("c", "q", "12"), f"{B}12{E}").scores["chartqa"] == 0.0


def test_the_lenient_variant_reads_numbers_out_of_sentences() -> None:
    lenient = ChartQALenientScorer()
    assert lenient.key == "chartqa_lenient" and lenient.numeric.rel_tol == 0.05
    sample = Sample("c", "q", "12")
    # the examples: the lenient variant accepts all of these, the reference none
    for response in ("The answer is 12%.", "Between 10 and 12"):
        assert lenient.score(sample, response).scores["chartqa_lenient"] == 1.0, response
        assert ChartQAScorer().score(sample, response).scores["chartqa"] == 0.0, response
    assert lenient.describe()["variant"] == "lenient"
