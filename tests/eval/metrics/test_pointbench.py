"""Parity of ``pointbench`` with lmms-eval ``lmms_eval/tasks/pointbench/utils.py`` (``_text_to_points``,
``_binary_score``, ``pointbench_process_results``) after the GLM wrapper.

Mask 100 x 80 (W x H): white on columns 20-39, rows 10-29; pure red on columns 60-79, rows 40-59
(greyscale 76, not foreground for ``convert("L") > 127``). Points ``(x, y)`` in parentheses only;
both in [0, 1] fractions, both in [0, 1000] the 0-1000 grid, else pixels; rounded half to even.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glmkit.eval.metrics.pointbench import PointBenchScorer, pointbench_points
from glmkit.scoring import Sample

B, E = "<|begin_of_box|>", "<|end_of_box|>"


@pytest.fixture(scope="module")
def mask_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pointbench")
    mask = np.zeros((80, 100, 3), np.uint8)
    mask[10:30, 20:40] = 255
    mask[40:60, 60:80] = (255, 0, 0)
    Image.fromarray(mask).save(root / "m.png")
    return root


# (response, category, metadata.count, expected binary score, expected point accuracy)
CASES = [
    # 0-1000 grid: (30, 20) is on the white area
    ("[(300, 250)]", "default", None, 1.0, 1.0),
    # square brackets are not read
    ("[[300,250]]", "default", None, 0.0, 0.0),
    # fractions
    ("(0.3, 0.25)", "default", None, 1.0, 1.0),
    # small pixel values are read as the 0-1000 grid: (3, 2)
    ("(30, 20)", "default", None, 0.0, 0.0),
    # over 1000: pixels, outside the image
    ("(1500, 20)", "default", None, 0.0, 0.0),
    # 19.5 rounds half to even: 20, inside (a floor would give 19, outside)
    ("(195, 125)", "default", None, 1.0, 1.0),
    # 39.5 rounds to 40: outside (a floor would give 39, inside)
    ("(395, 125)", "default", None, 0.0, 0.0),
    # the red area is not foreground in greyscale
    ("(700, 625)", "default", None, 0.0, 0.0),
    # counting: every point inside and exactly the count
    ("[(300, 250), (250, 150)]", "counting", 2, 1.0, 1.0),
    ("[(300, 250), (250, 150)]", "counting", 3, 0.0, 1.0),
    ("[(300,250),(900,700)]", "counting", 2, 0.0, 0.5),
    # elsewhere only the first point decides; the accuracy sees all of them
    ("[(300,250),(900,700)]", "default", None, 1.0, 0.5),
    ("[(900,700),(300,250)]", "default", None, 0.0, 0.5),
    # negative: pixels, outside
    ("(-5, 10)", "default", None, 0.0, 0.0),
    (f"<think>(900, 900)</think>{B}[(300, 250)]{E}", "default", None, 1.0, 1.0),
    # an unclosed <think> stays: its draft point comes first
    ("<think>(900, 900) maybe (300, 250)", "default", None, 0.0, 0.5),
    ("", "default", None, 0.0, 0.0),
    # counting without a count expects 0 points
    ("[(300, 250)]", "counting", None, 0.0, 1.0),
    ("答案是(300, 250)", "default", None, 1.0, 1.0),
    # (1.0, 0.5) is a fraction: x = 100 = W, outside
    ("(1.0, 0.5)", "default", None, 0.0, 0.0),
    # 1000 on the grid is x = W: outside (no clamping)
    ("(1000, 500)", "default", None, 0.0, 0.0),
    ("(300.4, 250.6)", "default", None, 1.0, 1.0),
    # numbers without a leading digit parse
    ("(.3, .25)", "default", None, 1.0, 1.0),
]


@pytest.mark.parametrize(("response", "category", "count", "binary", "acc"), CASES)
def test_pointbench_matches_lmms_eval(
    mask_dir: Path, response: str, category: str, count: int | None, binary: float, acc: float
) -> None:
    meta = {} if count is None else {"count": count}
    sample = Sample("p", "q", {"mask": "m.png"}, category=category, metadata=meta, root=mask_dir)
    out = PointBenchScorer().score(sample, response).scores
    assert out["pointbench"] == binary and out["pointbench.acc"] == pytest.approx(acc)


def test_oracle_and_missing_mask(mask_dir: Path) -> None:
    scorer = PointBenchScorer()
    for category, meta in (("default", {}), ("counting", {"count": 3})):
        sample = Sample("p", "q", {"mask": "m.png"}, category=category, metadata=meta, root=mask_dir)
        assert scorer.score(sample, scorer.oracle(sample)).scores["pointbench"] == 1.0
    with pytest.raises(ValueError, match="mask not found"):
        scorer.check_answer(Sample("p", "q", {"mask": "nope.png"}, root=mask_dir))
    assert pointbench_points("(0.5, 1.0)", 10, 10) == [(5, 10)]
