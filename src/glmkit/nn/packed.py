"""Sequences packed back to back in the rows of a token batch, described by their lengths.

Packing puts several variable-length sequences (NaFlex images, GLM-5V-Turbo section 2.1 stage 2;
documents) into one row instead of padding each to the longest, as in NaViT's "Patch n' Pack"
(Dehghani et al. 2023, arXiv 2307.06304, section 2.2). Row ``b`` of a ``[B, N, ...]`` batch holds
sequences of lengths ``lengths[b, 0], lengths[b, 1], ...`` one after another from position 0; a
length of 0 is an empty slot, and the positions after the row's last sequence are padding.

:class:`SeqLens` is what attention backends (``seq_lens=`` in :mod:`glmkit.nn.attention`) and
per-sequence layers (:func:`glmkit.nn.drop.drop_path`) read. Its derived forms (segment ids, the
block-diagonal mask, the flattened lengths of varlen kernels, flash-attention's ``cu_seqlens``) are
computed once per object and reused by every layer of a forward pass.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class SeqLens:
    """Lengths ``[B, S]`` of the sequences packed in each row of a ``[B, N, ...]`` batch.

    Args:
        lengths: integer tensor ``[B, S]``; ``lengths[b, s]`` tokens of sequence ``s`` follow those
            of sequence ``s - 1`` in row ``b``; 0 marks an empty slot. Sequences are numbered
            row-major over the non-empty slots (``0 .. num_seqs - 1``).
    """

    def __init__(self, lengths: Tensor) -> None:
        if not isinstance(lengths, Tensor) or lengths.ndim != 2 or lengths.is_floating_point():
            shape = list(lengths.shape) if isinstance(lengths, Tensor) else type(lengths).__name__
            raise ValueError(f"seq_lens must be an integer tensor [B, S] of sequence lengths, got {shape}")
        self.lengths = lengths.long()
        self._cache: dict[tuple[str, int], Any] = {}

    @classmethod
    def from_lists(cls, lengths: list[list[int]], device: torch.device | str | None = None) -> SeqLens:
        """From one list of lengths per row (rows may hold different numbers of sequences)."""
        width = max((len(row) for row in lengths), default=0)
        table = torch.zeros(len(lengths), width, dtype=torch.long)
        for b, row in enumerate(lengths):
            table[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        return cls(table.to(device))

    @property
    def batch_size(self) -> int:
        """Number of rows ``B``."""
        return self.lengths.shape[0]

    @property
    def num_seqs(self) -> int:
        """Number of sequences (non-empty slots) over all rows."""
        return self.cached("num_seqs", 0, lambda: int((self.lengths > 0).sum()))

    def row_totals(self) -> Tensor:
        """``[B]`` tokens covered by sequences in each row (the rest of the row is padding)."""
        return self.lengths.sum(dim=1)

    def check(self, n: int) -> None:
        """Raise ``ValueError`` unless every length is >= 0 and every row's sequences fit in ``n``."""

        def run() -> bool:
            if (self.lengths < 0).any():
                raise ValueError(f"seq_lens must be >= 0, got {self.lengths.tolist()}")
            totals = self.row_totals()
            if (totals > n).any():
                raise ValueError(
                    f"seq_lens rows sum to {totals.tolist()} tokens, more than the {n} positions of a row"
                )
            return True

        self.cached("check", n, run)

    def segment_ids(self, n: int) -> Tensor:
        """``[B, n]`` int64: the sequence each position belongs to (row-major numbering), -1 at padding."""

        def run() -> Tensor:
            self.check(n)
            lengths = self.lengths
            batch = lengths.shape[0]
            ends = lengths.cumsum(dim=1)  # B, S: one past each sequence's last position
            positions = torch.arange(n, device=lengths.device).expand(batch, n).contiguous()
            slot = torch.searchsorted(ends, positions, right=True)  # B, n: S beyond the last sequence
            present = lengths > 0
            ids = torch.where(present, present.flatten().cumsum(0).view_as(lengths) - 1, -1)
            ids = torch.cat([ids, ids.new_full((batch, 1), -1)], dim=1)  # B, S+1: padding slot is -1
            return ids.gather(1, slot)

        return self.cached("segment_ids", n, run)

    def valid(self, n: int) -> Tensor:
        """``[B, n]`` bool: True where a position belongs to a sequence, False at padding."""
        return self.cached("valid", n, lambda: self.segment_ids(n) >= 0)

    def block_mask(self, n: int) -> Tensor:
        """``[B, 1, n, n]`` bool, True where query and key lie in the same sequence (never at padding)."""

        def run() -> Tensor:
            seg = self.segment_ids(n)
            same = seg[:, :, None] == seg[:, None, :]  # B, n, n
            return (same & (seg >= 0)[:, :, None])[:, None]

        return self.cached("block_mask", n, run)

    def flat_lengths(self, n: int) -> list[int]:
        """Lengths along the flattened ``B * n`` token axis: each row's sequences, then its padding run.

        The form varlen kernels take (xformers ``BlockDiagonalMask.from_seqlens``); padding runs are
        blocks of their own, so they never meet real tokens.
        """
        return self.flat_runs(n)[0]

    def flat_runs(self, n: int) -> tuple[list[int], list[bool]]:
        """:meth:`flat_lengths` and, for each run, whether it is a sequence (True) or padding."""

        def run() -> tuple[list[int], list[bool]]:
            self.check(n)
            sizes: list[int] = []
            is_seq: list[bool] = []
            for row in self.lengths.tolist():
                sizes.extend(length for length in row if length > 0)
                is_seq.extend(True for length in row if length > 0)
                if n - sum(row) > 0:
                    sizes.append(n - sum(row))
                    is_seq.append(False)
            return sizes, is_seq

        return self.cached("flat_runs", n, run)

    def cu_seqlens(self, n: int) -> Tensor:
        """int32 ``[len(flat_lengths(n)) + 1]`` cumulative starts on the flattened axis (flash-attn style)."""

        def run() -> Tensor:
            starts = [0]
            for length in self.flat_lengths(n):
                starts.append(starts[-1] + length)
            return torch.tensor(starts, dtype=torch.int32, device=self.lengths.device)

        return self.cached("cu_seqlens", n, run)

    def cached(self, kind: str, n: int, compute: Any) -> Any:
        """``compute()`` once per ``(kind, n)`` for this object: how every derived form of the lengths
        here, and a backend's own (e.g. FlexAttention's block mask), is built once per forward pass."""
        key = (kind, n)
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def __repr__(self) -> str:
        return f"SeqLens({self.lengths.tolist()})"


__all__ = ["SeqLens"]
