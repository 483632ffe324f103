"""Multi-head self-attention with optional QK-Norm and 2D RoPE, behind a pluggable attention backend.

* QK-Norm (Dehghani et al. 2023, arXiv 2302.05442, section 3.1): q and k are normalised per head
  over head_dim before the dot product, which GLM-5V-Turbo (section 2.1) adds to CogViT "to mitigate
  logit explosion";
* rotary position embedding (:mod:`glmkit.nn.rope`), applied after QK-Norm (the EVA-02 order);
* the softmax(q kᵀ / sqrt(head_dim)) v itself runs on a backend registered in
  ``registry("attention")`` (:mod:`glmkit.nn.attention`), for dense, key-padded and packed input.

Parameter names follow timm's ``Attention`` (``qkv``, ``q_norm``, ``k_norm``, ``proj``), so weights
map one to one.
"""

from __future__ import annotations

from torch import Tensor, nn

from glmkit.nn.attention import DEFAULT_BACKEND, get_attention_backend
from glmkit.nn.norm import NormType, create_norm
from glmkit.nn.packed import SeqLens
from glmkit.nn.rope import apply_rotary


class SelfAttention(nn.Module):
    """Self-attention with one fused qkv projection, QK-Norm and RoPE.

    Args:
        dim: token width; split into ``num_heads`` heads of ``dim // num_heads`` channels.
        num_heads: attention heads.
        qkv_bias: bias on the fused qkv projection.
        qk_norm: normalise q and k per head (QK-Norm); False leaves them as projected.
        qk_norm_type: ``layernorm`` or ``rmsnorm`` for QK-Norm.
        norm_eps: epsilon of the QK-Norm layers.
        attn_backend: name in ``registry("attention")``, looked up at each call so it can be switched.
        proj_bias: bias on the output projection.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        qk_norm: bool = False,
        qk_norm_type: NormType = "layernorm",
        norm_eps: float = 1e-6,
        attn_backend: str = DEFAULT_BACKEND,
        proj_bias: bool = True,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = create_norm(qk_norm_type, self.head_dim, norm_eps) if qk_norm else nn.Identity()
        self.k_norm = create_norm(qk_norm_type, self.head_dim, norm_eps) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.attn_backend = attn_backend

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor] | None = None,
        attn_mask: Tensor | None = None,
        seq_lens: SeqLens | None = None,
    ) -> Tensor:
        """Attend over the tokens of ``x``.

        Args:
            x: ``[B, N, dim]``.
            rope: ``(cos, sin)`` broadcasting against token-major ``[B, N, heads, head_dim]``
                (:class:`~glmkit.nn.rope.RotaryEmbedding2D`), or None for no rotation.
            attn_mask: boolean, True = may attend (``[B, N]`` key padding or ``[B, 1|heads, N, N]``).
            seq_lens: packed rows: each token attends within its own sequence (excludes ``attn_mask``).

        Returns:
            ``[B, N, dim]``.
        """
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).unbind(2)  # B, N, heads, hd
        # QK-Norm, then RoPE (EVA-02 order), in token-major layout: the results stay [B, N, heads, hd]
        # in memory, so after the transposes below SDPA sees the same strides as with plain views of
        # qkv and writes an output whose transpose back to [B, N, D] is free.
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        q, k = q.to(v.dtype), k.to(v.dtype)  # autocast runs the norms in fp32
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # B, heads, N, hd (views)
        backend = get_attention_backend(self.attn_backend)
        if seq_lens is None:  # backends without packed support keep working for dense input
            out = backend(q, k, v, attn_mask=attn_mask)
        else:
            out = backend(q, k, v, attn_mask=attn_mask, seq_lens=seq_lens)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))  # B, N, D

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, head_dim={self.head_dim}, attn_backend={self.attn_backend!r}"


__all__ = ["SelfAttention"]
