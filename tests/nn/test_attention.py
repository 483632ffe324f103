"""Attention backends against a naive softmax reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from glmkit.nn.attention import (
    ATTENTION_BACKENDS,
    AttentionFn,
    attention,
    expand_attention_mask,
    is_xformers_available,
    xformers_attention,
)
from glmkit.nn.packed import SeqLens
from glmkit.registry import RegistryError, registry


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None):
    """softmax(q kᵀ / sqrt(d)) v in float64; mask is [B, 1|H, Nq, Nk] bool, True = attend."""
    q, k, v = q.double(), k.double(), v.double()
    logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # fully masked rows -> 0
    return probs @ v


def qkv(batch: int = 2, heads: int = 3, n: int = 7, dim: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, n, dim, generator=g) for _ in range(3)]


def test_backends_registered() -> None:
    assert registry("attention") is ATTENTION_BACKENDS
    assert {"sdpa", "xformers", "flex"} <= set(ATTENTION_BACKENDS.names())


def test_sdpa_matches_naive_without_mask() -> None:
    q, k, v = qkv()
    out = attention(q, k, v)
    torch.testing.assert_close(out.double(), naive_attention(q, k, v), atol=1e-5, rtol=1e-5)


def test_sdpa_key_padding_mask_matches_naive() -> None:
    q, k, v = qkv(n=6)
    valid = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    out = attention(q, k, v, attn_mask=valid)
    ref = naive_attention(q, k, v, valid[:, None, None, :])
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    # the masked keys do not matter: change them and valid queries' outputs stay
    k2, v2 = k.clone(), v.clone()
    k2[1, :, 4:] = 100.0
    v2[1, :, 4:] = -100.0
    out2 = attention(q, k2, v2, attn_mask=valid)
    torch.testing.assert_close(out2, out)
    assert not torch.allclose(attention(q, k2, v2), attention(q, k, v))  # and without the mask they do


def test_sdpa_general_block_diagonal_mask() -> None:
    q, k, v = qkv(batch=1, n=6)
    seg = torch.tensor([0, 0, 0, 1, 1, 1])
    mask = (seg[:, None] == seg[None, :])[None, None]  # [1, 1, 6, 6] packed sequences
    out = attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out.double(), naive_attention(q, k, v, mask), atol=1e-5, rtol=1e-5)
    # each packed segment equals attention over that segment alone
    alone = attention(q[:, :, 3:], k[:, :, 3:], v[:, :, 3:])
    torch.testing.assert_close(out[:, :, 3:], alone, atol=1e-6, rtol=1e-5)


def test_fully_masked_row_gives_zeros_not_nan() -> None:
    q, k, v = qkv(batch=1, n=4)
    mask = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    mask[..., 2, :] = False
    out = attention(q, k, v, attn_mask=mask)
    assert torch.isfinite(out).all()
    assert (out[:, :, 2] == 0).all()


def test_mask_errors_name_the_problem() -> None:
    q, k, v = qkv(n=5)
    with pytest.raises(TypeError, match="bool"):
        attention(q, k, v, attn_mask=torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"\[B, Nk\] = \[2, 5\]"):
        attention(q, k, v, attn_mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="does not broadcast"):
        attention(q, k, v, attn_mask=torch.ones(2, 1, 5, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="3 dims"):
        attention(q, k, v, attn_mask=torch.ones(2, 5, 5, dtype=torch.bool))


def test_expand_key_padding_mask_is_a_broadcast_view() -> None:
    q, k, _ = qkv(n=5)
    valid = torch.ones(2, 5, dtype=torch.bool)
    assert expand_attention_mask(valid, q, k).shape == (2, 1, 1, 5)
    assert expand_attention_mask(None, q, k) is None


def test_unknown_backend_suggests_closest() -> None:
    q, k, v = qkv()
    with pytest.raises(RegistryError, match="Did you mean 'sdpa'"):
        attention(q, k, v, backend="sdpaa")


def test_xformers_on_cpu_names_the_fallback() -> None:
    q, k, v = qkv()
    with pytest.raises(RuntimeError, match="attn_backend='sdpa'"):
        xformers_attention(q, k, v)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.skipif(not is_xformers_available(), reason="needs xformers")
@pytest.mark.parametrize("masked", [False, True])
def test_xformers_matches_sdpa_on_cuda(masked: bool) -> None:
    q, k, v = (t.cuda().half() for t in qkv(n=37, dim=64))
    valid = torch.ones(2, 37, dtype=torch.bool, device="cuda")
    valid[1, 30:] = False
    mask = valid if masked else None
    out = attention(q, k, v, attn_mask=mask, backend="xformers")
    ref = attention(q, k, v, attn_mask=mask, backend="sdpa")
    torch.testing.assert_close(out, ref, atol=2e-3, rtol=2e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sdpa_on_cuda_with_padding_matches_naive() -> None:
    q, k, v = (t.cuda() for t in qkv(n=33, dim=64))
    valid = torch.ones(2, 33, dtype=torch.bool, device="cuda")
    valid[0, 20:] = False
    out = attention(q, k, v, attn_mask=valid)
    torch.testing.assert_close(
        out.double(), naive_attention(q, k, v, valid[:, None, None]), atol=1e-4, rtol=1e-4
    )


# ---------------------------------------------------------------- packed (variable-length) attention


def packed_reference(q, k, v, lengths: list[list[int]]) -> torch.Tensor:
    """Each sequence attended alone (float64), zeros at padding: what packed attention must equal."""
    out = torch.zeros_like(q, dtype=torch.float64)
    for b, row in enumerate(lengths):
        start = 0
        for length in row:
            sl = slice(start, start + length)
            out[b, :, sl] = naive_attention(q[b : b + 1, :, sl], k[b : b + 1, :, sl], v[b : b + 1, :, sl])[0]
            start += length
    return out


def test_sdpa_packed_equals_each_sequence_alone() -> None:
    q, k, v = qkv(batch=2, n=9)
    lengths = [[4, 3, 2], [5, 0, 2]]  # row 1: an empty slot and two padding positions
    seq_lens = SeqLens.from_lists(lengths)
    out = attention(q, k, v, seq_lens=seq_lens)
    torch.testing.assert_close(out.double(), packed_reference(q, k, v, lengths), atol=1e-5, rtol=1e-5)
    assert (out[1, :, 7:] == 0).all()  # padding queries return zeros


def test_packed_attention_never_mixes_sequences() -> None:
    q, k, v = qkv(batch=1, n=8)
    seq_lens = SeqLens(torch.tensor([[3, 5]]))
    out = attention(q, k, v, seq_lens=seq_lens)
    k2, v2, q2 = k.clone(), v.clone(), q.clone()
    k2[:, :, 3:], v2[:, :, 3:], q2[:, :, 3:] = 50.0, -50.0, 7.0  # change only the second sequence
    out2 = attention(q2, k2, v2, seq_lens=seq_lens)
    torch.testing.assert_close(out2[:, :, :3], out[:, :, :3], atol=0, rtol=0)
    assert not torch.allclose(out2[:, :, 3:], out[:, :, 3:])


def test_packed_attention_errors() -> None:
    q, k, v = qkv(batch=1, n=6)
    seq_lens = SeqLens(torch.tensor([[3, 3]]))
    with pytest.raises(ValueError, match="pass attn_mask or seq_lens, not both"):
        attention(q, k, v, attn_mask=torch.ones(1, 6, dtype=torch.bool), seq_lens=seq_lens)
    with pytest.raises(ValueError, match="seq_lens for 1 rows"):
        attention(*qkv(batch=2, n=6), seq_lens=seq_lens)
    with pytest.raises(ValueError, match="more than the 6 positions"):
        attention(q, k, v, seq_lens=SeqLens(torch.tensor([[4, 3]])))


def test_registry_holds_attention_functions_only() -> None:
    assert ATTENTION_BACKENDS.base is AttentionFn
    with pytest.raises(RegistryError, match="is not a .*AttentionFn"):
        ATTENTION_BACKENDS.add("not_callable", "sdpa")


def test_a_backend_without_packed_support_still_serves_dense_input(monkeypatch: pytest.MonkeyPatch) -> None:
    def dense_only(q, k, v, attn_mask=None, dropout_p=0.0):
        return F.scaled_dot_product_attention(q, k, v)

    ATTENTION_BACKENDS.check(dense_only)
    monkeypatch.setitem(ATTENTION_BACKENDS._entries, "test_dense_only", dense_only)  # gone after the test
    q, k, v = qkv()
    torch.testing.assert_close(attention(q, k, v, backend="test_dense_only"), attention(q, k, v))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.skipif(not is_xformers_available(), reason="needs xformers")
def test_xformers_packed_matches_sdpa_packed_on_cuda() -> None:
    q, k, v = (t.cuda().half() for t in qkv(batch=2, n=40, dim=64))
    seq_lens = SeqLens(torch.tensor([[17, 20, 0], [9, 9, 9]], device="cuda"))
    out = attention(q, k, v, seq_lens=seq_lens, backend="xformers")
    ref = attention(q, k, v, seq_lens=seq_lens, backend="sdpa")
    torch.testing.assert_close(out, ref, atol=2e-3, rtol=2e-3)
    assert (out[1, :, 27:] == 0).all()


# ---------------------------------------------------------------- CUDA's variable-length flash path


def reference_varlen_kernel(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k):
    """torch's ``varlen_attn`` contract (``[T, heads, hd]``, int32 ``cu_seqlens`` on the tensors'
    device, the longest block), computed one block at a time with SDPA, for CPU tests of the plumbing."""
    assert query.ndim == 3 and cu_seq_q.dtype == torch.int32 and cu_seq_q.device == query.device
    assert cu_seq_k is cu_seq_q and max_k == max_q
    starts = cu_seq_q.tolist()
    assert starts[0] == 0 and starts[-1] == query.shape[0]
    assert max_q == max(b - a for a, b in zip(starts, starts[1:], strict=False))
    blocks = [
        F.scaled_dot_product_attention(*(t[a:b].transpose(0, 1) for t in (query, key, value))).transpose(0, 1)
        for a, b in zip(starts, starts[1:], strict=False)
    ]
    return torch.cat(blocks)


def test_varlen_path_equals_each_sequence_alone_forward_and_backward() -> None:
    from glmkit.nn.attention import _varlen_packed

    lengths = [[4, 3, 2], [5, 0, 2], [0, 0, 0]]  # an empty slot, padding, a row of padding only
    seq_lens = SeqLens.from_lists(lengths)
    x = torch.randn(3, 10, 3, 2, 8, dtype=torch.float64, requires_grad=True)  # B, N, (q k v), heads, hd
    q, k, v = (t.transpose(1, 2) for t in x.unbind(2))  # views of token-major memory, as from qkv
    out = _varlen_packed(q, k, v, seq_lens, kernel=reference_varlen_kernel)
    torch.testing.assert_close(out, packed_reference(q, k, v, lengths), atol=1e-12, rtol=1e-12)
    assert (out[1, :, 7:] == 0).all() and (out[2] == 0).all()  # padding queries see no key
    weights = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    (want,) = torch.autograd.grad((attention(q, k, v, seq_lens=seq_lens) * weights).sum(), x)
    torch.testing.assert_close(grad, want, atol=1e-12, rtol=1e-12)


def test_varlen_kernel_serves_only_half_precision_on_recent_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    from glmkit.nn.attention import varlen_usable

    cuda = torch.device("cuda")
    assert not varlen_usable(torch.device("cpu"), torch.bfloat16, 64)
    assert not varlen_usable(cuda, torch.float32, 64)  # flash kernels take fp16 / bf16 only
    assert not varlen_usable(cuda, torch.bfloat16, 12)  # head width not a multiple of 8
    assert not varlen_usable(cuda, torch.bfloat16, 512)
    assert not varlen_usable(cuda, torch.bfloat16, 64, dropout_p=0.1)  # the kernel has no dropout
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert varlen_usable(cuda, torch.bfloat16, 64) and varlen_usable(cuda, torch.float16, 128)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # T4: no flash
    assert not varlen_usable(cuda, torch.bfloat16, 64)


def test_backends_declare_where_packed_rows_cost_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from glmkit.nn.attention import packed_rows_cost_nothing, rows_cost_nothing_when

    @rows_cost_nothing_when(lambda device, dtype, head_dim: dtype == torch.bfloat16 and head_dim <= 64)
    def declared(q, k, v, attn_mask=None, dropout_p=0.0, seq_lens=None):
        return F.scaled_dot_product_attention(q, k, v)

    def undeclared(q, k, v, attn_mask=None, dropout_p=0.0, seq_lens=None):
        return F.scaled_dot_product_attention(q, k, v)

    monkeypatch.setitem(ATTENTION_BACKENDS._entries, "test_declared", declared)
    monkeypatch.setitem(ATTENTION_BACKENDS._entries, "test_undeclared", undeclared)
    cpu = torch.device("cpu")
    assert packed_rows_cost_nothing("test_declared", cpu, torch.bfloat16, 64)
    assert not packed_rows_cost_nothing("test_declared", cpu, torch.bfloat16, 128)
    assert not packed_rows_cost_nothing("test_declared", cpu, torch.float32, 64)
    assert not packed_rows_cost_nothing("test_undeclared", cpu, torch.bfloat16, 64)  # taken as N^2 per row
    assert packed_rows_cost_nothing("sdpa", cpu, torch.float32, 64)  # one SDPA call per sequence
    assert not packed_rows_cost_nothing("sdpa", torch.device("cuda"), torch.float32, 64)  # masked rows
    assert packed_rows_cost_nothing("xformers", torch.device("cuda"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_sdpa_packed_on_cuda_runs_the_varlen_kernel_and_equals_each_sequence_alone(
    dtype: torch.dtype,
) -> None:
    from glmkit.nn.attention import varlen_usable

    if not varlen_usable(torch.device("cuda"), dtype, 64):
        pytest.skip("torch's varlen flash kernel needs compute capability 8.0")
    lengths = [[17, 20, 0], [9, 9, 9]]
    seq_lens = SeqLens(torch.tensor(lengths, device="cuda"))
    q, k, v = (t.cuda().to(dtype).requires_grad_() for t in qkv(batch=2, n=40, dim=64))
    out = attention(q, k, v, seq_lens=seq_lens)
    ref = packed_reference(*(t.detach().double() for t in (q, k, v)), lengths)
    torch.testing.assert_close(out.double(), ref, atol=2e-2, rtol=2e-2)
    assert (out[0, :, 37:] == 0).all() and (out[1, :, 27:] == 0).all()
    out.float().square().sum().backward()
    masked = [t.detach().float().requires_grad_() for t in (q, k, v)]
    mask = seq_lens.block_mask(40)
    F.scaled_dot_product_attention(*masked, attn_mask=mask).masked_fill(
        ~seq_lens.valid(40)[:, None, :, None], 0.0
    ).square().sum().backward()
    for got, want in zip((q, k, v), masked, strict=True):
        torch.testing.assert_close(got.grad.float(), want.grad, atol=5e-2, rtol=5e-2)


# -- flex: torch's FlexAttention under a block mask (forward only on the CPU) ------------------------------


def test_flex_packed_equals_each_sequence_alone_on_the_cpu() -> None:
    q, k, v = qkv(batch=2, n=140, dim=16)
    lengths = [[60, 0, 50], [100, 25]]  # an empty slot; padding after each row's last sequence
    seq_lens = SeqLens.from_lists(lengths)
    with torch.no_grad():
        out = attention(q, k, v, seq_lens=seq_lens, backend="flex")
    torch.testing.assert_close(out.double(), packed_reference(q, k, v, lengths), atol=1e-5, rtol=1e-5)
    assert (out[0, :, 110:] == 0).all() and (out[1, :, 125:] == 0).all()  # padding queries: zeros


def test_flex_block_masks_are_built_once_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    import glmkit.nn.flex_masks as flex_masks

    built: list[str] = []
    for name in ("packed_block_mask", "dense_block_mask"):
        real = getattr(flex_masks, name)
        monkeypatch.setattr(
            flex_masks, name, lambda *a, _f=real, _n=name, **kw: built.append(_n) or _f(*a, **kw)
        )
    q, k, v = qkv(batch=2, n=140, dim=16)
    seq_lens, valid = SeqLens.from_lists([[60, 50], [100, 25]]), torch.rand(2, 140) > 0.2
    with torch.no_grad():
        for _ in range(3):  # three layers of one forward
            attention(q, k, v, seq_lens=seq_lens, backend="flex")
            attention(q, k, v, attn_mask=valid, backend="flex")
        assert built == ["packed_block_mask", "dense_block_mask"]
        valid[0, :64] = False  # the same mask object, written in place: built again
        out = attention(q, k, v, attn_mask=valid, backend="flex")
        attention(q, k, v, seq_lens=SeqLens.from_lists([[60, 50], [100, 25]]), backend="flex")  # next batch
        attention(q, k, v, attn_mask=valid.clone(), backend="flex")
    assert built == ["packed_block_mask", "dense_block_mask", "dense_block_mask"] + [
        "packed_block_mask",
        "dense_block_mask",
    ]
    torch.testing.assert_close(out, attention(q, k, v, attn_mask=valid), atol=1e-5, rtol=1e-5)


def _tiles(block_mask) -> tuple[torch.Tensor, torch.Tensor]:
    """(tiles computed, tiles computed without the mask) of a BlockMask, as dense [B, H, q, kv] flags."""
    from torch.nn.attention.flex_attention import BlockMask

    full = BlockMask.from_kv_blocks(block_mask.full_kv_num_blocks, block_mask.full_kv_indices)
    return block_mask.to_dense().bool(), full.to_dense().bool()


def test_tile_built_block_masks_equal_torchs_create_block_mask() -> None:
    from torch.nn.attention.flex_attention import create_block_mask

    from glmkit.nn.flex_masks import dense_block_mask, packed_block_mask

    g = torch.Generator().manual_seed(0)
    for _ in range(12):  # random packings: empty slots, sequences across tiles, padding tails
        rows, n = [], 128 * int(torch.randint(1, 5, (), generator=g))
        for _ in range(int(torch.randint(1, 4, (), generator=g))):
            left, row = n, []
            while left > 0 and torch.rand((), generator=g) < 0.85:
                row.append(int(torch.randint(0, min(left, 300) + 1, (), generator=g)))
                left -= row[-1]
            rows.append(row or [0])
        seg = SeqLens.from_lists(rows).segment_ids(n)
        ref = create_block_mask(
            lambda b, h, q, k, seg=seg: (seg[b, q] == seg[b, k]) & (seg[b, q] >= 0),
            len(rows),
            None,
            n,
            n,
            device="cpu",
        )
        for got, want in zip(_tiles(packed_block_mask(seg)), _tiles(ref), strict=True):
            assert torch.equal(got, want), rows
    for shape in [(2, 3, 256, 384), (2, 1, 1, 256), (1, 1, 256, 256)]:
        mask = torch.rand(*shape, generator=g) > 0.3
        mask[..., :128] = True  # full tiles
        mask[..., -128:, -128:] = False  # an empty tile (one query row: an empty key tile)
        ref = create_block_mask(
            _reads(mask), shape[0], shape[1] if shape[1] > 1 else None, 256, shape[3], device="cpu"
        )
        for got, want in zip(_tiles(dense_block_mask(mask, 256)), _tiles(ref), strict=True):
            assert torch.equal(got, want), shape


def _reads(mask: torch.Tensor):
    """A mask_mod reading a broadcastable boolean mask [B|1, H|1, Nq|1, Nk]."""
    batch, heads, n_q, _ = mask.shape

    def mask_mod(b, h, q, k):
        return mask[b if batch > 1 else 0, h if heads > 1 else 0, q if n_q > 1 else 0, k]

    return mask_mod


def test_compiled_flex_runs_the_tile_built_mask_and_does_not_recompile_for_a_new_packing() -> None:
    """What CUDA runs, traced here on the CPU (forward): the compiled kernel under the block mask
    built from segment ids; a second batch of the same shape reuses the compiled graph."""
    import importlib

    attention_module = importlib.import_module("glmkit.nn.attention")
    from glmkit.nn.flex_masks import packed_block_mask

    compiled = attention_module._compiled_flex_attention()
    q, k, v = qkv(batch=2, n=256, dim=16)
    for lengths in ([[60, 0, 50], [100, 25]], [[128, 100], [3, 200, 40]]):
        seq_lens = SeqLens.from_lists(lengths)
        with torch.no_grad(), torch._dynamo.config.patch(error_on_recompile=lengths[0][0] == 128):
            out = compiled(q, k, v, block_mask=packed_block_mask(seq_lens.segment_ids(256)))
        torch.testing.assert_close(out.double(), packed_reference(q, k, v, lengths), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mask_shape", ["key_padding", "per_head", "broadcast"])
def test_flex_masks_equal_sdpa_and_fully_masked_rows_are_zero(mask_shape: str) -> None:
    q, k, v = qkv(batch=2, n=24, dim=16)
    g = torch.Generator().manual_seed(1)
    if mask_shape == "key_padding":
        mask = torch.rand(2, 24, generator=g) > 0.3
        mask[1] = False  # row 1 sees no key at all
    elif mask_shape == "per_head":
        mask = torch.rand(2, 3, 24, 24, generator=g) > 0.5
        mask[0, 1, 5] = False  # one query of one head sees no key
    else:
        mask = torch.rand(1, 1, 24, 24, generator=g) > 0.5
    with torch.no_grad():
        out = attention(q, k, v, attn_mask=mask, backend="flex")
    torch.testing.assert_close(out, attention(q, k, v, attn_mask=mask), atol=1e-5, rtol=1e-5)
    if mask_shape == "key_padding":
        assert (out[1] == 0).all()
    if mask_shape == "per_head":
        assert (out[0, 1, 5] == 0).all()


def test_flex_masks_under_inference_mode() -> None:
    """Validation and prediction run under ``torch.inference_mode()``, whose tensors keep no version."""
    q, k, v = qkv(batch=2, n=24, dim=16)
    with torch.inference_mode():
        mask = torch.rand(2, 24, generator=torch.Generator().manual_seed(2)) > 0.3
        first = attention(q, k, v, attn_mask=mask, backend="flex")
        again = attention(q, k, v, attn_mask=mask, backend="flex")
    torch.testing.assert_close(first, attention(q, k, v, attn_mask=mask), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(again, first, atol=0, rtol=0)


def test_compiled_flex_with_a_key_padding_mask_across_lengths() -> None:
    """The compiled kernel (CUDA's path, traced here on the CPU) under a tile-built dense mask, with
    queries and keys of different lengths (cross-attention), equals SDPA; eager FlexAttention
    ignores the tiles, so only the compiled kernel checks them."""
    import importlib

    attention_module = importlib.import_module("glmkit.nn.attention")
    from glmkit.nn.flex_masks import dense_block_mask

    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, 3, 100, 16, generator=g)
    k, v = (torch.randn(2, 3, 200, 16, generator=g) for _ in range(2))
    valid = torch.rand(2, 200, generator=g) > 0.3
    valid[1, 128:] = False  # a whole key tile masked
    padded = torch.nn.functional.pad(valid, (0, 56))[:, None, None, :]
    block_mask = dense_block_mask(padded, 128)
    q_p = torch.nn.functional.pad(q, (0, 0, 0, 28))
    k_p, v_p = (torch.nn.functional.pad(t, (0, 0, 0, 56)) for t in (k, v))
    with torch.no_grad():
        out = attention_module._run_compiled_flex(q_p, k_p, v_p, block_mask)[:, :, :100]
    torch.testing.assert_close(out, attention(q, k, v, attn_mask=valid), atol=1e-5, rtol=1e-5)


def test_flex_refuses_what_it_cannot_do_by_name() -> None:
    q, k, v = (t.requires_grad_() for t in qkv(n=8))
    with pytest.raises(RuntimeError, match="'flex' cannot train on the CPU.*attn_backend='sdpa'"):
        attention(q, k, v, backend="flex")
    with torch.no_grad(), pytest.raises(ValueError, match="'flex' has no attention dropout"):
        attention(q, k, v, backend="flex", dropout_p=0.1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_flex_packed_on_cuda_equals_each_sequence_alone_forward_and_backward() -> None:
    """As CogViT calls it: q, k, v are views of one qkv projection under bf16 autocast; a second
    packing of the same shape runs the compiled kernel again without recompiling."""
    for lengths in ([[70, 90, 0], [128, 30, 50]], [[200, 0, 0], [3, 97, 150]]):
        seq_lens = SeqLens(torch.tensor(lengths, device="cuda"))
        x = torch.randn(2, 250, 96, device="cuda")
        proj = torch.nn.Linear(96, 3 * 2 * 64, device="cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            qkv_ = proj(x).view(2, 250, 3, 2, 64).permute(2, 0, 3, 1, 4)  # 3, B, heads, N, hd (views)
            q, k, v = qkv_.unbind(0)
            with torch._dynamo.config.patch(error_on_recompile=lengths[0][0] == 200):
                out = attention(q, k, v, seq_lens=seq_lens, backend="flex")
        ref = packed_reference(*(t.detach().double() for t in (q, k, v)), lengths)
        torch.testing.assert_close(out.double(), ref, atol=2e-2, rtol=2e-2)
        assert (out[0, :, sum(lengths[0]) :] == 0).all() and (out[1, :, sum(lengths[1]) :] == 0).all()
        out.float().square().sum().backward()
        flex_grad = proj.weight.grad.clone()
        proj.weight.grad = None
        with torch.autocast("cuda", dtype=torch.bfloat16):
            q, k, v = proj(x).view(2, 250, 3, 2, 64).permute(2, 0, 3, 1, 4).unbind(0)
            masked = F.scaled_dot_product_attention(q, k, v, attn_mask=seq_lens.block_mask(250))
        masked.masked_fill(~seq_lens.valid(250)[:, None, :, None], 0.0).float().square().sum().backward()
        torch.testing.assert_close(flex_grad, proj.weight.grad, atol=5e-2, rtol=5e-2)
