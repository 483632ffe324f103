"""Attention backends behind one call, chosen by name.

Every backend computes softmax(q kᵀ / sqrt(head_dim) + mask) v for tensors laid out
``[B, heads, N, head_dim]``. Backends register in ``registry("attention")`` so a recipe picks one
by name (``attn_backend: sdpa``) and ``glmkit list attention`` shows them.

Which keys a query sees is given in one of two ways, never both:

* ``attn_mask``, boolean with True meaning "may attend", in one of three shapes:

  - ``[B, Nk]``: a key-padding mask (NaFlex padding, GLM-5V-Turbo section 2.1 stage 2);
  - ``[B, 1 | heads, Nq, Nk]``: a general mask;
  - ``None``: full bidirectional attention;

* ``seq_lens``, a :class:`~glmkit.nn.packed.SeqLens`: variable-length (packed) attention. Each row
  holds several sequences back to back (NaViT-style packing, arXiv 2307.06304); a token attends
  to the tokens of its own sequence only, and positions after a row's last sequence (padding)
  return zeros. How each backend runs it is its own choice (below); ``xformers`` hands the lengths
  to its ``BlockDiagonalMask``, so no ``N x N`` mask is materialised.

A query row whose keys are all masked returns zeros on every backend (never NaN).

Packed attention on ``sdpa``, the fastest exact path these torch versions offer per device:

* CPU: one SDPA call per sequence on views of the token axis. A masked row of ``N`` tokens costs
  ``N^2`` on the CPU kernels whatever the mask; the sequences alone cost ``sum(n_i^2)``
  (``benchmarks/naflex_packing.py``).
* CUDA in fp16 / bf16: torch's variable-length flash kernel (``torch.nn.attention.varlen``,
  FlashAttention-2's ``cu_seqlens`` interface): all rows on one token axis, no mask, no block
  between sequences computed.
* CUDA otherwise (fp32, or a GPU older than sm80): one SDPA call per row with the dense
  block-diagonal mask (the memory-efficient kernel).

The ``flex`` backend runs torch's FlexAttention with a block mask (built from the same lengths,
once per batch): 128 x 128 blocks where no query sees a key are skipped, so packed rows cost about
``sum(n_i^2)`` plus the blocks that straddle two sequences. It is compiled on CUDA (eager
FlexAttention is a reference implementation) once per row shape, so models keep fixed-length rows
for it; on the CPU torch 2.14 runs it forward only (no backward), for inference and checks. Which
of varlen, masked rows, xformers and FlexAttention is fastest on a GPU is measured by
``benchmarks/naflex_packing.py --device cuda`` (``benchmarks/gpu_session.sh``).

Whether a backend's packed attention costs ``sum(n_i^2)`` however the sequences are spread over
rows is declared by the backend (:func:`rows_cost_nothing_when`) and read by models through
:func:`packed_rows_cost_nothing`: CogViT then lays every image on one row without padding.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import math
import warnings
import weakref
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

from glmkit.nn.packed import SeqLens
from glmkit.registry import declare


@runtime_checkable
class AttentionFn(Protocol):
    """Signature every registered backend implements.

    ``q, k, v``: ``[B, heads, N, head_dim]``; returns ``[B, heads, Nq, head_dim]``. ``attn_mask`` and
    ``seq_lens`` are described in the module docstring. A backend that cannot serve packed input
    may omit ``seq_lens``; callers pass it only when it is not None.
    """

    def __call__(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        attn_mask: Tensor | None = None,
        dropout_p: float = 0.0,
        seq_lens: SeqLens | None = None,
    ) -> Tensor: ...


ATTENTION_BACKENDS = declare("attention", "attention backends (attn_backend=...)", base=AttentionFn)

DEFAULT_BACKEND = "sdpa"

# (device, dtype attention runs in, head_dim) -> whether packed rows cost nothing there
RowsCostNothing = Callable[[torch.device, torch.dtype, int], bool]
_Backend = TypeVar("_Backend", bound=Callable[..., Tensor])


def rows_cost_nothing_when(rule: RowsCostNothing) -> Callable[[_Backend], _Backend]:
    """Declare where a backend's packed attention costs ``sum(n_i^2)`` however the sequences are
    spread over rows (a variable-length kernel, or one call per sequence).

    ``rule(device, dtype, head_dim)`` answers for attention in ``dtype`` on ``device``. A backend
    that declares nothing is taken to pay ``N^2`` per row of ``N`` tokens (a dense mask), so models
    keep short rows for it.
    """

    def mark(fn: _Backend) -> _Backend:
        fn.packed_rows_cost_nothing = rule  # type: ignore[attr-defined]
        return fn

    return mark


def packed_rows_cost_nothing(
    backend: str, device: torch.device, dtype: torch.dtype = torch.float32, head_dim: int = 64
) -> bool:
    """Whether packed attention on ``backend`` costs ``sum(n_i^2)`` however the sequences are
    spread over rows, for attention in ``dtype`` with ``head_dim`` channels per head on ``device``
    (what the backend declared with :func:`rows_cost_nothing_when`; False when it declared nothing).
    """
    rule = getattr(get_attention_backend(backend), "packed_rows_cost_nothing", None)
    return bool(rule(torch.device(device), dtype, head_dim)) if rule is not None else False


@functools.cache
def _torch_varlen_attn() -> Callable[..., Tensor] | None:
    """torch's variable-length flash attention (``torch.nn.attention.varlen``), where torch has it."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:  # older torch
        return None
    return varlen_attn


