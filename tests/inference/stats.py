"""Goodness-of-fit helper for the sampling tests."""

from __future__ import annotations

import torch


def chi_square_p_value(counts: torch.Tensor, probs: torch.Tensor, min_expected: float = 5.0) -> float:
    """Pearson's chi-square p-value of ``counts`` against ``probs``; cells expecting < 5 are pooled into one."""
    counts, expected = counts.double(), probs.double() * counts.sum()
    big = expected >= min_expected
    stat = ((counts[big] - expected[big]) ** 2 / expected[big]).sum()
    cells = int(big.sum())
    if expected[~big].sum() > 0:
        stat = stat + (counts[~big].sum() - expected[~big].sum()) ** 2 / expected[~big].sum()
        cells += 1
    dof = torch.tensor((cells - 1) / 2, dtype=torch.float64)
    return float(torch.special.gammaincc(dof, stat / 2))  # the chi-square survival function
