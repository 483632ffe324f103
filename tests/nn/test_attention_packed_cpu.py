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


def test_per_sequence_path_keeps_the_token_major_layout() -> None:
    # q, k, v as the fused qkv projection gives them: views of [B, N, heads, hd] memory. The output
    # and the gradients must come back token-major too, or every block pays copies around attention.
    seq_lens = SeqLens.from_lists(LENGTHS)
    x = torch.randn(3, 10, 3, 2, 8, dtype=torch.float64, requires_grad=True)  # B, N, (q k v), heads, hd
    q, k, v = (t.transpose(1, 2) for t in x.unbind(2))  # B, heads, N, hd
    layouts = []
    for t in (q, k, v):
        t.register_hook(lambda g: layouts.append(g.transpose(1, 2).is_contiguous()))
    out = attention(q, k, v, seq_lens=seq_lens)
    assert out.transpose(1, 2).is_contiguous()  # B, N, heads, hd in memory
    out.sum().backward()
    assert layouts == [True, True, True]
    torch.testing.assert_close(out, _masked_rows(q, k, v, seq_lens), rtol=1e-12, atol=1e-12)


def test_per_sequence_path_follows_sdpa_kernel_choice_and_dropout() -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    seq_lens = SeqLens.from_lists(LENGTHS)
    q, k, v = _qkv()
    with sdpa_kernel([SDPBackend.MATH]):  # another kernel per sequence: still exact
        out = attention(q, k, v, seq_lens=seq_lens)
    torch.testing.assert_close(out, _masked_rows(q, k, v, seq_lens), rtol=1e-12, atol=1e-12)
    torch.manual_seed(0)
    dropped = attention(q, k, v, seq_lens=seq_lens, dropout_p=0.5)
    assert dropped.shape == q.shape and (dropped[1, :, 7:] == 0).all()
    assert not torch.allclose(dropped, out)
