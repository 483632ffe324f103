"""FlexAttention block masks built block by block from what glmkit's attention takes.

FlexAttention (``torch.nn.attention.flex_attention``) skips the ``BLOCK x BLOCK`` tiles of the score
matrix where no query sees a key, computes the tiles where every query sees every key without
evaluating a mask, and evaluates ``mask_mod`` only in the tiles between. torch's
``create_block_mask`` finds those tiles by evaluating ``mask_mod`` on every (query, key) pair: a
``B x N x N`` tensor and its temporaries per batch (about 5 GB for 16 rows of 4096 tokens). The
builders here find them from the same information at tile granularity instead:

* packed rows (:func:`packed_block_mask`): each row's sequences are contiguous runs of increasing
  segment ids, so a tile of queries meets a tile of keys exactly when their ranges of segment ids
  overlap, and is full when both lie inside one sequence: ``O(B x (N / BLOCK)^2)``;
* a boolean mask (:func:`dense_block_mask`): any / all over each tile of the mask the caller holds.

Lengths must be multiples of ``BLOCK``; the ``flex`` backend pads its inputs to them (padding
positions belong to no sequence and are masked), which also keeps one compiled shape for rows
whose length varies by a few tokens from batch to batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

#: FlexAttention's default tile size (queries and keys)
FLEX_BLOCK = 128


def padded_length(n: int, block: int = FLEX_BLOCK) -> int:
    """``n`` rounded up to a multiple of ``block``."""
    return -(-n // block) * block


def _kv_blocks(partial: Tensor, full: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``BlockMask.from_kv_blocks``' arguments from ``[B, H, Q_BLOCKS, KV_BLOCKS]`` tile flags: per query
    tile, how many key tiles are partial / full and their indices (those tiles first, in order)."""

    def counts_and_indices(tiles: Tensor) -> tuple[Tensor, Tensor]:
        counts = tiles.sum(-1, dtype=torch.int32)
        order = torch.argsort((~tiles).to(torch.int8), dim=-1, stable=True).to(torch.int32)
        return counts, order

    return (*counts_and_indices(partial), *counts_and_indices(full))


def packed_block_mask(segment_ids: Tensor, block: int = FLEX_BLOCK) -> Any:  # BlockMask
    """The block mask of packed self-attention from ``[B, N]`` segment ids (:meth:`SeqLens.segment_ids`).

    Along each row the ids increase and each sequence is one run; -1 marks padding, which sees
    nothing. ``N`` must be a multiple of ``block``.
    """
    from torch.nn.attention.flex_attention import BlockMask

    batch, n = segment_ids.shape
    if n % block:
        raise ValueError(f"packed_block_mask needs a length that is a multiple of {block}, got {n}")
    tiles = segment_ids.view(batch, n // block, block)
    real = tiles >= 0
    big = torch.iinfo(segment_ids.dtype).max
    low = torch.where(real, tiles, big).amin(-1)  # B, tiles: first sequence in the tile
    high = torch.where(real, tiles, -1).amax(-1)  # last sequence in the tile (-1: padding only)
    some = real.any(-1)
    meet = (low[:, :, None] <= high[:, None, :]) & (low[:, None, :] <= high[:, :, None])
    meet &= some[:, :, None] & some[:, None, :]
    one_sequence = real.all(-1) & (low == high)
    full = one_sequence[:, :, None] & one_sequence[:, None, :] & (low[:, :, None] == low[:, None, :])

    def same_sequence(b: Tensor, h: Tensor, q: Tensor, k: Tensor) -> Tensor:
        return (segment_ids[b, q] == segment_ids[b, k]) & (segment_ids[b, q] >= 0)

    partial_tiles = (meet & ~full)[:, None]  # B, 1 (every head), q tiles, kv tiles
    return BlockMask.from_kv_blocks(
        *_kv_blocks(partial_tiles, full[:, None]), BLOCK_SIZE=block, mask_mod=same_sequence
    )


def dense_block_mask(mask: Tensor, q_len: int, block: int = FLEX_BLOCK) -> Any:  # BlockMask
    """The block mask of a boolean ``[B | 1, heads | 1, Nq | 1, Nk]`` mask (True: may attend) for
    ``q_len`` queries.

    Size-1 dimensions broadcast (a key-padding mask is ``[B, 1, 1, Nk]``); ``q_len`` and ``Nk`` must
    be multiples of ``block``. Queries that see no key return zeros.
    """
    from torch.nn.attention.flex_attention import BlockMask

    batch, heads, n_q, n_k = mask.shape
    if n_k % block or q_len % block or n_q not in (1, q_len):
        raise ValueError(
            f"dense_block_mask needs {q_len} (or 1) x {n_k} with both lengths multiples of {block}, "
            f"got a mask of {n_q} x {n_k}"
        )
    if n_q == 1:  # the same keys for every query: one row of key tiles, for every query tile
        keys = mask[:, :, 0].reshape(batch, heads, n_k // block, block)
        shape = (batch, heads, q_len // block, n_k // block)
        some, every = (t[:, :, None].expand(shape) for t in (keys.any(-1), keys.all(-1)))
    else:
        tiles = mask.reshape(batch, heads, n_q // block, block, n_k // block, block)
        some, every = tiles.any(dim=(3, 5)), tiles.all(dim=(3, 5))

    def allowed(b: Tensor, h: Tensor, q: Tensor, k: Tensor) -> Tensor:
        zero = torch.zeros_like(b)
        return mask[zero if batch == 1 else b, zero if heads == 1 else h, zero if n_q == 1 else q, k]

    return BlockMask.from_kv_blocks(*_kv_blocks(some & ~every, every), BLOCK_SIZE=block, mask_mod=allowed)


__all__ = ["FLEX_BLOCK", "dense_block_mask", "packed_block_mask", "padded_length"]
