"""Pointing: point parsing, 0-1000 edge clamping, box and mask hits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glmkit.eval.metrics.pointing import (
    PointingAccuracy,
    PointingScorer,
    parse_points,
    point_in_mask,
    point_to_pixels,
)
from glmkit.scoring import Sample


def test_parse_points_formats_and_not_boxes() -> None:
    assert parse_points("<|begin_of_box|>[[500,250]]<|end_of_box|>") == [(500, 250)]
    assert parse_points("(1.5, 2) and <point>3 4</point> then [5,6]") == [(1.5, 2), (3, 4), (5, 6)]
    assert parse_points("[1,2,3,4]") == []
    assert parse_points("") == []


def test_edge_clamp_and_outside() -> None:
    assert point_to_pixels((1000, 1000), "norm1000", (200, 100)) == (199, 99)
    assert point_to_pixels((500, 500), "norm1000", (200, 100)) == (100, 50)
    mask = np.zeros((10, 20), np.uint8)
    mask[:, -1] = 255
    assert point_in_mask(point_to_pixels((1000, 500), "norm1000", (20, 10)), mask)
    assert not point_in_mask((25.0, 5.0), mask)  # outside the image is a miss
    assert not point_in_mask((-1.0, 5.0), mask)


def test_box_answers() -> None:
    sample = Sample("s", "q", {"box": [40, 20, 80, 60]}, metadata={"image_size": [200, 100]})
    scorer = PointingScorer(pred_space="norm1000")
    assert scorer.score(sample, "[[300,400]]").scores["pointing"] == 1.0  # (60, 40) px
    assert scorer.score(sample, "[[100,400]]").scores["pointing"] == 0.0  # (20, 40) px
    # First point decides; all_points counts the fraction of hits.
    out = scorer.score(sample, "(100,400) (300,400)")
    assert out.scores == {"pointing": 0.0, "pointing.all_points": 0.5}
    assert scorer.score(sample, "nothing").scores["pointing"] == 0.0


def test_mask_answers_and_oracle(tmp_path: Path) -> None:
    mask = np.zeros((50, 100), np.uint8)
    mask[10:20, 60:90] = 200  # > 127: inside
    mask[30:40, 5:15] = 100  # <= 127: outside
    Image.fromarray(mask).save(tmp_path / "m.png")
    Image.new("RGB", (100, 50)).save(tmp_path / "img.png")
    sample = Sample("s", "q", {"mask": "m.png"}, images=[tmp_path / "img.png"], root=tmp_path)
    scorer = PointingScorer(pred_space="pixels")
    scorer.check_answer(sample)
    assert scorer.score(sample, "(70, 15)").scores["pointing"] == 1.0
    assert scorer.score(sample, "(10, 35)").scores["pointing"] == 0.0
    norm = PointingScorer(pred_space="norm1000")
    assert norm.score(sample, norm.oracle(sample)).scores["pointing"] == 1.0
    with pytest.raises(ValueError, match="mask not found"):
        scorer.check_answer(Sample("s", "q", {"mask": "missing.png"}, root=tmp_path))


def test_torchmetric() -> None:
    metric = PointingAccuracy()
    metric.update(
        torch.tensor([[5.0, 5.0], [50.0, 5.0], [float("nan"), 1.0]]), torch.tensor([[0, 0, 10, 10]] * 3)
    )
    assert metric.compute().item() == pytest.approx(1 / 3)


def test_points_inside_thinking_are_not_scored() -> None:
    sample = Sample("s", "q", {"box": [100, 100, 200, 200]}, metadata={"image_size": [1000, 1000]})
    scorer = PointingScorer()
    out = scorer.score(
        sample, "<think>first guess (600, 600) is the plate</think><|begin_of_box|>[[150,150]]<|end_of_box|>"
    )
    assert out.scores == {"pointing": 1.0, "pointing.all_points": 1.0}
    wrong = "<think>it is at (150, 150)</think><answer>(600, 600)</answer>"
    assert scorer.score(sample, wrong).scores == {"pointing": 0.0, "pointing.all_points": 0.0}