def varlen_usable(device: torch.device, dtype: torch.dtype, head_dim: int, dropout_p: float = 0.0) -> bool:
    """Whether torch's variable-length flash kernel serves packed attention here: CUDA, fp16 or
    bf16, a head width the flash kernels take (a multiple of 8, at most 256), no attention dropout
    (the kernel has none) and a GPU of compute capability 8.0 or newer."""
    if device.type != "cuda" or dtype not in (torch.float16, torch.bfloat16) or dropout_p > 0:
        return False
    if head_dim % 8 or head_dim > 256 or _torch_varlen_attn() is None:
        return False
    return torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)


def expand_attention_mask(attn_mask: Tensor | None, q: Tensor, k: Tensor) -> Tensor | None:
    """Validate a boolean mask and broadcast it to ``[B, 1 | heads, Nq | 1, Nk]``.

    A key-padding mask ``[B, Nk]`` becomes ``[B, 1, 1, Nk]`` (a view, no copy).
    """
    if attn_mask is None:
        return None
    if attn_mask.dtype != torch.bool:
        raise TypeError(
            f"attn_mask must be a bool tensor (True = may attend), got dtype {attn_mask.dtype}; "
            "convert an additive float mask with `mask == 0`"
        )
    batch, heads, n_k, _ = k.shape
    n_q = q.shape[2]
    if attn_mask.ndim == 2:
        if tuple(attn_mask.shape) != (batch, n_k):
            raise ValueError(
                f"key-padding attn_mask must have shape [B, Nk] = [{batch}, {n_k}], "
                f"got {list(attn_mask.shape)}"
            )
        return attn_mask[:, None, None, :]
    if attn_mask.ndim == 4:
        b, h, nq, nk = attn_mask.shape
        if b not in (1, batch) or h not in (1, heads) or nq not in (1, n_q) or nk != n_k:
            raise ValueError(
                f"attn_mask of shape {list(attn_mask.shape)} does not broadcast to "
                f"[B, heads, Nq, Nk] = [{batch}, {heads}, {n_q}, {n_k}]"
            )
        return attn_mask
    raise ValueError(
        f"attn_mask must be [B, Nk] (key padding) or [B, 1|heads, Nq, Nk], got {attn_mask.ndim} dims "
        f"with shape {list(attn_mask.shape)}"
    )


def _check_packed(seq_lens: SeqLens, q: Tensor, k: Tensor) -> None:
    batch, _, n_q, _ = q.shape
    if k.shape[2] != n_q or seq_lens.batch_size != batch:
        raise ValueError(
            f"packed (seq_lens) attention is self-attention over [B, heads, N, head_dim] rows: got "
            f"q {list(q.shape)}, k {list(k.shape)} and seq_lens for {seq_lens.batch_size} rows"
        )
    seq_lens.check(n_q)


