"""SeqLens: the derived forms of packed rows (segment ids, block mask, varlen lengths, cu_seqlens)."""

from __future__ import annotations

import pytest
import torch

from glmkit.nn.packed import SeqLens


@pytest.fixture
def seq_lens() -> SeqLens:
    # row 0: sequences of 2 and 3 then 1 padding; row 1: an empty slot, a sequence of 4, then 2 padding
    return SeqLens(torch.tensor([[2, 3], [0, 4]]))


def test_segment_ids_and_valid(seq_lens: SeqLens) -> None:
    assert seq_lens.num_seqs == 3 and seq_lens.batch_size == 2
    assert seq_lens.segment_ids(6).tolist() == [[0, 0, 1, 1, 1, -1], [2, 2, 2, 2, -1, -1]]
    assert seq_lens.valid(6).tolist() == [[True] * 5 + [False], [True] * 4 + [False] * 2]
    assert seq_lens.row_totals().tolist() == [5, 4]


def test_block_mask_is_block_diagonal_without_padding(seq_lens: SeqLens) -> None:
    mask = seq_lens.block_mask(6)
    seg = torch.tensor([[0, 0, 1, 1, 1, -1], [2, 2, 2, 2, -1, -1]])
    for b in range(2):
        for i in range(6):
            for j in range(6):
                assert mask[b, 0, i, j] == (seg[b, i] == seg[b, j] >= 0)
    assert seq_lens.block_mask(6) is mask  # computed once, reused by every layer


def test_flat_lengths_and_cu_seqlens(seq_lens: SeqLens) -> None:
    # flattened [2 * 6] axis: 2, 3, padding 1 | 4, padding 2
    assert seq_lens.flat_lengths(6) == [2, 3, 1, 4, 2]
    assert seq_lens.flat_runs(6) == ([2, 3, 1, 4, 2], [True, True, False, True, False])
    assert seq_lens.flat_runs(6) is seq_lens.flat_runs(6)  # computed once, reused by every layer
    assert seq_lens.cu_seqlens(6).tolist() == [0, 2, 5, 6, 10, 12]
    assert seq_lens.cu_seqlens(6).dtype == torch.int32
    assert SeqLens(torch.tensor([[3, 3]])).flat_lengths(6) == [3, 3]  # no padding run when full


def test_from_lists() -> None:
    built = SeqLens.from_lists([[2, 3], [4]])
    assert built.lengths.tolist() == [[2, 3], [4, 0]]


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"integer tensor \[B, S\]"):
        SeqLens(torch.tensor([2.0, 3.0]))
    with pytest.raises(ValueError, match=r"rows sum to \[5\] tokens, more than the 4 positions"):
        SeqLens(torch.tensor([[2, 3]])).segment_ids(4)
    with pytest.raises(ValueError, match=">= 0"):
        SeqLens(torch.tensor([[2, -1]])).check(4)
