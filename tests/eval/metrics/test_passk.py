"""pass@k: the unbiased estimator against brute-force enumeration of k-subsets."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from glmkit.eval.metrics.passk import UnbiasedPassAtK, default_ks, mean_pass_at_k, pass_at_k, pass_at_k_table


def _brute_force(n: int, c: int, k: int) -> float:
    """Fraction of k-subsets of n samples (c correct) holding at least one correct sample."""
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_matches_brute_force(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(_brute_force(n, c, k), abs=1e-12), (n, c, k)


def test_closed_forms_and_stability() -> None:
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 6, 5) == 1.0  # n - c < k
    # Large n: the binomial form would need huge integers; the product form stays accurate.
    n, c, k = 2000, 7, 100
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-10)


def test_errors_and_tables() -> None:
    with pytest.raises(ValueError, match="k must be in"):
        pass_at_k(5, 1, 6)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(5, 6, 1)
    assert default_ks(10) == [1, 2, 4, 8, 10]
    assert default_ks(1) == [1]
    assert mean_pass_at_k([4, 4], [0, 4], 1) == pytest.approx(0.5)
    table = pass_at_k_table([4, 8], [1, 2])
    assert list(table) == [1, 2, 4]  # only k every problem supports
    assert table[1] == pytest.approx((0.25 + 0.25) / 2)


def test_torchmetric() -> None:
    metric = UnbiasedPassAtK(k=2)
    metric.update(torch.tensor([4, 4]), torch.tensor([1, 0]))
    other = UnbiasedPassAtK(k=2)
    other.update(4, 4)
    metric.merge_state(other)
    assert metric.compute().item() == pytest.approx((_brute_force(4, 1, 2) + 0 + 1) / 3)
