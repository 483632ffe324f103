"""The CLIP visual score of Design2Code (``calculate_clip_similarity_with_blocks``) on a tiny random
open_clip model saved in a temporary directory: loading from a local directory, text inpainting,
the square resize, and the Design2Code metric using it on real renders."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from glmkit.eval.metrics.clip_score import ClipVisualScore, clip_unavailable_reason, rescale_and_mask
from glmkit.eval.render import chromium_unavailable_reason

needs_open_clip = pytest.mark.skipif(
    importlib.util.find_spec("open_clip") is None, reason="open_clip is not installed"
)
needs_cv2 = pytest.mark.skipif(importlib.util.find_spec("cv2") is None, reason="OpenCV is not installed")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import open_clip
    import torch

    folder = tmp_path_factory.mktemp("tiny-clip")
    cfg = {
        "embed_dim": 8,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
    }
    torch.manual_seed(0)
    torch.save(open_clip.model.CLIP(**cfg).state_dict(), folder / "open_clip_pytorch_model.bin")
    preprocess = {"interpolation": "bicubic", "resize_mode": "shortest"}
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": cfg, "preprocess_cfg": preprocess})
    )
    return folder


@needs_open_clip
def test_a_local_model_loads_and_scores_identical_screenshots_as_one(tiny_clip: Path) -> None:
    assert clip_unavailable_reason(str(tiny_clip), need_inpainting=False) is None
    clip = ClipVisualScore(str(tiny_clip))
    shot = np.random.default_rng(0).integers(0, 255, (60, 90, 3), dtype=np.uint8)
    other = np.random.default_rng(1).integers(0, 255, (60, 90, 3), dtype=np.uint8)
    assert clip(shot, shot, [], []) == pytest.approx(1.0, abs=1e-6)
    assert clip(shot, other, [], []) < 1.0 - 1e-4
    # squashed to a square of the shorter side, not cropped
    assert rescale_and_mask(shot, []).size == (60, 60)
    assert "holds no open_clip_config.json" in (
        clip_unavailable_reason(str(tiny_clip.parent), need_inpainting=False) or ""
    )


@needs_open_clip
def test_half_precision_runs_as_the_reference_on_a_gpu(tiny_clip: Path) -> None:
    import torch

    half = ClipVisualScore(str(tiny_clip), precision="fp16")
    full = ClipVisualScore(str(tiny_clip))
    assert half.model.visual.conv1.weight.dtype == torch.float16
    assert full.model.visual.conv1.weight.dtype == torch.float32
    shot = np.random.default_rng(0).integers(0, 255, (60, 90, 3), dtype=np.uint8)
    other = np.random.default_rng(1).integers(0, 255, (60, 90, 3), dtype=np.uint8)
    assert half.embed(shot, []).dtype == torch.float16
    assert half(shot, other, [], []) == pytest.approx(full(shot, other, [], []), abs=5e-3)
    with pytest.raises(ValueError, match="valid: fp32, fp16"):
        ClipVisualScore(str(tiny_clip), precision="bf16")  # type: ignore[arg-type]


@needs_open_clip
@needs_cv2
def test_text_boxes_are_inpainted_before_embedding(tiny_clip: Path) -> None:
    clip = ClipVisualScore(str(tiny_clip))
    shot = np.full((60, 90, 3), 255, np.uint8)
    shot[10:20, 10:40] = 0  # "text"
    masked = np.asarray(rescale_and_mask(shot, [(10 / 90, 10 / 60, 30 / 90, 10 / 60)]))
    assert masked.min() > 200  # the dark box is painted over
    blank = np.full((60, 90, 3), 255, np.uint8)
    assert clip(shot, blank, [(10 / 90, 10 / 60, 30 / 90, 10 / 60)], []) == pytest.approx(
        clip(blank, blank, [], []), abs=1e-3
    )


@pytest.mark.chromium
@needs_open_clip
@needs_cv2
@pytest.mark.skipif(chromium_unavailable_reason() is not None, reason="needs headless Chromium")
def test_design2code_runs_with_the_clip_visual_score(tiny_clip: Path, tmp_path: Path) -> None:
    from glmkit.eval.metrics.design2code import Design2CodeScorer
    from glmkit.scoring import Sample

    page = '<html><body style="margin:0"><h1 style="color:#123456">Hello rockets</h1><p>Fly today</p></body></html>'
    (tmp_path / "ref.html").write_text(page, encoding="utf-8")
    sample = Sample("ui", "q", {"html": "ref.html"}, root=tmp_path)
    scorer = Design2CodeScorer(visual="clip", clip_model=str(tiny_clip), timeout=3.0)
    try:
        same = scorer.score(sample, scorer.oracle(sample)).scores
        other = scorer.score(sample, "<html><body><p>Goodbye</p></body></html>").scores
    finally:
        scorer.close()
    assert same["design2code.visual"] == pytest.approx(1.0, abs=1e-5) and same[
        "design2code"
    ] == pytest.approx(1.0, abs=1e-5)
    assert other["design2code"] < same["design2code"]
    assert "not_comparable" not in scorer.describe() and scorer.describe()["visual"] == "clip"
