"""CIEDE2000 against Sharma, Wu & Dalal's table and sRGB to CIELAB against reference colours."""

from __future__ import annotations

import numpy as np
import pytest

from glmkit.eval.metrics.color import ciede2000, color_similarity, srgb_to_lab

# Sharma, Wu & Dalal (2005), Table 1: CIELAB pairs and their CIEDE2000 differences.
SHARMA = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 3.1571, -77.2803), (50.0, 0.0, -82.7485), 2.8615),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((50.0, 2.5, 0.0), (61.0, -5.0, 29.0), 22.8977),
    ((50.0, 2.5, 0.0), (56.0, -27.0, -3.0), 31.9030),
    ((50.0, 2.5, 0.0), (58.0, 24.0, 15.0), 19.4535),
    ((50.0, 2.5, 0.0), (50.0, 3.1736, 0.5854), 1.0000),
]


def test_ciede2000_against_sharma_table() -> None:
    for lab1, lab2, expected in SHARMA:
        assert float(ciede2000(lab1, lab2)) == pytest.approx(expected, abs=1e-4)
        assert float(ciede2000(lab2, lab1)) == pytest.approx(expected, abs=1e-4)  # symmetric
    batch = ciede2000([p[0] for p in SHARMA], [p[1] for p in SHARMA])
    assert batch.shape == (len(SHARMA),)


def test_srgb_to_lab_reference_colours() -> None:
    np.testing.assert_allclose(srgb_to_lab([255, 255, 255]), [100, 0, 0], atol=1e-3)
    np.testing.assert_allclose(srgb_to_lab([0, 0, 0]), [0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(srgb_to_lab([255, 0, 0]), [53.2408, 80.0925, 67.2032], atol=1e-3)
    assert color_similarity((10, 20, 30), (10, 20, 30)) == 1.0
    assert color_similarity((0, 0, 0), (255, 255, 255)) == 0.0  # dE 100 -> 0
