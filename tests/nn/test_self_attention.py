"""SelfAttention against a float64 reference written out from the formulas (QK-Norm, RoPE, softmax)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from glmkit.nn.packed import SeqLens
from glmkit.nn.rope import RotaryEmbedding2D, grid_coords, rotate_half
from glmkit.nn.self_attention import SelfAttention


def reference(attn: SelfAttention, x: torch.Tensor, rope=None, mask=None) -> torch.Tensor:
    """Heads split, per-head LayerNorm of q and k, rotate-half RoPE, masked softmax, projection."""
    b, n, c = x.shape
    h, d = attn.num_heads, attn.head_dim
    q, k, v = F.linear(x, attn.qkv.weight, attn.qkv.bias).split(c, dim=-1)
    q, k, v = (t.view(b, n, h, d) for t in (q, k, v))
    if not isinstance(attn.q_norm, torch.nn.Identity):
        q = F.layer_norm(q, (d,), attn.q_norm.weight, attn.q_norm.bias, attn.q_norm.eps)
        k = F.layer_norm(k, (d,), attn.k_norm.weight, attn.k_norm.bias, attn.k_norm.eps)
    if rope is not None:
        cos, sin = (t.double() for t in rope)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
    logits = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d)
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    probs = logits.softmax(-1).nan_to_num(0.0)
    out = torch.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, n, c)
    return F.linear(out, attn.proj.weight, attn.proj.bias)


@pytest.mark.parametrize("qk_norm", [False, True])
def test_matches_reference_with_qk_norm_and_rope(qk_norm: bool) -> None:
    torch.manual_seed(0)
    attn = SelfAttention(32, 4, qk_norm=qk_norm).double()
    x = torch.randn(2, 6, 32, dtype=torch.float64)
    rope = RotaryEmbedding2D(8)(grid_coords(2, 3))
    torch.testing.assert_close(attn(x, rope), reference(attn, x, rope))
    torch.testing.assert_close(attn(x), reference(attn, x))
    assert isinstance(attn.q_norm, torch.nn.LayerNorm if qk_norm else torch.nn.Identity)


def test_key_padding_and_packed_rows() -> None:
    torch.manual_seed(0)
    attn = SelfAttention(16, 2, qk_norm=True, qk_norm_type="rmsnorm").double()
    x = torch.randn(1, 7, 16, dtype=torch.float64)
    seq_lens = SeqLens(torch.tensor([[3, 2]]))  # two sequences, two padding positions
    packed = attn(x, seq_lens=seq_lens)
    for start, stop in ((0, 3), (3, 5)):
        torch.testing.assert_close(packed[:, start:stop], attn(x[:, start:stop]))
    valid = torch.tensor([[True] * 5 + [False] * 2])
    padded = attn(x, attn_mask=valid)
    torch.testing.assert_close(padded[:, :5], attn(x[:, :5]))


def test_state_dict_names_match_timm_attention() -> None:
    attn = SelfAttention(16, 2, qk_norm=True)
    assert set(attn.state_dict()) == {
        "qkv.weight",
        "qkv.bias",
        "q_norm.weight",
        "q_norm.bias",
        "k_norm.weight",
        "k_norm.bias",
        "proj.weight",
        "proj.bias",
    }
    with pytest.raises(ValueError, match="dim=10 is not divisible by num_heads=3"):
        SelfAttention(10, 3)
