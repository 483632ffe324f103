"""Visual similarity of two screenshots: **SSIM** (Wang et al. 2004) on greyscale (report section 5).

Gaussian window (sigma 1.5, 11 taps), K1 0.01, K2 0.03; screenshots are padded to a common size
with white and resized to 256 px width. Design2Code's visual score is CLIP's
(:mod:`~glmkit.eval.metrics.clip_score`); SSIM is only its offline stand-in, and a summary marks the
numbers computed with it as not comparable.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = int(3.5 * sigma + 0.5)  # the window torchmetrics and skimage use (11 taps at sigma 1.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def _blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable filtering with whole-sample reflection at the borders, output the input's size."""
    r = len(kernel) // 2
    padded = np.pad(img, r, mode="reflect")
    h, w = img.shape
    rows = sum(kernel[i] * padded[i : i + h, :] for i in range(len(kernel)))
    return sum(kernel[i] * rows[:, i : i + w] for i in range(len(kernel)))


def ssim(
    x: Any, y: Any, data_range: float = 255.0, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03
) -> float:
    """Mean SSIM of two greyscale images of one shape (Wang et al. 2004, Gaussian window)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"ssim needs two 2-D images of one shape, got {x.shape} and {y.shape}")
    kernel = _gaussian_kernel(sigma)
    mu_x, mu_y = _blur(x, kernel), _blur(y, kernel)
    sxx = np.maximum(_blur(x * x, kernel) - mu_x**2, 0.0)
    syy = np.maximum(_blur(y * y, kernel) - mu_y**2, 0.0)
    sxy = _blur(x * y, kernel) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    smap = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return float(smap.mean())


def _to_grey(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 3:
        img = img[..., :3] @ np.array([0.299, 0.587, 0.114])
    return img


def visual_similarity(shot1: np.ndarray, shot2: np.ndarray, width: int = 256) -> float:
    """SSIM of two screenshots padded (white) to a common size and resized to ``width`` pixels wide."""
    from PIL import Image

    g1, g2 = _to_grey(shot1), _to_grey(shot2)
    h, w = max(g1.shape[0], g2.shape[0]), max(g1.shape[1], g2.shape[1])

    def prep(g: np.ndarray) -> np.ndarray:
        canvas = np.full((h, w), 255.0)
        canvas[: g.shape[0], : g.shape[1]] = g
        out_h = max(8, round(h * width / w))
        return np.asarray(
            Image.fromarray(canvas.astype(np.uint8)).resize((width, out_h), Image.BILINEAR), np.float64
        )

    return ssim(prep(g1), prep(g2))
