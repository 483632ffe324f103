"""Dynamic sampling keeps only groups whose rewards differ."""

from __future__ import annotations

import torch

from glmkit.rl.algorithms import informative_groups


def test_all_equal_groups_are_dropped_by_id() -> None:
    # a = [1, 1] (all correct: drop), b = [0, 1] (keep), c = [0, 0.5] (keep), d = [0, 0] (drop),
    # e = [3] (one sample: drop), f = [1, NaN] (one scored sample: drop); ids interleaved
    r = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.5, 0.0, 3.0, 1.0, float("nan")])
    ids = ["a", "b", "a", "b", "c", "d", "c", "d", "e", "f", "f"]
    out = informative_groups(r, ids)
    assert out.keep.tolist() == [False, True, False, True, True, False, True, False, False, False, False]
    assert (out.kept_groups, out.dropped_groups) == (2, 4)


def test_tolerance() -> None:
    # spread 1e-3: kept at the default atol 1e-6, dropped at atol 1e-2
    r = torch.tensor([0.5, 0.501])
    assert informative_groups(r, [0, 0]).keep.all()
    assert not informative_groups(r, [0, 0], atol=1e-2).keep.any()
