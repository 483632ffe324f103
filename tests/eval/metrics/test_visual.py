"""SSIM against torchmetrics and the padding of screenshots of different sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glmkit.eval.metrics.visual import ssim, visual_similarity


def test_ssim_matches_torchmetrics() -> None:
    from torchmetrics.functional.image import structural_similarity_index_measure

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 52)).astype(np.float64)
    y = np.clip(x + rng.normal(0, 25, x.shape), 0, 255)
    ref = structural_similarity_index_measure(
        torch.tensor(y)[None, None], torch.tensor(x)[None, None], data_range=255.0
    ).item()
    assert ssim(x, y) == pytest.approx(ref, abs=1e-9)
    assert ssim(x, x) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same shape|one shape"):
        ssim(x, y[:10])


def test_visual_similarity_pads_different_heights() -> None:
    page = np.full((300, 200, 3), 255, np.uint8)
    page[20:60, 20:180] = 0
    taller = np.full((450, 200, 3), 255, np.uint8)
    taller[:300] = page
    assert visual_similarity(page, page) == pytest.approx(1.0)
    assert 0.5 < visual_similarity(page, taller) < 1.0
    moved = np.full((300, 200, 3), 255, np.uint8)
    moved[200:240, 20:180] = 0
    assert visual_similarity(page, moved) < visual_similarity(page, taller)
