"""CogViT: the vision encoder of GLM-5V-Turbo (arXiv 2604.26752, section 2.1).

A pre-norm ViT with

* QK-Norm (Dehghani et al. 2023, arXiv 2302.05442): q and k are normalised per head over
  head_dim before RoPE and attention, which the report adds "to mitigate logit explosion";
* axial 2D RoPE on patch tokens (no absolute position table), so one set of weights serves the
  fixed 224x224 crops of stage 1 and the native-aspect-ratio NaFlex inputs of stage 2;
* an optional class token and register tokens (Darcet et al. 2023, arXiv 2309.16588), which
  RoPE leaves unrotated;
* inputs as an image batch ``[B, C, H, W]`` or as a NaFlex batch (patches, coords, valid);
* a ``mask`` / ``mask_token`` pair for stage 1 masked image modelling; the token belongs to the
  training stage, the encoder only substitutes it.

Sizes are presets (``PRESETS``), not subclasses: ``CogViT.preset("large")`` or
``CogViT(preset="large", depth=12)``; explicitly given arguments override the preset.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from glmkit.models.zoo import load_pretrained, save_pretrained
from glmkit.nn.attention import DEFAULT_BACKEND, get_attention_backend
from glmkit.nn.patch_embed import PatchEmbed
from glmkit.nn.rope import RotaryEmbedding2D, apply_rotary
from glmkit.registry import declare

ENCODERS = declare("encoders", "vision encoders")

NormType = Literal["layernorm", "rmsnorm"]
MlpType = Literal["gelu", "swiglu"]


@dataclass(frozen=True)
class CogViTConfig:
    """Every hyperparameter of a :class:`CogViT`, fully resolved (no preset, no None)."""

    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    mlp_type: MlpType = "gelu"
    qkv_bias: bool = True
    qk_norm: bool = True
    qk_norm_type: NormType = "layernorm"
    norm_type: NormType = "layernorm"
    norm_eps: float = 1e-6
    class_token: bool = True
    num_registers: int = 4
    rope: bool = True
    rope_theta: float = 10000.0
    layer_scale_init: float = 0.0
    drop_path_rate: float = 0.0
    attn_backend: str = DEFAULT_BACKEND
    grad_checkpointing: bool = False


# Named sizes. Values not listed come from CogViTConfig's defaults. `large` is the ViT-L shape
# (~0.30B parameters); the report's CogViT-L is quoted at 403M, a shape it does not publish.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"embed_dim": 96, "depth": 3, "num_heads": 3, "num_registers": 2},
    "base": {"embed_dim": 768, "depth": 12, "num_heads": 12, "num_registers": 4},
    "large": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "num_registers": 4},
}


def resolve_config(preset: str | None = None, **given: Any) -> CogViTConfig:
    """Defaults, then ``PRESETS[preset]``, then every ``given`` value that is not None."""
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            close = difflib.get_close_matches(preset, list(PRESETS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"unknown CogViT preset {preset!r}.{hint} Available presets: {', '.join(PRESETS)}"
            )
        values.update(PRESETS[preset])
    names = {f.name for f in fields(CogViTConfig)}
    unknown = sorted(set(given) - names)
    if unknown:
        raise TypeError(f"unknown CogViT argument(s) {unknown}; valid: {sorted(names)}")
    values.update({k: v for k, v in given.items() if v is not None})
    cfg = CogViTConfig(**values)
    _check_config(cfg)
    return cfg


def _check_config(cfg: CogViTConfig) -> None:
    if cfg.embed_dim % cfg.num_heads:
        raise ValueError(f"embed_dim={cfg.embed_dim} is not divisible by num_heads={cfg.num_heads}")
    head_dim = cfg.embed_dim // cfg.num_heads
    if cfg.rope and head_dim % 4:
        raise ValueError(
            f"2D RoPE needs head_dim = embed_dim / num_heads divisible by 4, got "
            f"{cfg.embed_dim} / {cfg.num_heads} = {head_dim}"
        )
    for name in ("qk_norm_type", "norm_type"):
        if getattr(cfg, name) not in ("layernorm", "rmsnorm"):
            raise ValueError(f"{name} must be 'layernorm' or 'rmsnorm', got {getattr(cfg, name)!r}")
    if cfg.mlp_type not in ("gelu", "swiglu"):
        raise ValueError(f"mlp_type must be 'gelu' or 'swiglu', got {cfg.mlp_type!r}")
    if cfg.num_registers < 0 or cfg.depth < 1 or cfg.patch_size < 1:
        raise ValueError(
            f"need num_registers >= 0, depth >= 1, patch_size >= 1; got {cfg.num_registers}, "
            f"{cfg.depth}, {cfg.patch_size}"
        )
    get_attention_backend(cfg.attn_backend)  # unknown names raise with the registered list


def _norm(kind: NormType, dim: int, eps: float) -> nn.Module:
    return nn.LayerNorm(dim, eps=eps) if kind == "layernorm" else nn.RMSNorm(dim, eps=eps)


@dataclass
class EncoderOutput:
    """What a vision encoder returns.

    Attributes:
        patch_tokens: ``[B, N, D]`` after the final norm; zero at padded (invalid) positions.
        prefix_tokens: ``[B, T, D]`` class then register tokens (``T`` may be 0).
        grid_size: the ``(h, w)`` patch grid for image input, None for NaFlex input.
        valid: the ``[B, N]`` bool mask given with NaFlex input; None when every token is valid.
    """

    patch_tokens: Tensor
    prefix_tokens: Tensor
    grid_size: tuple[int, int] | None
    valid: Tensor | None

    @property
    def class_token(self) -> Tensor | None:
        """``[B, D]`` class token, or None when the encoder has no prefix tokens."""
        return self.prefix_tokens[:, 0] if self.prefix_tokens.shape[1] else None


@dataclass
class EmbeddedTokens:
    """Block input: ``tokens [B, T+N, D]``, RoPE tables, attention mask, and bookkeeping."""

    tokens: Tensor
    rope: tuple[Tensor, Tensor] | None
    attn_mask: Tensor | None
    grid_size: tuple[int, int] | None
    valid: Tensor | None


class LayerScale(nn.Module):
    """Per-channel residual scale (CaiT, arXiv 2103.17239)."""

    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwiGLU(nn.Module):
    """SiLU-gated MLP (Shazeer 2020) with the gate and value projections fused into one Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc12 = nn.Linear(dim, 2 * hidden)
        self.fc3 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        gate, value = self.fc12(x).chunk(2, dim=-1)
        return self.fc3(F.silu(gate) * value)


