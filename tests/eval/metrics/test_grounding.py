"""Grounding: box parsing, coordinate spaces, IoU and Acc@IoU>=0.5."""

from __future__ import annotations

import pytest
import torch

from glmkit.eval.metrics.grounding import (
    GroundingAccuracy,
    GroundingScorer,
    box_iou,
    from_pixels,
    parse_box,
    parse_boxes,
    to_pixels,
)
from glmkit.scoring import Sample


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<|begin_of_box|>[[100,200,300,400]]<|end_of_box|>", (100, 200, 300, 400)),
        ("The box is [12, 34, 56, 78].", (12, 34, 56, 78)),
        ("(10,20),(30,40)", (10, 20, 30, 40)),
        ("from (30, 40) to (10, 20)", (10, 20, 30, 40)),  # corners reordered
        ("[[1.5, 2.5], [3.5, 4.5]]", (1.5, 2.5, 3.5, 4.5)),
        ('{"bbox_2d": [5, 6, 7, 8], "label": "cat"}', (5, 6, 7, 8)),
        ("<|begin_of_box|>(1,2,3,4)<|end_of_box|>", (1, 2, 3, 4)),
        ("x1=1, 2, 3, 4 loosely", (1, 2, 3, 4)),
        ("no box here", None),
        ("", None),
    ],
)
def test_parse_box(text: str, expected: tuple | None) -> None:
    assert parse_box(text) == (tuple(map(float, expected)) if expected else None)


def test_parse_boxes_keeps_text_order_and_scores_only_the_first() -> None:
    text = "first (0,0),(10,10) then [[20,20,30,30]]"
    assert parse_boxes(text) == [(0, 0, 10, 10), (20, 20, 30, 30)]
    sample = Sample(
        "s", "q", {"box": [20, 20, 30, 30], "space": "pixels"}, metadata={"image_size": [100, 100]}
    )
    out = GroundingScorer(pred_space="pixels").score(sample, text)
    assert out.scores["grounding"] == 0.0  # the second box would hit; taking it would be an oracle


def test_box_iou_hand_computed() -> None:
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (10, 10, 20, 20)) == 0.0
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_coordinate_spaces_round_trip_and_scale() -> None:
    size = (640, 480)
    assert to_pixels((500, 500, 1000, 1000), "norm1000", size) == (320, 240, 640, 480)
    assert to_pixels((0.5, 0.5, 1, 1), "norm1", size) == (320, 240, 640, 480)
    box = (13.0, 27.0, 301.0, 440.0)
    for space in ("norm1000", "norm1", "pixels"):
        back = to_pixels(from_pixels(box, space, size), space, size)
        assert back == pytest.approx(box)
    with pytest.raises(ValueError, match="unknown coordinate space 'norm100'"):
        to_pixels(box, "norm100", size)


def test_scorer_converts_norm1000_predictions_on_small_images() -> None:
    # A 200x100 image: the 0-1000 prediction [250,200,500,600] is pixels (50,20,100,60).
    sample = Sample(
        "s", "q", {"box": [50, 20, 100, 60], "space": "pixels"}, metadata={"image_size": [200, 100]}
    )
    scorer = GroundingScorer(pred_space="norm1000")
    out = scorer.score(sample, "<|begin_of_box|>[[250,200,500,600]]<|end_of_box|>")
    assert out.scores == {"grounding": 1.0, "grounding.iou": pytest.approx(1.0)}
    # The same numbers read as pixels would miss entirely: no magnitude guessing.
    out_px = GroundingScorer(pred_space="pixels").score(sample, "[250,200,500,600]")
    assert out_px.scores["grounding"] == 0.0


def test_threshold_boundary_and_unparseable() -> None:
    sample = Sample("s", "q", [0, 0, 10, 10], metadata={"image_size": [100, 100]})
    scorer = GroundingScorer(pred_space="pixels")
    # IoU exactly 0.5: [0,0,10,10] vs [0,0,10,5] -> 50/100.
    assert scorer.score(sample, "[0,0,10,5]").scores["grounding"] == 1.0
    assert scorer.score(sample, "[0,0,10,4.9]").scores["grounding"] == 0.0
    assert scorer.score(sample, "I cannot find it").scores == {"grounding": 0.0, "grounding.iou": 0.0}


def test_oracle_scores_full_marks_and_bad_answers_raise() -> None:
    sample = Sample("s", "q", {"box": [33, 47, 91, 120]}, metadata={"image_size": [333, 250]})
    scorer = GroundingScorer()
    assert scorer.score(sample, scorer.oracle(sample)).scores["grounding"] == 1.0
    with pytest.raises(ValueError, match="expected a box"):
        scorer.check_answer(Sample("s", "q", [1, 2, 3]))
    with pytest.raises(ValueError, match="pred_space='bogus'"):
        GroundingScorer(pred_space="bogus")  # type: ignore[arg-type]


def test_torchmetric_matches_pure_function_and_merges() -> None:
    preds = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 5], [50, 50, 60, 60], [float("nan")] * 4])
    targets = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
    metric = GroundingAccuracy()
    metric.update(preds, targets)
    assert metric.compute().item() == pytest.approx(0.5)
    assert metric.mean_iou().item() == pytest.approx((1 + 0.5 + 0 + 0) / 4)
    a, b = GroundingAccuracy(), GroundingAccuracy()
    a.update(preds[:2], targets[:2])
    b.update(preds[2:], targets[2:])
    a.merge_state(b)  # the reduction used across processes
    assert a.compute().item() == pytest.approx(0.5)


def test_boxes_inside_thinking_are_not_scored() -> None:
    sample = Sample("s", "q", [100, 100, 200, 200], metadata={"image_size": [1000, 1000]})
    scorer = GroundingScorer()
    right = (
        "<think>The cup is at [500,500,700,700]; no, smaller.</think>"
        "<answer><|begin_of_box|>[[100,100,200,200]]<|end_of_box|></answer>"
    )
    assert scorer.score(sample, right).scores == {"grounding": 1.0, "grounding.iou": 1.0}
    # A correct box drafted in the reasoning does not rescue a wrong final answer.
    wrong = "<think>maybe [[100,100,200,200]]</think><|begin_of_box|>[[500,500,700,700]]<|end_of_box|>"
    assert scorer.score(sample, wrong).scores["grounding"] == 0.0
    # The template opened <think> in the prompt: only the text after </think> is the answer.
    assert (
        scorer.score(sample, "draft [500,500,700,700]</think> [100,100,200,200]").scores["grounding"] == 1.0
    )
