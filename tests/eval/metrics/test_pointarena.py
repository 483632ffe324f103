"""Parity of ``pointarena`` with PointArena ``model_evaluator.py`` (``evaluate_model``, ``load_mask``,
``is_point_in_mask``) and ``molmo_evaluator.py`` (``extract_points``, ``call_molmo``), after the GLM wrapper.

Mask 100 x 80: white on columns 20-39, rows 10-29; pure red on columns 60-79, rows 40-59 (foreground
here: any channel > 127). Molmo's formats are percentages of the image; the bracket fallbacks are
pixels; points are truncated with ``int``; counting needs the exact count and every point inside.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glmkit.eval.metrics.pointarena import PointArenaScorer
from glmkit.scoring import Sample

B, E = "<|begin_of_box|>", "<|end_of_box|>"


@pytest.fixture(scope="module")
def mask_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pointarena")
    mask = np.zeros((80, 100, 3), np.uint8)
    mask[10:30, 20:40] = 255
    mask[40:60, 60:80] = (255, 0, 0)
    Image.fromarray(mask).save(root / "m.png")
    rgba = np.zeros((80, 100, 4), np.uint8)
    rgba[..., 3] = 255  # black but opaque
    Image.fromarray(rgba).save(root / "rgba.png")
    return root


# (response, category, metadata.count, parser, mask, expected success)
CASES = [
    # Molmo's <point>: percentages, (30.5, 20.0) px
    ('<point x="30.5" y="25.0" alt="cup">cup</point>', "default", None, "molmo", "m.png", 1.0),
    # (x, y) with one decimal each is a percentage too
    ("(30.5, 25.0)", "default", None, "molmo", "m.png", 1.0),
    # without decimals it is no Molmo point, and there is no bracket: no point
    ("(30, 25)", "default", None, "molmo", "m.png", 0.0),
    # the bracket fallback reads pixels
    ("[30, 20]", "default", None, "molmo", "m.png", 1.0),
    # Click(...) matches two patterns: two points; the first is kept outside counting
    ("Click(30.5, 25.0)", "default", None, "molmo", "m.png", 1.0),
    # ... and counting sees 2 points for an expected 1
    ("Click(30.5, 25.0)", "counting", 1, "molmo", "m.png", 0.0),
    # a percentage over 100 drops the point
    ('<point x="130.0" y="25.0">x</point>', "default", None, "molmo", "m.png", 0.0),
    # any channel > 127: the red area counts
    ('<point x="70.0" y="62.5">x</point>', "default", None, "molmo", "m.png", 1.0),
    # <points x1 y1 x2 y2>: two points
    (
        '<points x1="30.0" y1="25.0" x2="25.0" y2="18.75" alt="cups">cups</points>',
        "counting",
        2,
        "molmo",
        "m.png",
        1.0,
    ),
    (
        '<points x1="30.0" y1="25.0" x2="25.0" y2="18.75" alt="cups">cups</points>',
        "counting",
        3,
        "molmo",
        "m.png",
        0.0,
    ),
    # truncation: 39.9 px is column 39, inside (rounding would give 40, outside)
    ('<point x="39.9" y="25.0">x</point>', "default", None, "molmo", "m.png", 1.0),
    # p=303,250 are tenths of a percent
    ("p=303,250", "default", None, "molmo", "m.png", 1.0),
    ('答案: <point x="30.0" y="25.0">杯子</point>', "default", None, "molmo", "m.png", 1.0),
    ("", "default", None, "molmo", "m.png", 0.0),
    # GLM's 0-1000 box reaches the bracket fallback as pixels: (300, 250), outside
    (f"{B}[[300,250]]{E}", "default", None, "molmo", "m.png", 0.0),
    # the API-model JSON reading: pixels
    ('[{"point": [30, 20]}]', "default", None, "json", "m.png", 1.0),
    # a bare pair is no {"point": ...}: a processing error, failure
    ("[[30, 20]]", "default", None, "json", "m.png", 0.0),
    ('[{"point": [30, 20]}, {"point": [25, 15]}]', "counting", 2, "json", "m.png", 1.0),
    # JSON only the first point counts outside counting
    ('[{"point": [30, 20]}, {"point": [90, 70]}]', "default", None, "json", "m.png", 1.0),
    # the Molmo fallback finds the [x, y] inside JSON objects
    ('[{"point": [30, 20]}]', "default", None, "molmo", "m.png", 1.0),
    (
        '<think><point x="90.0" y="90.0"></think><point x="30.0" y="25.0">c</point>',
        "default",
        None,
        "molmo",
        "m.png",
        1.0,
    ),
    # an opaque alpha channel makes every pixel foreground
    ('<point x="5.0" y="5.0">x</point>', "default", None, "molmo", "rgba.png", 1.0),
    # "[-0.5, 12]": the pair regex skips the sign; JSON gives numbers only; the number pairs give (0.5, 12)
    ("[-0.5, 12]", "default", None, "molmo", "m.png", 0.0),
    ("[12, 40] then", "default", None, "molmo", "m.png", 0.0),
]


@pytest.mark.parametrize(("response", "category", "count", "parser", "mask", "expected"), CASES)
def test_pointarena_matches_its_evaluator(
    mask_dir: Path, response: str, category: str, count: int | None, parser: str, mask: str, expected: float
) -> None:
    meta = {} if count is None else {"count": count}
    sample = Sample("p", "q", {"mask": mask}, category=category, metadata=meta, root=mask_dir)
    assert PointArenaScorer(parser=parser).score(sample, response).scores["pointarena"] == expected  # type: ignore[arg-type]


def test_oracle_for_both_parsers(mask_dir: Path) -> None:
    for parser in ("molmo", "json"):
        scorer = PointArenaScorer(parser=parser)  # type: ignore[arg-type]
        for category, meta in (("default", {}), ("counting", {"count": 2})):
            sample = Sample("p", "q", {"mask": "m.png"}, category=category, metadata=meta, root=mask_dir)
            assert scorer.score(sample, scorer.oracle(sample)).scores["pointarena"] == 1.0, (parser, category)
