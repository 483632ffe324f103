"""Colour difference of text colours (Design2Code's colour score; report section 5).

sRGB (D65) is converted to CIELAB and compared with **CIEDE2000** (Sharma, Wu & Dalal 2005);
the similarity of two colours is max(0, 1 - dE/100), as in Design2Code (Si et al. 2024).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def srgb_to_lab(rgb: Any) -> np.ndarray:
    """sRGB in 0-255 (..., 3) to CIELAB under D65 (..., 3)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    )
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    delta = 6.0 / 29.0
    f = np.where(xyz > delta**3, np.cbrt(xyz), xyz / (3 * delta**2) + 4.0 / 29.0)
    lab_l = 116.0 * f[..., 1] - 16.0
    lab_a = 500.0 * (f[..., 0] - f[..., 1])
    lab_b = 200.0 * (f[..., 1] - f[..., 2])
    return np.stack([lab_l, lab_a, lab_b], axis=-1)


def ciede2000(lab1: Any, lab2: Any, k_l: float = 1.0, k_c: float = 1.0, k_h: float = 1.0) -> np.ndarray:
    """CIEDE2000 colour difference of CIELAB colours (..., 3), following Sharma, Wu & Dalal (2005)."""
    lab1 = np.asarray(lab1, dtype=np.float64)
    lab2 = np.asarray(lab2, dtype=np.float64)
    l1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    l2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    c_bar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2.0
    g = 0.5 * (1.0 - np.sqrt(c_bar**7 / (c_bar**7 + 25.0**7)))
    a1p, a2p = (1.0 + g) * a1, (1.0 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360.0
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360.0
    zero = (c1p * c2p) == 0

    d_lp = l2 - l1
    d_cp = c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180.0, dh - 360.0, np.where(dh < -180.0, dh + 360.0, dh))
    dh = np.where(zero, 0.0, dh)
    d_hp = 2.0 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh) / 2.0)

    l_bar = (l1 + l2) / 2.0
    c_barp = (c1p + c2p) / 2.0
    h_sum = h1p + h2p
    h_barp = np.where(
        np.abs(h1p - h2p) <= 180.0,
        h_sum / 2.0,
        np.where(h_sum < 360.0, (h_sum + 360.0) / 2.0, (h_sum - 360.0) / 2.0),
    )
    h_barp = np.where(zero, h_sum, h_barp)
    t = (
        1.0
        - 0.17 * np.cos(np.radians(h_barp - 30.0))
        + 0.24 * np.cos(np.radians(2.0 * h_barp))
        + 0.32 * np.cos(np.radians(3.0 * h_barp + 6.0))
        - 0.20 * np.cos(np.radians(4.0 * h_barp - 63.0))
    )
    d_theta = 30.0 * np.exp(-(((h_barp - 275.0) / 25.0) ** 2))
    r_c = 2.0 * np.sqrt(c_barp**7 / (c_barp**7 + 25.0**7))
    s_l = 1.0 + 0.015 * (l_bar - 50.0) ** 2 / np.sqrt(20.0 + (l_bar - 50.0) ** 2)
    s_c = 1.0 + 0.045 * c_barp
    s_h = 1.0 + 0.015 * c_barp * t
    r_t = -np.sin(np.radians(2.0 * d_theta)) * r_c
    tl, tc, th = d_lp / (k_l * s_l), d_cp / (k_c * s_c), d_hp / (k_h * s_h)
    return np.sqrt(np.maximum(tl**2 + tc**2 + th**2 + r_t * tc * th, 0.0))


def color_similarity(rgb1: Any, rgb2: Any) -> float:
    """max(0, 1 - CIEDE2000 / 100) of two sRGB colours (Design2Code's colour score)."""
    de = float(ciede2000(srgb_to_lab(rgb1), srgb_to_lab(rgb2)))
    return max(0.0, 1.0 - de / 100.0)


# --- colormath 3.0 arithmetic (what Design2Code's visual_score.py calls) ---------------------------
# Design2Code converts colours with colormath: sRGBColor(..., is_upscaled=True) -> LabColor under
# the sRGB space's native D65 (no chromatic adaptation), then delta_e_cie2000. Its constants and one
# formula differ slightly from the textbook ones above, so parity needs its own arithmetic.
_COLORMATH_RGB_TO_XYZ = np.array(
    [
        [0.412424, 0.357579, 0.180464],
        [0.212656, 0.715158, 0.0721856],
        [0.0193324, 0.119193, 0.950444],
    ]
)
_COLORMATH_D65 = (0.95047, 1.00000, 1.08883)  # 2-degree observer
_CIE_E = 216.0 / 24389.0


