"""pass@k with the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models
Trained on Code", eq. 1), used for per-source pass@k in RL (report section 2.3) and in evaluation.

With n samples of which c are correct, pass@k = 1 - C(n-c, k) / C(n, k). The binomials overflow
for large n, so the product form is used:

    1 - C(n-c, k) / C(n, k) = 1 - prod_{i=n-c+1}^{n} (1 - k / i),

which is exactly 1 when n - c < k (every k-subset then holds a correct sample).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``n`` samples, ``c`` of them correct."""
    if n < 1 or not 0 <= c <= n:
        raise ValueError(f"need n >= 1 and 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}], got k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def mean_pass_at_k(ns: Sequence[int], cs: Sequence[int], k: int) -> float:
    """pass@k averaged over problems (``ns[i]`` samples, ``cs[i]`` correct for problem i)."""
    if len(ns) != len(cs):
        raise ValueError(f"{len(ns)} sample counts but {len(cs)} correct counts")
    if not ns:
        raise ValueError("no problems")
    return float(np.mean([pass_at_k(n, c, k) for n, c in zip(ns, cs, strict=True)]))


def default_ks(n: int) -> list[int]:
    """1, powers of two below ``n``, and ``n`` itself."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return [*ks, n]


def pass_at_k_table(
    ns: Sequence[int], cs: Sequence[int], ks: Sequence[int] | None = None
) -> dict[int, float]:
    """pass@k for each k in ``ks`` that every problem supports (n >= k), as human-eval reports it."""
    if not ns:
        return {}
    smallest = min(ns)
    ks = default_ks(smallest) if ks is None else ks
    return {k: mean_pass_at_k(ns, cs, k) for k in ks if k <= smallest}


class UnbiasedPassAtK(Metric):
    """Mean unbiased pass@k over problems, synchronised across processes.

    ``update(n, c)`` takes per-problem sample counts and correct counts (ints or 1-D tensors).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, k: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.add_state("score_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("problems", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, n: Any, c: Any) -> None:
        """Accumulate problems; each must have at least ``k`` samples."""
        ns = torch.as_tensor(n).reshape(-1).tolist()
        cs = torch.as_tensor(c).reshape(-1).tolist()
        if len(ns) != len(cs):
            raise ValueError(f"{len(ns)} sample counts but {len(cs)} correct counts")
        self.score_sum += sum(pass_at_k(int(ni), int(ci), self.k) for ni, ci in zip(ns, cs, strict=True))
        self.problems += len(ns)

    def compute(self) -> torch.Tensor:
        """Mean pass@k (0 when nothing was seen)."""
        return self.score_sum / self.problems.clamp(min=1)