def packed_attention_mask(seq_lens: SeqLens, q: Tensor, k: Tensor) -> Tensor:
    """The ``[B, 1, N, N]`` block-diagonal boolean mask of packed self-attention (cached per ``seq_lens``)."""
    _check_packed(seq_lens, q, k)
    mask = seq_lens.block_mask(q.shape[2])
    return mask if mask.device == q.device else mask.to(q.device)


def _check_one_mask(attn_mask: Tensor | None, seq_lens: SeqLens | None) -> None:
    if attn_mask is not None and seq_lens is not None:
        raise ValueError(
            "pass attn_mask or seq_lens, not both: packed rows (seq_lens) already say which keys each "
            "query sees; mark padding as the tail after a row's last sequence"
        )


@ATTENTION_BACKENDS.register("sdpa")
@rows_cost_nothing_when(
    lambda device, dtype, head_dim: device.type == "cpu" or varlen_usable(device, dtype, head_dim)
)
def sdpa_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    seq_lens: SeqLens | None = None,
) -> Tensor:
    """``torch.nn.functional.scaled_dot_product_attention`` (CPU and GPU; picks flash / mem-efficient / math).

    Without a mask PyTorch can use its flash kernels; a boolean mask rules flash out on CUDA and the
    memory-efficient kernel runs instead. Packed rows run as the module docstring says: one SDPA
    call per sequence on the CPU, torch's variable-length flash kernel on CUDA in half precision,
    else the block-diagonal mask.
    """
    _check_one_mask(attn_mask, seq_lens)
    if seq_lens is not None and q.device.type == "cpu":
        _check_packed(seq_lens, q, k)
        return _sdpa_per_sequence(q, k, v, seq_lens, dropout_p)
    if seq_lens is not None and varlen_usable(q.device, q.dtype, q.shape[-1], dropout_p):
        _check_packed(seq_lens, q, k)
        return _varlen_packed(q, k, v, seq_lens)
    if seq_lens is not None:
        mask = packed_attention_mask(seq_lens, q, k)
        # A padding query has no key; SDPA's math kernel returns zeros there, but not every fused
        # kernel is guaranteed to, so zero them explicitly (the contract of packed attention).
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        valid = seq_lens.valid(q.shape[2]).to(q.device)
        return out.masked_fill(~valid[:, None, :, None], 0.0)
    mask = expand_attention_mask(attn_mask, q, k)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


def _sdpa_per_sequence(q: Tensor, k: Tensor, v: Tensor, seq_lens: SeqLens, dropout_p: float) -> Tensor:
    """Packed rows as one SDPA call per sequence (its slice of the row), padding left as zeros.

    The CPU path: a masked SDPA over a whole row of ``N`` tokens costs ``N^2`` whatever the mask
    (the CPU flash kernel skips no block), where the sequences alone cost ``sum(n_i^2)``; measured
    in ``benchmarks/naflex_packing.py``. Exactly the per-sequence attention, so the contract holds.
    """
    batch, heads, n, head_dim = q.shape
    sizes, is_seq = seq_lens.flat_runs(n)
    if not sizes:  # no tokens at all
        return q.new_zeros(q.shape)

    # All rows on one flattened token-major axis [1, B*N, heads, hd]: the layout the fused qkv
    # projection writes (q, k and v are views of it, no copy) and the one the CPU flash kernel
    # returns outputs and gradients in. Each sequence and each padding run is one split of the
    # token axis itself, so that the output and (through autograd) the gradients are joined
    # token-major with one cat per tensor. Pieces of each row's [heads, N, hd] view instead cost a
    # cat per row, a stack, and a copy wherever the heads-major result met a token-major layer
    # (about 3% of a packed CogViT training step).
    def flat(t: Tensor) -> Tensor:  # B, heads, N, hd -> 1, B*N, heads, hd
        return t.transpose(1, 2).reshape(1, batch * n, heads, head_dim)

    pieces = [flat(t).split(sizes, dim=1) for t in (q, k, v)]  # 1, n_i, heads, hd each
    outs = [
        F.scaled_dot_product_attention(
            a.transpose(1, 2), b.transpose(1, 2), c.transpose(1, 2), dropout_p=dropout_p
        )  # 1, heads, n_i, hd
        if seq
        else None
        for a, b, c, seq in zip(*pieces, is_seq, strict=True)
    ]
    dtype = next((o.dtype for o in outs if o is not None), q.dtype)  # autocast may lower it
    # padding queries see no key: zeros, the contract of packed attention
    outs = [
        o.transpose(1, 2) if o is not None else q.new_zeros(1, size, heads, head_dim, dtype=dtype)
        for o, size in zip(outs, sizes, strict=True)
    ]  # 1, n_i, heads, hd
    out = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0].contiguous()  # 1, B*N, heads, hd
    return out.view(batch, n, heads, head_dim).transpose(1, 2)  # B, heads, N, hd


