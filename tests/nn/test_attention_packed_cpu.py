"""The CPU path of packed attention: one SDPA call per sequence, equal to the block-diagonal mask."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from glmkit.nn.attention import attention, packed_attention_mask
from glmkit.nn.packed import SeqLens

LENGTHS = [[4, 3, 2], [5, 0, 2], [0, 0, 0]]  # an empty slot and padding; a row of padding only


def _qkv(n: int = 10) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(3, 2, n, 8, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3)]


def _masked_rows(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seq_lens: SeqLens) -> torch.Tensor:
    """The reference: each row one SDPA call with the block-diagonal mask, padding queries zeroed."""
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=packed_attention_mask(seq_lens, q, k))
    return out.masked_fill(~seq_lens.valid(q.shape[2])[:, None, :, None], 0.0)


def test_per_sequence_path_equals_the_masked_rows_forward_and_backward() -> None:
    seq_lens = SeqLens.from_lists(LENGTHS)
    q, k, v = _qkv()
    out = attention(q, k, v, seq_lens=seq_lens)
    ref = _masked_rows(q, k, v, seq_lens)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    assert (out[1, :, 7:] == 0).all() and (out[2] == 0).all()  # padding queries see no key
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), (q, k, v))
    want = torch.autograd.grad((ref * weights).sum(), (q, k, v))
    for got, expected in zip(grads, want, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_per_sequence_path_under_cpu_autocast_keeps_one_dtype() -> None:
    seq_lens = SeqLens.from_lists(LENGTHS)
    q, k, v = (t.detach().float() for t in _qkv())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), seq_lens=seq_lens)
    assert out.shape == q.shape and out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), _masked_rows(q, k, v, seq_lens), rtol=2e-2, atol=2e-2)
