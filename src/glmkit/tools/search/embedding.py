"""A small deterministic image embedding for reverse image search without a model."""

from __future__ import annotations

import numpy as np
from PIL import Image


def image_embedding(image: Image.Image) -> np.ndarray:
    """A deterministic 128-d unit vector: colour histogram (64) + mean-free 8x8 grey thumbnail (64).

    The histogram matches colour content regardless of layout; the thumbnail matches layout.
    The halves are normalised separately so that neither dominates.
    """
    rgb = np.asarray(image.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR), dtype=np.int64)
    bins = rgb // 64  # 4 levels per channel
    hist = np.bincount((bins[..., 0] * 16 + bins[..., 1] * 4 + bins[..., 2]).ravel(), minlength=64).astype(
        np.float64
    )
    hist = np.sqrt(hist / hist.sum())  # Hellinger: cosine of square roots
    grey = np.asarray(image.convert("L").resize((8, 8), Image.Resampling.BOX), dtype=np.float64).ravel()
    grey -= grey.mean()
    parts = [hist / (np.linalg.norm(hist) or 1.0), grey / (np.linalg.norm(grey) or 1.0)]
    vec = np.concatenate(parts)
    return vec / (np.linalg.norm(vec) or 1.0)