def _varlen_packed(
    q: Tensor, k: Tensor, v: Tensor, seq_lens: SeqLens, kernel: Callable[..., Tensor] | None = None
) -> Tensor:
    """Packed rows through a variable-length kernel (torch's flash ``varlen_attn`` by default).

    All rows lie on one token axis ``[B*N, heads, hd]`` (views of the fused qkv projection's
    token-major memory, no copy); each sequence and each row's padding run is one block of
    ``cu_seqlens``, so padding never meets a real token, and padding queries are zeroed after.
    """
    kernel = kernel or _torch_varlen_attn()
    batch, heads, n, head_dim = q.shape

    def flat(t: Tensor) -> Tensor:  # B, heads, N, hd -> B*N, heads, hd
        return t.transpose(1, 2).reshape(batch * n, heads, head_dim)

    starts = seq_lens.cu_seqlens(n)
    starts = starts if starts.device == q.device else starts.to(q.device)
    longest = max(seq_lens.flat_lengths(n), default=0)
    out = kernel(flat(q), flat(k), flat(v), starts, starts, longest, longest)  # B*N, heads, hd
    out = out.view(batch, n, heads, head_dim).transpose(1, 2)  # B, heads, N, hd
    valid = seq_lens.valid(n).to(q.device)
    return out.masked_fill(~valid[:, None, :, None], 0.0)


def is_xformers_available() -> bool:
    """True when the optional ``xformers`` package can be imported."""
    return importlib.util.find_spec("xformers") is not None


@ATTENTION_BACKENDS.register("xformers")
@rows_cost_nothing_when(lambda device, dtype, head_dim: device.type == "cuda")
def xformers_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    seq_lens: SeqLens | None = None,
) -> Tensor:
    """``xformers.ops.memory_efficient_attention`` (CUDA only; optional dependency ``glmkit[xformers]``).

    Packed rows (``seq_lens``) run as one flattened row with xformers' ``BlockDiagonalMask``,
    which skips the blocks between sequences instead of masking them.
    """
    _check_one_mask(attn_mask, seq_lens)
    if not is_xformers_available():
        raise RuntimeError(
            "attention backend 'xformers' needs the xformers package, which is not installed "
            "(pip install 'glmkit[xformers]'); use attn_backend='sdpa' instead"
        )
    if not q.is_cuda:
        raise RuntimeError(
            f"attention backend 'xformers' runs on CUDA tensors only, got tensors on {q.device}; "
            "use attn_backend='sdpa' on this device"
        )
    import xformers.ops as xops  # optional dependency, imported where used

    if seq_lens is not None:
        return _xformers_packed(xops, q, k, v, seq_lens, dropout_p)
    mask = expand_attention_mask(attn_mask, q, k)
    bias = None
    if mask is not None:
        bias = _additive_bias(mask, q, k)
    # xformers wants [B, N, heads, head_dim]; transposes are views.
    out = xops.memory_efficient_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_bias=bias, p=dropout_p
    )
    out = out.transpose(1, 2)
    if mask is not None:
        # A fully masked row would softmax over uniform finfo.min logits; SDPA returns zeros there.
        out = out.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)
    return out


