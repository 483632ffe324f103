"""Parity of ``vqa`` with VLMEvalKit ``vlmeval/dataset/utils/vqa_eval.py`` (``process_answer``,
``process_line`` with ``vqa_score`` / ``accuracy``, ``hit_calculate``) after the GLM wrapper.

Each expected value was derived by hand from the reference code: ``process_punctuation`` (a mark is
deleted when spaced or when the text has digit,digit, else replaced by a space; ``.`` not before a
digit deleted, at most 32 times), ``_process_digit_article`` (number words only up to ten, articles
dropped, contractions restored) and the leave-one-out mean of min(1, matches / 3).
"""

from __future__ import annotations

import pytest

from glmkit.eval.metrics.vqav2 import VQAv2Scorer, process_answer, vqa_score
from glmkit.scoring import Sample

B, E = "<|begin_of_box|>", "<|end_of_box|>"
TEN = 10

# (response, human answers, expected score)
VQA_SCORE_CASES = [
    # number words stop at "ten": "twelve" stays a word
    ("twelve", ["12"] * TEN, 0.0),
    ("ten", ["10"] * TEN, 1.0),
    # "%" is not punctuation for VQA: "12%" is not "12"
    ("12%", ["12"] * TEN, 0.0),
    # no number extraction: the whole normalised answer must match
    ("There are 3 cats and 2 dogs", ["2"] * TEN, 0.0),
    # 3 of 10 annotators: 3 subsets keep 2 matches (2/3), 7 keep 3 (1): mean 0.9
    ("cat", ["cat"] * 3 + ["kitten"] * 7, 0.9),
    # 4 of 10: every subset keeps >= 3 matches
    ("cat", ["cat"] * 4 + ["kitten"] * 6, 1.0),
    # 1 of 10: (1 * 0 + 9 * 1/3) / 10
    ("cat", ["cat"] + ["kitten"] * 9, 0.3),
    # 2 of 10: (2 * 1/3 + 8 * 2/3) / 10
    ("cat", ["cat"] * 2 + ["kitten"] * 8, 0.6),
    # the article goes, the final period goes
    ("The dog.", ["dog"] * TEN, 1.0),
    # digit,digit: every mark is deleted, so 1,000 -> 1000
    ("1,000", ["1000"] * TEN, 1.0),
    ("yes, it is", ["yes"] * TEN, 0.0),
    # contractions are restored: dont -> don't
    ("dont", ["don't"] * TEN, 1.0),
    # GLM wrapper: thinking removed, the box kept
    (f"<think>maybe 5</think>{B}5{E}", ["5"] * TEN, 1.0),
    # an unclosed <think> stays in the prediction
    ("<think>unclosed 5", ["5"] * TEN, 0.0),
    # a </think> without opening tag stays too
    ("reasoning</think>5", ["5"] * TEN, 0.0),
    ("猫", ["猫"] * TEN, 1.0),
    ("", ["cat"] * TEN, 0.0),
    # "3.5." -> the last period is not before a digit: removed
    ("3.5.", ["3.5"] * TEN, 1.0),
    # periods vanish without a space: U.S.A. -> usa
    ("U.S.A.", ["usa"] * TEN, 1.0),
    # an unspaced hyphen becomes a space
    ("red-blue", ["red blue"] * TEN, 1.0),
    # a spaced hyphen is deleted; the double space disappears in split()
    ("red - blue", ["red blue"] * TEN, 1.0),
    # ", " is spaced: commas deleted; "a" is an article
    ("a, b", ["b"] * TEN, 1.0),
    ("2,5", ["25"] * TEN, 1.0),
    ("two dogs", ["2 dogs"] * TEN, 1.0),
    # ":" is kept
    ("The answer is: 2", ["2"] * TEN, 0.0),
    # the first <answer> wins over a later box
    (f"<answer>dog</answer> {B}cat{E}", ["dog"] * TEN, 1.0),
    # the first box wins
    (f"{B}cat{E} or {B}dog{E}", ["cat"] * TEN, 1.0),
    # only 32 periods are removed (re.UNICODE lands in re.sub's count): 8 stay
    ("x" + "." * 40, ["x"] * TEN, 0.0),
    # the apostrophe is kept, and "its" is not in the contraction table
    ("it's", ["its"] * TEN, 0.0),
    # "$" is kept
    ("$5", ["5"] * TEN, 0.0),
]

# single answers use VLMEvalKit's `accuracy` method: strip + lower-case equality, nothing else
ACCURACY_CASES = [
    ("Yes", "yes", 1.0),
    # no punctuation step in `accuracy`
    ("yes.", "yes", 0.0),
    (" 4 ", 4, 1.0),
    ("twelve", "12", 0.0),
    ("北京", "北京", 1.0),
    (f"<think>no</think>{B}Yes{E}", "yes", 1.0),
]


@pytest.mark.parametrize(("response", "answers", "expected"), VQA_SCORE_CASES)
def test_vqa_score_matches_vlmevalkit(response: str, answers: list[str], expected: float) -> None:
    assert VQAv2Scorer().score(Sample("s", "q", answers), response).scores["vqa"] == pytest.approx(expected)


@pytest.mark.parametrize(("response", "answer", "expected"), ACCURACY_CASES)
def test_single_answers_use_the_accuracy_method(response: str, answer: object, expected: float) -> None:
    out = VQAv2Scorer().score(Sample("s", "q", answer), response)
    assert out.scores["vqa"] == expected and out.details["method"] == "accuracy"


def test_methods_can_be_forced_and_the_oracle_is_the_majority_answer() -> None:
    one = Sample("s", "q", "cat")
    assert VQAv2Scorer(method="vqa_score").score(one, "cat").scores["vqa"] == 0.0  # no other annotator
    two = Sample("s", "q", ["cat", "kitten"])
    assert VQAv2Scorer(method="accuracy").score(two, "Kitten").scores["vqa"] == 1.0
    humans = Sample("h", "q", ["Kitten", "cat", "kitten", "kitten", "kitten."])
    scorer = VQAv2Scorer()
    assert process_answer(scorer.oracle(humans)) == "kitten"
    assert scorer.score(humans, scorer.oracle(humans)).scores["vqa"] == 1.0
    assert vqa_score("x", ["x", "y"]) == pytest.approx(1 / 6)  # (0 + 1/3) / 2
    with pytest.raises(ValueError, match="method='soft'"):
        VQAv2Scorer(method="soft")  # type: ignore[arg-type]
