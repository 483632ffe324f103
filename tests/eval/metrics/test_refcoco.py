"""Parity of ``refcoco`` with VLMEvalKit ``vlmeval/dataset/refcoco.py`` (``_parse_prediction``,
``_to_absolute``, ``_compute_iou``, ``evaluate``) after the GLM wrapper.

The first ``[a b c d]`` box (comma or space separated), else the first four numbers; the space is
guessed: max |v| <= 1.5 fractions, <= 1000 the 0-1000 grid, else pixels; clipped to the image and
ordered; hit = IoU >= 0.5. Image 640 x 480 unless stated; the reference box [64, 48, 320, 240] is
[100, 100, 500, 500] on the 0-1000 grid.
"""

from __future__ import annotations

import pytest

from glmkit.eval.metrics.refcoco import RefCOCOScorer, refcoco_summary
from glmkit.scoring import Sample

B, E = "<|begin_of_box|>", "<|end_of_box|>"
GT = [64, 48, 320, 240]

# (response, reference box in pixels, image size, expected hit, expected IoU)
CASES = [
    (f"{B}[[100,100,500,500]]{E}", GT, (640, 480), 1.0, 1.0),
    # clipped at x = 0 instead of rejected
    ("[[-350,100,500,500]]", [0, 48, 320, 240], (640, 480), 1.0, 1.0),
    # space-separated coordinates are a box
    ("[100 100 500 500]", GT, (640, 480), 1.0, 1.0),
    # full-width commas: no bracket match, the first four numbers anywhere
    ("[[100，100，500，500]]", GT, (640, 480), 1.0, 1.0),
    # several boxes: the first one
    ("[[100,100,500,500]] and [[600,600,900,900]]", GT, (640, 480), 1.0, 1.0),
    ("[[600,600,900,900]] and [[100,100,500,500]]", GT, (640, 480), 0.0, 0.0),
    # a pixel box on an image <= 1000 px is read as 0-1000: (40.96, 23.04, 204.8, 115.2)
    ("[64, 48, 320, 240]", GT, (640, 480), 0.0, 0.17269220418049697),
    # above 1000 the values are pixels
    ("[1200, 900, 1800, 1400]", [1200, 900, 1800, 1400], (2000, 1500), 1.0, 1.0),
    # <= 1.5: fractions of the image
    ("[0.1, 0.1, 0.5, 0.5]", GT, (640, 480), 1.0, 1.0),
    # a tiny 0-1000 box is read as fractions: the whole image
    ("[0, 0, 1, 1]", [0, 0, 0.64, 0.48], (640, 480), 0.0, 1e-06),
    # a box drafted while thinking is removed with the block
    (f"<think>[[0,0,10,10]]</think>{B}[[100,100,500,500]]{E}", GT, (640, 480), 1.0, 1.0),
    # an unclosed <think> stays: its draft box comes first
    ("<think>[[0,0,10,10]] then [[100,100,500,500]]", GT, (640, 480), 0.0, 0.0),
    # reversed corners are swapped
    ("[[500,500,100,100]]", GT, (640, 480), 1.0, 1.0),
    ("the dog on the left", GT, (640, 480), 0.0, 0.0),
    # three numbers are no box
    ("[10, 20, 30]", GT, (640, 480), 0.0, 0.0),
    # the first four numbers include the "1" of the label: [1, 100, 100, 500]
    ("object 1: 100,100,500,500", GT, (640, 480), 0.0, 0.0),
    # two bracketed points: no bracket box, four numbers
    ("(100,100),(500,500)", GT, (640, 480), 1.0, 1.0),
    ("[[100.5, 100.5, 500.5, 500.5]]", GT, (640, 480), 1.0, 0.9950155782661758),
    # exponents parse
    ("[1e2, 1e2, 5e2, 5e2]", GT, (640, 480), 1.0, 1.0),
    # off-image pixel box: clipped to zero width
    ("[[800,800,1200,1200]]", GT, (640, 480), 0.0, 0.0),
    ("<answer>[[100,100,500,500]]</answer>", GT, (640, 480), 1.0, 1.0),
    ("目标在[[100,100,500,500]]", GT, (640, 480), 1.0, 1.0),
    ("", GT, (640, 480), 0.0, 0.0),
    # IoU 0.53125 and 0.5625: above the threshold
    ("[[100,100,500,500]]", [64, 48, 200, 240], (640, 480), 1.0, 0.53125),
    ("[[100,100,400,400]]", GT, (640, 480), 1.0, 0.5625),
]


@pytest.mark.parametrize(("response", "box", "size", "hit", "iou"), CASES)
def test_refcoco_matches_vlmevalkit(
    response: str, box: list[float], size: tuple[int, int], hit: float, iou: float
) -> None:
    sample = Sample("r", "q", {"box": box, "space": "pixels"}, metadata={"image_size": list(size)})
    out = RefCOCOScorer().score(sample, response).scores
    assert out["refcoco"] == hit and out["refcoco.iou"] == pytest.approx(iou, abs=1e-12)


def test_oracle_and_answer_spaces() -> None:
    scorer = RefCOCOScorer()
    sample = Sample(
        "r", "q", {"box": [100, 100, 500, 500], "space": "norm1000"}, metadata={"image_size": [640, 480]}
    )
    assert scorer.score(sample, scorer.oracle(sample)).scores["refcoco"] == 1.0
    with pytest.raises(ValueError, match="expected a box"):
        scorer.check_answer(Sample("r", "q", [1, 2, 3]))


def test_summary_is_the_macro_average_over_the_refcoco_splits() -> None:
    records = [
        {"category": "RefCOCO_val", "scores": {"refcoco": 1.0, "refcoco.iou": 0.8}},
        {"category": "RefCOCO_val", "scores": {"refcoco": 0.0, "refcoco.iou": 0.2}},
        {"category": "RefCOCOg_test", "scores": {"refcoco": 1.0, "refcoco.iou": 0.9}},
        {"category": "other", "scores": {"refcoco": 0.0, "refcoco.iou": 0.0}},
    ]
    table = refcoco_summary(records)["refcoco"]
    assert table["RefCOCO_val"]["Precision@1"] == 50.0
    assert table["Average"]["Precision@1"] == 75.0  # (50 + 100) / 2, "other" is no RefCOCO split
    assert (
        table["Average"]["Average IoU"] == pytest.approx((0.5 + 0.9) / 2) and table["Average"]["Samples"] == 3
    )