def _xformers_packed(
    xops: Any, q: Tensor, k: Tensor, v: Tensor, seq_lens: SeqLens, dropout_p: float
) -> Tensor:
    """Packed attention on xformers: all rows flattened into one, padding runs as blocks of their own."""
    from xformers.ops.fmha.attn_bias import BlockDiagonalMask

    _check_packed(seq_lens, q, k)
    batch, heads, n, head_dim = q.shape
    # Newer xformers place the sequence starts on a device given here; older ones move them on use.
    takes_device = "device" in inspect.signature(BlockDiagonalMask.from_seqlens).parameters
    bias = BlockDiagonalMask.from_seqlens(
        seq_lens.flat_lengths(n), **({"device": q.device} if takes_device else {})
    )

    def flat(t: Tensor) -> Tensor:  # B, heads, N, hd -> 1, B*N, heads, hd
        return t.transpose(1, 2).reshape(1, batch * n, heads, head_dim)

    out = xops.memory_efficient_attention(flat(q), flat(k), flat(v), attn_bias=bias, p=dropout_p)
    out = out.reshape(batch, n, heads, head_dim).transpose(1, 2)  # B, heads, N, hd
    valid = seq_lens.valid(n).to(q.device)
    return out.masked_fill(~valid[:, None, :, None], 0.0)  # padding blocks attended among themselves


#: compiled shapes allowed for FlexAttention before torch would fall back to its uncompiled
#: reference (which builds the whole score matrix): 8 by default, and every (rows, tiles, heads,
#: width, dtype, grad mode) of a run counts
FLEX_RECOMPILE_LIMIT = 64