def colormath_srgb_to_lab(rgb: Any) -> tuple[float, float, float]:
    """sRGB in 0-255 to CIELAB (D65) as colormath 3.0 ``convert_color(sRGBColor, LabColor)`` does.

    Linearise each channel (``v / 12.92`` up to 0.04045, else ``((v + 0.055) / 1.055) ** 2.4``),
    apply colormath's sRGB matrix, clamp XYZ at 0, divide by the D65 white, then
    ``f(t) = t ** (1/3)`` above 216/24389 and ``7.787 t + 16/116`` below.
    """
    linear = []
    for value in rgb:
        v = float(value) / 255.0
        linear.append(v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4)
    xyz = [max(float(x), 0.0) for x in _COLORMATH_RGB_TO_XYZ @ np.array(linear)]
    f = []
    for value, white in zip(xyz, _COLORMATH_D65, strict=True):
        t = value / white
        f.append(t ** (1.0 / 3.0) if t > _CIE_E else 7.787 * t + 16.0 / 116.0)
    return 116.0 * f[1] - 16.0, 500.0 * (f[0] - f[1]), 200.0 * (f[1] - f[2])


def colormath_ciede2000(lab1: Any, lab2: Any) -> float:
    """CIEDE2000 as colormath 3.0 ``color_diff_matrix.delta_e_cie2000`` computes it.

    It differs from Sharma et al. in the mean hue when the hues are more than 180 degrees apart:
    colormath always adds 360 (the paper subtracts it when the sum is 360 or more), which moves the
    rotation term's Gaussian slightly; zero-chroma colours are not special-cased.
    """
    l1, a1, b1 = (float(v) for v in lab1)
    l2, a2, b2 = (float(v) for v in lab2)
    mean_l = (l1 + l2) / 2.0
    c1, c2 = np.sqrt(a1**2 + b1**2), np.sqrt(a2**2 + b2**2)
    mean_c = (c1 + c2) / 2.0
    g = 0.5 * (1 - np.sqrt(mean_c**7.0 / (mean_c**7.0 + 25.0**7.0)))
    a1p, a2p = (1.0 + g) * a1, (1.0 + g) * a2
    c1p, c2p = np.sqrt(a1p**2 + b1**2), np.sqrt(a2p**2 + b2**2)
    mean_cp = (c1p + c2p) / 2.0
    h1p = np.degrees(np.arctan2(b1, a1p))
    h1p += 360 if h1p < 0 else 0
    h2p = np.degrees(np.arctan2(b2, a2p))
    h2p += 360 if h2p < 0 else 0
    mean_hp = ((360 if abs(h1p - h2p) > 180 else 0) + h1p + h2p) / 2.0
    t = (
        1
        - 0.17 * np.cos(np.radians(mean_hp - 30))
        + 0.24 * np.cos(np.radians(2 * mean_hp))
        + 0.32 * np.cos(np.radians(3 * mean_hp + 6))
        - 0.2 * np.cos(np.radians(4 * mean_hp - 63))
    )
    dh = h2p - h1p
    dh_p = dh + (360 if abs(dh) > 180 else 0) - (720 if h2p > h1p else 0)
    d_lp, d_cp = l2 - l1, c2p - c1p
    d_hp = 2 * np.sqrt(c2p * c1p) * np.sin(np.radians(dh_p) / 2.0)
    s_l = 1 + (0.015 * (mean_l - 50) ** 2) / np.sqrt(20 + (mean_l - 50) ** 2.0)
    s_c = 1 + 0.045 * mean_cp
    s_h = 1 + 0.015 * mean_cp * t
    d_ro = 30 * np.exp(-(((mean_hp - 275) / 25) ** 2.0))
    r_c = np.sqrt(mean_cp**7.0 / (mean_cp**7.0 + 25.0**7.0))
    r_t = -2 * r_c * np.sin(2 * np.radians(d_ro))
    return float(
        np.sqrt((d_lp / s_l) ** 2 + (d_cp / s_c) ** 2 + (d_hp / s_h) ** 2 + r_t * (d_cp / s_c) * (d_hp / s_h))
    )


def design2code_color_similarity(rgb1: Any, rgb2: Any) -> float:
    """Design2Code's ``color_similarity_ciede2000``: max(0, 1 - dE / 100) with colormath's arithmetic."""
    de = colormath_ciede2000(colormath_srgb_to_lab(rgb1), colormath_srgb_to_lab(rgb2))
    return max(0.0, 1 - (de / 100))
