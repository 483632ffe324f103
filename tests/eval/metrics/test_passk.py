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


# Parity with openai/human-eval human_eval/evaluation.py, estimate_pass_at_k's estimator:
# 1.0 when n - c < k, else 1 - prod(1 - k / arange(n - c + 1, n + 1)). (n, c, k, expected)
HUMAN_EVAL_CASES = [
    (1, 0, 1, 0.0),  # no correct sample
    (1, 1, 1, 1.0),  # n - c = 0 < k
    (5, 0, 1, 0.0),
    (5, 5, 5, 1.0),
    (5, 1, 1, 0.2),  # c / n for k = 1
    (5, 1, 5, 1.0),  # n - c = 4 < 5
    (10, 3, 1, 0.3),
    (10, 3, 5, 0.9166666666666666),  # 1 - C(7,5) / C(10,5) = 1 - 21/252
    (10, 3, 8, 1.0),  # n - c = 7 < 8
    (10, 7, 4, 1.0),
    (20, 1, 10, 0.5),  # one correct of 20, half the 10-subsets hold it
    (100, 1, 1, 0.01),
    (100, 1, 10, 0.1),
    (100, 1, 100, 1.0),
    (200, 13, 10, 0.4975511147306061),
    (200, 13, 100, 0.9999194971988055),
    (7, 3, 5, 1.0),
    (3, 1, 2, 2 / 3),
    (4, 2, 3, 1.0),
    (1000, 1, 500, 0.5),
    (16, 8, 8, 0.9999222999223),  # 1 - C(8,8) / C(16,8) = 1 - 1/12870
]


@pytest.mark.parametrize(("n", "c", "k", "expected"), HUMAN_EVAL_CASES)
def test_matches_human_eval_estimator(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_only_ks_every_problem_supports_are_reported() -> None:
    # human-eval reports pass@k only where (total >= k).all(); the mean over problems.
    table = pass_at_k_table([4, 8, 8], [1, 0, 8], ks=[1, 2, 4, 8])
    assert set(table) == {1, 2, 4}
    assert table[1] == pytest.approx((0.25 + 0.0 + 1.0) / 3)