@functools.cache
def _compiled_flex_attention() -> Callable[..., Tensor]:
    """FlexAttention compiled once per process (each new shape compiles again; masks are inputs)."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def _run_compiled_flex(q: Tensor, k: Tensor, v: Tensor, block_mask: Any) -> Tensor:
    """The compiled kernel, with room for :data:`FLEX_RECOMPILE_LIMIT` shapes."""
    import torch._dynamo

    limit = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
    with torch._dynamo.config.patch({limit: max(getattr(torch._dynamo.config, limit), FLEX_RECOMPILE_LIMIT)}):
        return _compiled_flex_attention()(q, k, v, block_mask=block_mask)


# the last boolean mask's block mask: a model passes one mask object to every layer of a forward;
# dropped with the mask
_last_dense_block_mask: list[Any] = [None]


def _forget_dense_block_mask(ref: weakref.ref) -> None:
    cached = _last_dense_block_mask[0]
    if cached is not None and cached[0] is ref:
        _last_dense_block_mask[0] = None


def _flex_block_mask(
    attn_mask: Tensor | None, seq_lens: SeqLens | None, q: Tensor, k: Tensor, n_q: int, n_k: int
) -> Any:  # BlockMask | None
    """FlexAttention's block mask at the padded lengths ``n_q, n_k`` (multiples of the tile): for
    packed rows cached on ``seq_lens``, for a boolean mask kept while the same mask object comes
    back unchanged (every layer of a forward; an in-place write through the tensor rebuilds it, one
    through ``.data`` or numpy is not seen: pass a new mask per batch), None for full attention."""
    from glmkit.nn import flex_masks

    if seq_lens is not None:
        _check_packed(seq_lens, q, k)
        return seq_lens.cached(
            f"flex_block_mask:{q.device}",
            n_q,
            lambda: flex_masks.packed_block_mask(seq_lens.segment_ids(n_q).to(q.device)),
        )
    if attn_mask is None:
        return None
    # the same mask object, unchanged since (its version counts in-place writes; inference tensors
    # have none), for the same shapes
    version = None if attn_mask.is_inference() else attn_mask._version
    key = (version, tuple(q.shape), tuple(k.shape), q.device, n_q, n_k)
    cached = _last_dense_block_mask[0]
    if cached is not None and cached[0]() is attn_mask and cached[1] == key:
        return cached[2]
    mask = expand_attention_mask(attn_mask, q, k).to(q.device)
    mask = F.pad(mask, (0, n_k - mask.shape[3], 0, 0 if mask.shape[2] == 1 else n_q - mask.shape[2]))
    block_mask = flex_masks.dense_block_mask(mask, n_q)
    _last_dense_block_mask[0] = (weakref.ref(attn_mask, _forget_dense_block_mask), key, block_mask)
    return block_mask


@ATTENTION_BACKENDS.register("flex")
def flex_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    seq_lens: SeqLens | None = None,
) -> Tensor:
    """torch's FlexAttention under a block mask (module docstring; :mod:`glmkit.nn.flex_masks`):
    compiled on CUDA, forward only on the CPU. Masked inputs are padded to whole tiles (padding is
    masked, and rows a few tokens apart share one compiled shape). Queries that see no key
    (padding) return zeros, as on every backend."""
    from glmkit.nn.flex_masks import padded_length

    _check_one_mask(attn_mask, seq_lens)
    if dropout_p > 0:
        raise ValueError(
            f"attention backend 'flex' has no attention dropout (got dropout_p={dropout_p}); "
            "use attn_backend='sdpa' for attention dropout"
        )
    if q.device.type == "cpu" and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        raise RuntimeError(
            f"attention backend 'flex' cannot train on the CPU: torch {torch.__version__} has no CPU "
            "backward for FlexAttention; use attn_backend='sdpa' there (or run under torch.no_grad())"
        )
    n_q, n_k = q.shape[2], k.shape[2]
    masked = attn_mask is not None or seq_lens is not None
    pad_q, pad_k = (padded_length(n_q), padded_length(n_k)) if masked else (n_q, n_k)
    block_mask = _flex_block_mask(attn_mask, seq_lens, q, k, pad_q, pad_k)
    if pad_q != n_q:
        q = F.pad(q, (0, 0, 0, pad_q - n_q))
    if pad_k != n_k:
        k, v = (F.pad(t, (0, 0, 0, pad_k - n_k)) for t in (k, v))
    if q.device.type == "cuda":
        out = _run_compiled_flex(q, k, v, block_mask)
    else:
        from torch.nn.attention.flex_attention import flex_attention as eager_flex_attention

        with warnings.catch_warnings():  # eager FlexAttention warns that it is slow: known, CPU only
            warnings.simplefilter("ignore", UserWarning)
            out = eager_flex_attention(q, k, v, block_mask=block_mask)
    return out[:, :, :n_q]


def _additive_bias(mask: Tensor, q: Tensor, k: Tensor) -> Tensor:
    """Dense ``[B, heads, Nq, Nk]`` additive bias for xformers from a boolean mask.

    xformers needs the bias materialised (no broadcast) and its last dimension's storage aligned to
    8 elements, so it is allocated padded and sliced. finfo.min (not -inf) keeps rows finite.
    """
    batch, heads, n_q, _ = q.shape
    n_k = k.shape[2]
    padded = math.ceil(n_k / 8) * 8
    bias = torch.zeros(batch, heads, n_q, padded, dtype=q.dtype, device=q.device)[..., :n_k]
    bias.masked_fill_(~mask.expand(batch, heads, n_q, n_k), torch.finfo(q.dtype).min)
    return bias


def get_attention_backend(name: str) -> AttentionFn:
    """The backend registered as ``name`` (unknown names list the registered ones)."""
    return ATTENTION_BACKENDS.get(name)


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    backend: str = DEFAULT_BACKEND,
    dropout_p: float = 0.0,
    seq_lens: SeqLens | None = None,
) -> Tensor:
    """Scaled dot-product attention with the named backend.

    Args:
        q, k, v: ``[B, heads, N, head_dim]``.
        attn_mask: None, a key-padding mask ``[B, Nk]`` or a general mask ``[B, 1|heads, Nq, Nk]``,
            boolean with True = may attend.
        backend: a name registered in ``registry("attention")``: ``sdpa`` (default), ``xformers``
            or ``flex``.
        dropout_p: attention-probability dropout (pass 0 at eval time).
        seq_lens: packed rows (variable-length attention); excludes ``attn_mask``.

    Returns:
        ``[B, heads, Nq, head_dim]``.
    """
    fn = get_attention_backend(backend)
    if seq_lens is None:  # backends without packed support keep working for dense input
        return fn(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
    return fn(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, seq_lens=seq_lens)


__all__ = [
    "ATTENTION_BACKENDS",
    "DEFAULT_BACKEND",
    "AttentionFn",
    "SeqLens",
    "attention",
    "expand_attention_mask",
    "flex_attention",
    "get_attention_backend",
    "is_xformers_available",
    "packed_attention_mask",
    "packed_rows_cost_nothing",
    "rows_cost_nothing_when",
    "sdpa_attention",
    "varlen_usable",
    "xformers_attention",
]