class SelfAttention(nn.Module):
    """Multi-head self-attention with QK-Norm and 2D RoPE, one fused qkv projection."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool,
        qk_norm: bool,
        qk_norm_type: NormType,
        norm_eps: float,
        attn_backend: str,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = _norm(qk_norm_type, self.head_dim, norm_eps) if qk_norm else nn.Identity()
        self.k_norm = _norm(qk_norm_type, self.head_dim, norm_eps) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.attn_backend = attn_backend

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None, attn_mask: Tensor | None) -> Tensor:
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
        out = get_attention_backend(self.attn_backend)(q, k, v, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))  # B, N, D


class CogViTBlock(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: CogViTConfig, drop_path: float) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = _norm(cfg.norm_type, dim, cfg.norm_eps)
        self.attn = SelfAttention(
            dim, cfg.num_heads, cfg.qkv_bias, cfg.qk_norm, cfg.qk_norm_type, cfg.norm_eps, cfg.attn_backend
        )
        self.ls1 = LayerScale(dim, cfg.layer_scale_init) if cfg.layer_scale_init else nn.Identity()
        self.norm2 = _norm(cfg.norm_type, dim, cfg.norm_eps)
        hidden = int(dim * cfg.mlp_ratio)
        if cfg.mlp_type == "swiglu":
            # 2/3 keeps the parameter count of a GELU MLP with the same ratio; multiple of 8 for kernels.
            hidden = -(-int(hidden * 2 / 3) // 8) * 8
            self.mlp: nn.Module = SwiGLU(dim, hidden)
        else:
            self.mlp = Mlp(dim, hidden)
        self.ls2 = LayerScale(dim, cfg.layer_scale_init) if cfg.layer_scale_init else nn.Identity()
        self.drop_path = drop_path

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None, attn_mask: Tensor | None) -> Tensor:
        x = x + self._drop_path(self.ls1(self.attn(self.norm1(x), rope, attn_mask)))
        return x + self._drop_path(self.ls2(self.mlp(self.norm2(x))))

    def _drop_path(self, x: Tensor) -> Tensor:
        """Stochastic depth (Huang et al. 2016): drop the whole residual branch per sample."""
        if not self.drop_path or not self.training:
            return x
        keep = 1.0 - self.drop_path
        return x * x.new_empty(x.shape[0], 1, 1).bernoulli_(keep).div_(keep)


@ENCODERS.register("cogvit")
class CogViT(nn.Module):
    """CogViT vision encoder (GLM-5V-Turbo section 2.1).

    Every architecture argument defaults to None, meaning "from ``preset``" (or from
    :class:`CogViTConfig`'s default when no preset is named), so a recipe can write
    ``init_args: {preset: large}`` and override single values.

    Args:
        preset: a name in ``PRESETS`` (``tiny``, ``base``, ``large``) or None.
        img_size: nominal training resolution (informational; any multiple of patch_size runs).
        patch_size: square patch side in pixels (16).
        in_chans: image channels (3).
        embed_dim, depth, num_heads: width, number of blocks, attention heads.
        mlp_ratio: MLP hidden width / embed_dim.
        mlp_type: ``gelu`` (Linear-GELU-Linear) or ``swiglu``.
        qkv_bias: bias on the fused qkv projection.
        qk_norm: normalise q and k per head before RoPE and attention (QK-Norm).
        qk_norm_type, norm_type: ``layernorm`` or ``rmsnorm`` for QK-Norm and for block/final norms.
        norm_eps: epsilon of every norm.
        class_token: prepend a learned class token.
        num_registers: learned register tokens after the class token.
        rope: use 2D RoPE on patch tokens (False leaves the model without position information;
            for ablations and benchmarks).
        rope_theta: RoPE frequency base for integer patch coordinates.
        layer_scale_init: LayerScale initial value; 0 disables LayerScale.
        drop_path_rate: stochastic depth rate of the last block (linear ramp from 0).
        attn_backend: name in ``registry("attention")``: ``sdpa`` or ``xformers``.
        grad_checkpointing: recompute each block in backward (activation checkpointing).
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = PRESETS

    def __init__(
        self,
        preset: str | None = None,
        *,
        img_size: int | None = None,
        patch_size: int | None = None,
        in_chans: int | None = None,
        embed_dim: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        mlp_ratio: float | None = None,
        mlp_type: MlpType | None = None,
        qkv_bias: bool | None = None,
        qk_norm: bool | None = None,
        qk_norm_type: NormType | None = None,
        norm_type: NormType | None = None,
        norm_eps: float | None = None,
        class_token: bool | None = None,
        num_registers: int | None = None,
        rope: bool | None = None,
        rope_theta: float | None = None,
        layer_scale_init: float | None = None,
        drop_path_rate: float | None = None,
        attn_backend: str | None = None,
        grad_checkpointing: bool | None = None,
    ) -> None:
        super().__init__()
        cfg = resolve_config(
            preset,
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            mlp_type=mlp_type,
            qkv_bias=qkv_bias,
            qk_norm=qk_norm,
            qk_norm_type=qk_norm_type,
            norm_type=norm_type,
            norm_eps=norm_eps,
            class_token=class_token,
            num_registers=num_registers,
            rope=rope,
            rope_theta=rope_theta,
            layer_scale_init=layer_scale_init,
            drop_path_rate=drop_path_rate,
            attn_backend=attn_backend,
            grad_checkpointing=grad_checkpointing,
        )
        self.config = cfg
        self.preset_name = preset
        # Recorded for save_pretrained: the resolved values, so an export does not depend on PRESETS.
        self.init_args: dict[str, Any] = asdict(cfg)

        self.embed_dim = cfg.embed_dim
        self.patch_size = cfg.patch_size
        self.num_heads = cfg.num_heads
        self.num_prefix_tokens = int(cfg.class_token) + cfg.num_registers
        self.grad_checkpointing = cfg.grad_checkpointing

        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.in_chans, cfg.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim)) if cfg.class_token else None
        self.reg_token = (
            nn.Parameter(torch.zeros(1, cfg.num_registers, cfg.embed_dim)) if cfg.num_registers else None
        )
        self.rope = RotaryEmbedding2D(cfg.embed_dim // cfg.num_heads, cfg.rope_theta) if cfg.rope else None
        rates = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(CogViTBlock(cfg, rate) for rate in rates)
        self.norm = _norm(cfg.norm_type, cfg.embed_dim, cfg.norm_eps)
        self.init_weights()

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> CogViT:
        """Build the named preset; ``overrides`` replace single values (``CogViT.preset("large", depth=12)``)."""
        return cls(preset=name, **overrides)

    def init_weights(self) -> None:
        """Truncated-normal (std 0.02) Linear weights and prefix tokens, zero biases, unit norms."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm | nn.RMSNorm):
                module.reset_parameters()
        for token in (self.cls_token, self.reg_token):
            if token is not None:
                nn.init.trunc_normal_(token, std=0.02)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Switch activation checkpointing of every block on or off (recorded for export)."""
        self.grad_checkpointing = enable
        self.init_args["grad_checkpointing"] = enable

    def set_attn_backend(self, name: str) -> None:
        """Switch every block to the attention backend registered as ``name``."""
        get_attention_backend(name)
        for block in self.blocks:
            block.attn.attn_backend = name
        self.init_args["attn_backend"] = name  # an export records the backend in use

    def no_weight_decay(self) -> set[str]:
        """Parameter names conventionally excluded from weight decay (prefix tokens)."""
        return {name for name in ("cls_token", "reg_token") if getattr(self, name) is not None}

    # ------------------------------------------------------------------ forward
    def embed(
        self,
        x: Tensor | None = None,
        *,
        patches: Tensor | None = None,
        coords: Tensor | None = None,
        valid: Tensor | None = None,
        mask: Tensor | None = None,
        mask_token: Tensor | None = None,
    ) -> EmbeddedTokens:
        """Patch embedding, mask-token substitution, prefix tokens, RoPE tables and attention mask.

        See :meth:`forward` for the arguments.
        """
        if x is not None:
            if patches is not None or coords is not None or valid is not None:
                raise ValueError("pass either an image batch x or NaFlex patches/coords/valid, not both")
            tokens, grid = self.patch_embed.forward_image(x)  # B, N, D
            batch = tokens.shape[0]
            rope = (
                self.rope.for_grid(*grid, self.num_prefix_tokens, x.device) if self.rope is not None else None
            )
            attn_mask = None
        else:
            if patches is None:
                raise ValueError("CogViT needs an image batch x [B, C, H, W] or NaFlex patches [B, N, P*P*C]")
            batch, n = self._check_naflex(patches, coords, valid)
            tokens, grid = self.patch_embed(patches), None
            rope = self.rope(coords, self.num_prefix_tokens) if self.rope is not None else None
            attn_mask = None
            if valid is not None:
                prefix_valid = valid.new_ones(batch, self.num_prefix_tokens)
                attn_mask = torch.cat([prefix_valid, valid], dim=1)  # B, T+N key padding
        if mask is not None or mask_token is not None:
            tokens = self._apply_mask_token(tokens, mask, mask_token)
        prefix = [t.expand(batch, -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        if prefix:
            tokens = torch.cat([*(p.to(tokens.dtype) for p in prefix), tokens], dim=1)  # B, T+N, D
        return EmbeddedTokens(tokens, rope, attn_mask, grid, valid)

    def forward(
        self,
        x: Tensor | None = None,
        *,
        patches: Tensor | None = None,
        coords: Tensor | None = None,
        valid: Tensor | None = None,
        mask: Tensor | None = None,
        mask_token: Tensor | None = None,
    ) -> EncoderOutput:
        """Encode an image batch or a NaFlex batch.

        Args:
            x: images ``[B, C, H, W]`` with H and W multiples of ``patch_size``.
            patches: NaFlex patches ``[B, N, P*P*C]`` in (ph, pw, C) order (see
                :func:`glmkit.nn.patch_embed.patchify`).
            coords: integer patch coordinates ``[B, N, 2]`` as (y, x); required with ``patches``.
            valid: ``[B, N]`` bool, False at padding; padded tokens never influence valid ones.
            mask: ``[B, N]`` bool; patch embeddings where True are replaced by ``mask_token``
                before the blocks (masked image modelling, report section 2.1 stage 1).
            mask_token: ``[D]`` learned token owned by the training stage.
        """
        emb = self.embed(x, patches=patches, coords=coords, valid=valid, mask=mask, mask_token=mask_token)
        h = emb.tokens
        use_checkpoint = self.grad_checkpointing and torch.is_grad_enabled()
        for block in self.blocks:
            if use_checkpoint:
                h = checkpoint(block, h, emb.rope, emb.attn_mask, use_reentrant=False)
            else:
                h = block(h, emb.rope, emb.attn_mask)
        h = self.norm(h)
        t = self.num_prefix_tokens
        patch_tokens = h[:, t:]
        if emb.valid is not None:
            patch_tokens = patch_tokens.masked_fill(~emb.valid[..., None], 0.0)
        return EncoderOutput(patch_tokens, h[:, :t], emb.grid_size, emb.valid)

    def _check_naflex(self, patches: Tensor, coords: Tensor | None, valid: Tensor | None) -> tuple[int, int]:
        if patches.ndim != 3:
            raise ValueError(f"NaFlex patches must be [B, N, P*P*C], got shape {list(patches.shape)}")
        batch, n, _ = patches.shape
        if coords is None:
            raise ValueError("NaFlex input needs coords [B, N, 2] (y, x patch indices) with patches")
        if tuple(coords.shape) != (batch, n, 2):
            raise ValueError(f"coords must be [B, N, 2] = [{batch}, {n}, 2], got {list(coords.shape)}")
        if valid is not None and (valid.dtype != torch.bool or tuple(valid.shape) != (batch, n)):
            raise ValueError(
                f"valid must be a bool tensor [B, N] = [{batch}, {n}], got {valid.dtype} {list(valid.shape)}"
            )
        return batch, n

    def _apply_mask_token(self, tokens: Tensor, mask: Tensor | None, mask_token: Tensor | None) -> Tensor:
        if mask is None or mask_token is None:
            raise ValueError("mask and mask_token go together: pass both or neither")
        if mask.dtype != torch.bool or tuple(mask.shape) != tuple(tokens.shape[:2]):
            raise ValueError(
                f"mask must be a bool tensor [B, N] = {list(tokens.shape[:2])}, "
                f"got {mask.dtype} {list(mask.shape)}"
            )
        if tuple(mask_token.shape) != (self.embed_dim,):
            raise ValueError(f"mask_token must have shape [{self.embed_dim}], got {list(mask_token.shape)}")
        return torch.where(mask[..., None], mask_token.to(tokens.dtype), tokens)

    # ------------------------------------------------------------------ export
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` to ``directory`` (see :mod:`glmkit.models.zoo`)."""
        return save_pretrained(self, directory, self.init_args)

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | Path, **overrides: Any) -> CogViT:
        """Load an export from a local directory or a Hugging Face hub id.

        ``overrides`` change init args that do not affect weights, e.g. ``attn_backend`` or
        ``grad_checkpointing``.
        """
        return load_pretrained(path_or_hub_id, expected_class=cls, **overrides)


__all__ = [
    "ENCODERS",
    "PRESETS",
    "CogViT",
    "CogViTBlock",
    "CogViTConfig",
    "EmbeddedTokens",
    "EncoderOutput",
    "resolve_config",
]
