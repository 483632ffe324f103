"""Drop path: identity at eval, whole-sample drops with unbiased scaling, per packed sequence."""

from __future__ import annotations

import pytest
import torch

from glmkit.nn.drop import DropPath, drop_path
from glmkit.nn.packed import SeqLens


def test_identity_at_eval_and_at_zero_rate() -> None:
    x = torch.randn(4, 5, 6)
    assert drop_path(x, 0.5, training=False) is x
    assert drop_path(x, 0.0, training=True) is x
    module = DropPath(0.5).eval()
    assert module(x) is x


def test_drops_whole_rows_and_rescales() -> None:
    torch.manual_seed(0)
    x = torch.ones(2000, 3, 4)
    out = drop_path(x, 0.25, training=True)
    per_row = out.flatten(1)
    # each row is all zero or all 1 / keep_prob
    assert ((per_row == 0).all(1) | (per_row == 1 / 0.75).all(1)).all()
    assert abs(out.mean().item() - 1.0) < 0.05  # unbiased in expectation
    # the draw is the one stochastic depth has always used: bernoulli over [B, 1, 1]
    torch.manual_seed(1)
    expected = x * x.new_empty(2000, 1, 1).bernoulli_(0.75).div_(0.75)
    torch.manual_seed(1)
    assert torch.equal(drop_path(x, 0.25, training=True), expected)


def test_packed_rows_drop_each_sequence_on_its_own() -> None:
    torch.manual_seed(0)
    seq_lens = SeqLens(torch.tensor([[3, 2, 0], [1, 1, 1]]))
    n = 6
    seg = seq_lens.segment_ids(n)
    kept_or_dropped = set()
    for _ in range(40):
        out = DropPath(0.5).train()(torch.ones(2, n, 4), seq_lens)
        for s in range(seq_lens.num_seqs):
            values = out[seg == s].unique()
            assert values.numel() == 1 and values.item() in (0.0, 2.0)  # one decision per sequence
            kept_or_dropped.add((s, values.item()))
        assert (out[seg < 0] == 1.0).all()  # padding is never scaled
    assert len(kept_or_dropped) == 2 * seq_lens.num_seqs  # every sequence was both kept and dropped


def test_rate_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"drop_prob must be in \[0, 1\), got 1.0"):
        DropPath(1.0)
