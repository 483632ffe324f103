"""Parity of ``ocrbench`` with VLMEvalKit ``vlmeval/dataset/image_vqa.py``, ``OCRBench.evaluate``,
after the GLM wrapper for OCRBench (thinking removed, first ``<answer>`` kept, **no** box
extraction); the roll-up out of 1000; and the lenient variant.

Hit: some answer is a substring of the prediction, after lower + strip + newline-to-space; in the
handwritten-maths category after strip + newline-to-space + removing **spaces** only, case kept.
"""

from __future__ import annotations

import pytest

from glmkit.eval.metrics.ocrbench import HMER, OCRBenchLenientScorer, OCRBenchScorer, ocrbench_summary
from glmkit.scoring import Sample

B, E = "<|begin_of_box|>", "<|end_of_box|>"
TEXT, SCENE, DOC, KIE = (
    "Regular Text Recognition",
    "Scene Text-centric VQA",
    "Doc-oriented VQA",
    "Key Information Extraction",
)

# (prediction, answers, category, expected hit)
CASES = [
    # the whole reply is searched, not only the \boxed{} answer
    ("The text reads 'HELLO WORLD', so \\boxed{HELLO}", ["hello world"], TEXT, 1.0),
    # maths: only spaces are removed, the tab stays
    ("x\t^2", ["x ^ 2"], HMER, 0.0),
    ("$x ^ 2$", ["x^2"], HMER, 1.0),
    # maths keeps case
    ("X^2", ["x^2"], HMER, 0.0),
    # newlines become spaces, then go
    ("x\n^ 2", ["x^2"], HMER, 1.0),
    # full-width letters are not folded
    ("ＨＥＬＬＯ", ["hello"], TEXT, 0.0),
    # a closed thinking block is removed
    ("<think>HELLO</think>world", ["hello"], SCENE, 0.0),
    # an unclosed one stays, and the answer inside it counts
    ("<think>maybe HELLO", ["hello"], SCENE, 1.0),
    # box markers stay in the text for OCRBench; the answer is still a substring
    (f"{B}HELLO{E}", ["hello"], DOC, 1.0),
    # the first <answer> replaces the text
    ("<answer>EXIT</answer> also ENTRY", ["entry"], DOC, 0.0),
    # an empty answer is a substring of everything
    ("anything", [""], DOC, 1.0),
    ("EXIT here", ["way out", "exit"], SCENE, 1.0),
    # a newline inside the answer becomes a space
    ("Hello World", ["hello\nworld"], TEXT, 1.0),
    ("这是北京", ["北京"], SCENE, 1.0),
    ("", ["a"], SCENE, 0.0),
    # substring matching: "ran" inside "Entrance"
    ("Entrance", ["ran"], SCENE, 1.0),
    # the answer is stripped
    ("EXIT", ["  exit "], SCENE, 1.0),
    # outside maths, spaces matter
    ("x ^ 2", ["x^2"], DOC, 0.0),
    # maths: strip() also removes the surrounding tabs
    ("\tx^2\t", ["x^2"], HMER, 1.0),
    # a lone </think> stays
    ("</think>HELLO", ["hello"], TEXT, 1.0),
    ("Total: $12.50", ["$12.50"], KIE, 1.0),
    ("\\frac{1}{2}", ["\\frac {1} {2}"], HMER, 1.0),
]


@pytest.mark.parametrize(("prediction", "answers", "category", "expected"), CASES)
def test_ocrbench_matches_vlmevalkit(
    prediction: str, answers: list[str], category: str, expected: float
) -> None:
    sample = Sample("o", "q", answers, category=category)
    assert OCRBenchScorer().score(sample, prediction).scores["ocrbench"] == expected


def test_the_rollup_sums_hits_as_ocrbench_evaluate() -> None:
    records = [
        {"category": TEXT, "scores": {"ocrbench": 1.0}},
        {"category": "Digit String Recognition", "scores": {"ocrbench": 1.0}},
        {"category": SCENE, "scores": {"ocrbench": 0.0}},
        {"category": HMER, "scores": {"ocrbench": 1.0}},
        {"category": KIE, "error": "model down", "scores": {}},
    ]
    final = ocrbench_summary(records)["ocrbench"]
    assert final["Text Recognition"] == 2 and final[HMER] == 1 and final[SCENE] == 0
    assert final["Final Score"] == 3 and final["Final Score Norm"] == pytest.approx(0.3)


def test_the_lenient_variant_looks_only_at_the_final_answer() -> None:
    sample = Sample("o", "q", "hello world")
    reply = "The text reads 'HELLO WORLD', so \\boxed{HELLO}"
    assert OCRBenchLenientScorer().score(sample, reply).scores["ocrbench_lenient"] == 0.0
    assert OCRBenchScorer().score(sample, reply).scores["ocrbench"] == 1.0
    hme = Sample("o", "q", "x ^ 2", category=HMER)
    assert (
        OCRBenchLenientScorer().score(hme, "x\t^2").scores["ocrbench_lenient"] == 1.0
    )  # all whitespace removed
