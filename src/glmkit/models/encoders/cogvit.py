"""CogViT: the vision encoder of GLM-5V-Turbo (arXiv 2604.26752, section 2.1).

A pre-norm ViT with

* QK-Norm (Dehghani et al. 2023, arXiv 2302.05442): q and k are normalised per head over
  head_dim before RoPE and attention, which the report adds "to mitigate logit explosion";
* axial 2D RoPE on patch tokens (no absolute position table), so one set of weights serves the
  fixed 224x224 crops of stage 1 and the native-aspect-ratio NaFlex inputs of stage 2;
* an optional class token and register tokens (Darcet et al. 2023, arXiv 2309.16588), which
  RoPE leaves unrotated;
* inputs as an image batch ``[B, C, H, W]``, a NaFlex batch (patches, coords, valid) or packed
  NaFlex rows (``seq_lens``: several images per row, each with its own prefix tokens);
* a ``mask`` / ``mask_token`` pair for stage 1 masked image modelling; the token belongs to the
  training stage, the encoder only substitutes it.

The input and output contract is :class:`~glmkit.models.encoders.base.VisionEncoder`. Layers
(attention, MLPs, norms, LayerScale, drop path) come from :mod:`glmkit.nn`.

Sizes are presets (``PRESETS``, data, not subclasses): ``CogViT.preset("large", depth=12)``, or
``init_args: {preset: large, depth: 12}`` in a recipe, which the config loader expands into the
preset's values before printing and parsing.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from glmkit.models.encoders.base import ENCODERS, EncoderOutput
from glmkit.models.zoo import load_pretrained, save_pretrained
from glmkit.nn.attention import get_attention_backend, packed_rows_cost_nothing
from glmkit.nn.drop import DropPath
from glmkit.nn.layer_scale import LayerScale
from glmkit.nn.mlp import Mlp, SwiGLU, swiglu_hidden_features
from glmkit.nn.norm import NormType, check_norm_type, create_norm
from glmkit.nn.packed import SeqLens
from glmkit.nn.patch_embed import PatchEmbed
from glmkit.nn.rope import RopeJitter, RotaryEmbedding2D, grid_coords
from glmkit.nn.self_attention import SelfAttention

MlpType = Literal["gelu", "swiglu"]

# Named sizes: init-args over CogViT's signature defaults. `large` is the ViT-L shape (~0.30B
# parameters); the report's CogViT-L is quoted at 403M, a shape it does not publish.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"embed_dim": 96, "depth": 3, "num_heads": 3, "num_registers": 2},
    "base": {"embed_dim": 768, "depth": 12, "num_heads": 12, "num_registers": 4},
    "large": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "num_registers": 4},
}


@dataclass
class PackedLayout:
    """Where packed input goes inside the encoder's token sequence (see :meth:`CogViT.embed`).

    Inside, each image is laid out as ``[its T prefix tokens, its n_i patch tokens]``, images back
    to back in ``R`` internal rows of ``L`` tokens: either one row per input row, then padding, or
    (where attention costs the same however the images are spread over rows, see
    :func:`~glmkit.nn.attention.packed_rows_cost_nothing`) all images on one row, without padding.
    ``seq_lens`` describes that internal sequence for attention.
    """

    seq_lens: SeqLens  # internal lengths [R, S]: T + n_i per image
    patch_pos: Tensor  # [B, N] internal position of each input patch in its row (R = 1: 0 at padding)
    prefix_rows: Tensor  # [I, 1] internal row of each image
    prefix_pos: Tensor  # [I, T] internal positions of each image's prefix tokens
    valid: Tensor  # [B, N] input positions that hold a patch
    given: Tensor  # the seq_lens argument, returned in the output
    patch_index: Tensor  # [B*N] patch_pos on the flattened [R*L] internal axis
    prefix_index: Tensor  # [I*T] prefix_pos on the flattened [R*L] internal axis


@dataclass
class EmbeddedTokens:
    """Block input: ``tokens [B, L, D]`` (packed: ``[R, L, D]``, see :class:`PackedLayout`), RoPE
    tables, attention mask or packing, and bookkeeping."""

    tokens: Tensor
    rope: tuple[Tensor, Tensor] | None
    attn_mask: Tensor | None
    grid_size: tuple[int, int] | None
    valid: Tensor | None
    packed: PackedLayout | None = None

    @property
    def seq_lens(self) -> SeqLens | None:
        """The internal packing for attention and drop path, None unless packed."""
        return self.packed.seq_lens if self.packed is not None else None


class CogViTBlock(nn.Module):
    """Pre-norm transformer block: ``x + ls1(attn(norm1(x)))``, then ``x + ls2(mlp(norm2(x)))``.

    Arguments are those of :class:`CogViT` (``drop_path``: this block's stochastic-depth rate).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        mlp_type: MlpType = "gelu",
        qkv_bias: bool = True,
        qk_norm: bool = True,
        qk_norm_type: NormType = "layernorm",
        norm_type: NormType = "layernorm",
        norm_eps: float = 1e-6,
        layer_scale_init: float = 0.0,
        drop_path: float = 0.0,
        attn_backend: str = "sdpa",
    ) -> None:
        super().__init__()
        self.norm1 = create_norm(norm_type, dim, norm_eps)
        self.attn = SelfAttention(dim, num_heads, qkv_bias, qk_norm, qk_norm_type, norm_eps, attn_backend)
        self.ls1 = LayerScale(dim, layer_scale_init) if layer_scale_init else nn.Identity()
        self.norm2 = create_norm(norm_type, dim, norm_eps)
        if mlp_type == "swiglu":
            self.mlp: nn.Module = SwiGLU(dim, swiglu_hidden_features(dim, mlp_ratio))
        else:
            self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, layer_scale_init) if layer_scale_init else nn.Identity()
        self.drop_path1 = DropPath(drop_path)
        self.drop_path2 = DropPath(drop_path)

    def forward(
        self,
        x: Tensor,
        rope: tuple[Tensor, Tensor] | None = None,
        attn_mask: Tensor | None = None,
        seq_lens: SeqLens | None = None,
    ) -> Tensor:
        """``[B, L, D] -> [B, L, D]``; ``seq_lens`` packs several images per row."""
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), rope, attn_mask, seq_lens)), seq_lens)
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))), seq_lens)


@ENCODERS.register("cogvit")
class CogViT(nn.Module):
    """CogViT vision encoder (GLM-5V-Turbo section 2.1); every argument has its real default.

    The defaults are the ViT-B/16 shape; named sizes are in ``CogViT.PRESETS``
    (``CogViT.preset("tiny")``).

    Args:
        img_size: nominal training resolution (informational; any multiple of patch_size runs).
        patch_size: square patch side in pixels.
        in_chans: image channels.
        embed_dim: token width ``D``.
        depth: number of blocks.
        num_heads: attention heads (``embed_dim`` divisible by it; head_dim divisible by 4 with RoPE).
        mlp_ratio: MLP hidden width / embed_dim (for SwiGLU: 2/3 of that, rounded up to 8).
        mlp_type: ``gelu`` (Linear-GELU-Linear) or ``swiglu``.
        qkv_bias: bias on the fused qkv projection.
        qk_norm: normalise q and k per head before RoPE and attention (QK-Norm).
        qk_norm_type: ``layernorm`` or ``rmsnorm`` for QK-Norm.
        norm_type: ``layernorm`` or ``rmsnorm`` for the block and final norms.
        norm_eps: epsilon of every norm.
        class_token: prepend a learned class token.
        num_registers: learned register tokens after the class token.
        rope: use 2D RoPE on patch tokens (False leaves the model without position information;
            for ablations, benchmarks and the comparison with timm's ViT).
        rope_theta: RoPE frequency base for integer patch coordinates.
        layer_scale_init: LayerScale initial value; 0 disables LayerScale.
        drop_path_rate: stochastic depth rate of the last block (linear ramp from 0 at the first).
        attn_backend: name in ``registry("attention")``: ``sdpa``, ``xformers`` or ``flex``.
        grad_checkpointing: recompute each block in backward (activation checkpointing).
        rope_ref_grid: ``(h, w)`` training grid to rescale RoPE coordinates to (EVA-02's
            ``ref_feat_shape``): an ``H x W`` grid's coordinates are multiplied by ``(h / H, w / W)``,
            so a 448 px image spans the coordinate range of 224 px training (for NaFlex and packed
            input each image's own grid is its coordinate extent). Empty: integer coordinates.
        rope_rescale: training-time RoPE augmentation (DINOv3): largest factor of a random rescaling
            of the coordinates shared by both axes, one draw per forward pass (1: off).
        rope_jitter: training-time largest factor of a random per-axis rescaling (1: off).
        rope_shift: training-time largest random shift of the coordinates, in patches (0: off).
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = PRESETS

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        mlp_type: MlpType = "gelu",
        qkv_bias: bool = True,
        qk_norm: bool = True,
        qk_norm_type: NormType = "layernorm",
        norm_type: NormType = "layernorm",
        norm_eps: float = 1e-6,
        class_token: bool = True,
        num_registers: int = 4,
        rope: bool = True,
        rope_theta: float = 10000.0,
        layer_scale_init: float = 0.0,
        drop_path_rate: float = 0.0,
        attn_backend: str = "sdpa",
        grad_checkpointing: bool = False,
        rope_ref_grid: tuple[int, ...] = (),
        rope_rescale: float = 1.0,
        rope_jitter: float = 1.0,
        rope_shift: float = 0.0,
    ) -> None:
        super().__init__()
        # Recorded for save_pretrained / ExportEncoder: every init argument as resolved, so an export
        # depends neither on PRESETS nor on these defaults staying the same.
        given = locals()
        self.init_args: dict[str, Any] = {name: given[name] for name in _init_arg_names()}
        # JSON (config.json, recipes) gives a list
        rope_ref_grid = self.init_args["rope_ref_grid"] = tuple(int(v) for v in rope_ref_grid)
        _check_args(self.init_args)

        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.num_heads = num_heads
        self.num_prefix_tokens = int(class_token) + num_registers
        self.grad_checkpointing = grad_checkpointing

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, num_registers, embed_dim)) if num_registers else None
        ref = rope_ref_grid or None
        self.rope = RotaryEmbedding2D(embed_dim // num_heads, rope_theta, ref) if rope else None
        self.rope_jitter = RopeJitter(rope_rescale, rope_jitter, rope_shift)
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            CogViTBlock(
                embed_dim,
                num_heads,
                mlp_ratio=mlp_ratio,
                mlp_type=mlp_type,
                qkv_bias=qkv_bias,
                qk_norm=qk_norm,
                qk_norm_type=qk_norm_type,
                norm_type=norm_type,
                norm_eps=norm_eps,
                layer_scale_init=layer_scale_init,
                drop_path=rate,
                attn_backend=attn_backend,
            )
            for rate in rates
        )
        self.norm = create_norm(norm_type, embed_dim, norm_eps)
        self.init_weights()

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> CogViT:
        """Build the named preset; ``overrides`` replace single values (``CogViT.preset("large", depth=12)``)."""
        return cls(**{**_preset(name), **overrides})

    @classmethod
    def preset_args(cls, name: str, **overrides: Any) -> dict[str, Any]:
        """Every init argument of a preset without building it: defaults, then ``PRESETS[name]``, then ``overrides``."""
        defaults = {
            key: param.default
            for key, param in inspect.signature(cls.__init__).parameters.items()
            if key != "self"
        }
        unknown = sorted(set(overrides) - set(defaults))
        if unknown:
            raise TypeError(f"unknown CogViT argument(s) {unknown}; valid: {sorted(defaults)}")
        args = {**defaults, **_preset(name), **overrides}
        _check_args(args)
        return args

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
        seq_lens: Tensor | None = None,
        mask: Tensor | None = None,
        mask_token: Tensor | None = None,
    ) -> EmbeddedTokens:
        """Patch embedding, mask-token substitution, prefix tokens, RoPE tables and attention layout.

        See :meth:`forward` for the arguments.
        """
        if x is not None:
            if patches is not None or coords is not None or valid is not None or seq_lens is not None:
                raise ValueError("pass either an image batch x or NaFlex patches/coords/valid, not both")
            tokens, grid = self.patch_embed.forward_image(x)  # B, N, D
            rope = self._rope_for_grid(grid, x.device)
            tokens = self._apply_mask_token(tokens, mask, mask_token)
            return EmbeddedTokens(self._prepend_prefix(tokens), rope, None, grid, None)
        if patches is None:
            raise ValueError("CogViT needs an image batch x [B, C, H, W] or NaFlex patches [B, N, P*P*C]")
        self._check_naflex(patches, coords, valid)
        tokens = self._apply_mask_token(self.patch_embed(patches), mask, mask_token)  # B, N, D
        if seq_lens is not None:
            return self._embed_packed(tokens, coords, valid, seq_lens)
        rope = None
        if self.rope is not None:
            slot = torch.zeros(coords.shape[:2], dtype=torch.long, device=coords.device)  # one image per row
            rope = self.rope(coords, self.num_prefix_tokens, **self._rope_options(coords, valid, slot))
        attn_mask = None
        if valid is not None:
            prefix_valid = valid.new_ones(valid.shape[0], self.num_prefix_tokens)
            attn_mask = torch.cat([prefix_valid, valid], dim=1)  # B, T+N key padding
        return EmbeddedTokens(self._prepend_prefix(tokens), rope, attn_mask, None, valid)

    def forward(
        self,
        x: Tensor | None = None,
        *,
        patches: Tensor | None = None,
        coords: Tensor | None = None,
        valid: Tensor | None = None,
        seq_lens: Tensor | None = None,
        mask: Tensor | None = None,
        mask_token: Tensor | None = None,
    ) -> EncoderOutput:
        """Encode an image batch, a NaFlex batch or packed NaFlex rows.

        Args:
            x: images ``[B, C, H, W]`` with H and W multiples of ``patch_size``.
            patches: NaFlex patches ``[B, N, P*P*C]`` in (ph, pw, C) order (see
                :func:`glmkit.nn.patch_embed.patchify`).
            coords: integer patch coordinates ``[B, N, 2]`` as (y, x); required with ``patches``.
            valid: ``[B, N]`` bool, False at padding; padded tokens never influence valid ones.
            seq_lens: packed input: ``[B, S]`` integer patch counts of the images packed back to
                back in each row of ``patches`` (0 = empty slot; positions after a row's last image
                are padding). Each image gets its own prefix tokens and attends only to itself.
            mask: ``[B, N]`` bool; patch embeddings where True are replaced by ``mask_token``
                before the blocks (masked image modelling, report section 2.1 stage 1).
            mask_token: ``[D]`` learned token owned by the training stage.

        Returns:
            :class:`EncoderOutput`; for packed input ``prefix_tokens`` is ``[I, T, D]``, one entry
            per image, and ``patch_tokens`` keeps the layout of ``patches``.
        """
        emb = self.embed(
            x,
            patches=patches,
            coords=coords,
            valid=valid,
            seq_lens=seq_lens,
            mask=mask,
            mask_token=mask_token,
        )
        h = emb.tokens
        use_checkpoint = self.grad_checkpointing and torch.is_grad_enabled()
        for block in self.blocks:
            if use_checkpoint:
                h = checkpoint(block, h, emb.rope, emb.attn_mask, emb.seq_lens, use_reentrant=False)
            else:
                h = block(h, emb.rope, emb.attn_mask, emb.seq_lens)
        h = self.norm(h)
        if emb.packed is not None:
            return self._unpack(h, emb.packed)
        t = self.num_prefix_tokens
        patch_tokens = h[:, t:]
        if emb.valid is not None:
            patch_tokens = patch_tokens.masked_fill(~emb.valid[..., None], 0.0)
        return EncoderOutput(patch_tokens, h[:, :t], emb.grid_size, emb.valid)

    # ------------------------------------------------------------------ input handling
    def _rope_for_grid(self, grid: tuple[int, int], device: torch.device) -> tuple[Tensor, Tensor] | None:
        """RoPE tables of an image batch's grid: cached, or with this pass's augmentation drawn."""
        if self.rope is None:
            return None
        if not (self.training and self.rope_jitter.enabled):
            return self.rope.for_grid(*grid, self.num_prefix_tokens, device)
        scale, shift = self.rope_jitter.draw()
        coords = grid_coords(*grid, device=device)
        extents = torch.tensor(grid, device=device)
        return self.rope(coords, self.num_prefix_tokens, extents=extents, scale=scale, shift=shift)

    def _rope_options(self, coords: Tensor, valid: Tensor | None, slot: Tensor) -> dict[str, Tensor]:
        """RoPE keyword arguments for NaFlex coordinates ``[B, N, 2]``: each token's image extent
        (the largest valid coordinate of its image, per row and ``slot``, plus one) when coordinates
        are rescaled, and this pass's augmentation in training."""
        options: dict[str, Tensor] = {}
        if self.rope is not None and self.rope.ref_grid is not None:
            keep = valid if valid is not None else torch.ones_like(slot, dtype=torch.bool)
            slots = int(slot.max()) + 1 if slot.numel() else 1  # packed padding carries slot S
            index = slot[..., None].expand(-1, -1, 2)  # B, N, 2
            ends = torch.zeros(slot.shape[0], slots, 2, dtype=torch.long, device=coords.device)
            ends = ends.scatter_reduce(1, index, torch.where(keep[..., None], coords.long() + 1, 0), "amax")
            options["extents"] = ends.gather(1, index).clamp_min(1)  # B, N, 2
        if self.training and self.rope_jitter.enabled:
            options["scale"], options["shift"] = self.rope_jitter.draw()
        return options

    def _prefix(self, dtype: torch.dtype) -> Tensor:
        """``[T, D]`` class then register tokens."""
        parts = [t[0] for t in (self.cls_token, self.reg_token) if t is not None]
        if not parts:
            return torch.zeros(0, self.embed_dim, dtype=dtype, device=self.patch_embed.proj.weight.device)
        return torch.cat(parts).to(dtype)

    def _prepend_prefix(self, tokens: Tensor) -> Tensor:
        batch = tokens.shape[0]
        prefix = [t.expand(batch, -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        if not prefix:
            return tokens
        return torch.cat([*(p.to(tokens.dtype) for p in prefix), tokens], dim=1)  # B, T+N, D

    def _embed_packed(
        self, tokens: Tensor, coords: Tensor, valid: Tensor | None, seq_lens: Tensor
    ) -> EmbeddedTokens:
        """Lay packed images out as ``[prefix_i, patches_i]`` back to back (NaViT, arXiv 2307.06304).

        Where the attention backend's cost does not depend on rows (the CPU's per-image SDPA,
        xformers), all images go on one internal row without padding, so that no layer computes
        padding; otherwise each input row stays a row (a masked row of ``N`` tokens costs ``N^2``).
        """
        batch, n, dim = tokens.shape
        t = self.num_prefix_tokens
        device = tokens.device
        lengths = self._check_seq_lens(seq_lens, batch, n, valid, device)
        present = lengths > 0  # B, S
        rows, slot_idx = present.nonzero(as_tuple=True)  # I, I (row-major)
        num_images = rows.shape[0]
        ends = lengths.cumsum(dim=1)  # B, S
        positions = torch.arange(n, device=device).expand(batch, n).contiguous()
        slot = torch.searchsorted(ends, positions, right=True)  # B, N: S at padding
        patch_valid = slot < lengths.shape[1]
        one_row = num_images > 0 and self._rows_cost_nothing(tokens)
        if one_row:
            # Image i's prefix starts after all images before it (row-major); its patches T later.
            image_lengths = lengths[rows, slot_idx] + t  # I: each image with its prefix
            starts = image_lengths.cumsum(dim=0) - image_lengths  # I
            inner_rows, inner_len = 1, int(image_lengths.sum())
            image_of = torch.zeros_like(lengths)  # B, S: row-major image index of each slot
            image_of[rows, slot_idx] = torch.arange(num_images, device=device)
            image_slot = slot.clamp_max(lengths.shape[1] - 1)  # B, N (input padding: masked below)
            in_image = positions - (ends - lengths).gather(1, image_slot)  # B, N
            patch_pos = torch.where(patch_valid, starts[image_of.gather(1, image_slot)] + t + in_image, 0)
            prefix_rows = torch.zeros_like(rows)[:, None]  # I, 1
            inner_lengths = image_lengths[None]  # 1, I
        else:
            # Input position j of image s lands T * (images up to and including s) further on; padding
            # positions move past all of the row's prefix tokens.
            images_per_row = present.sum(dim=1)  # B
            slots = int(images_per_row.max()) if batch else 0
            inner_rows, inner_len = batch, n + t * slots  # each row grows by T tokens per image
            images_upto = torch.cat([present.long().cumsum(dim=1), images_per_row[:, None]], dim=1)  # B, S+1
            patch_pos = positions + t * images_upto.gather(1, slot)  # B, N
            # Prefix tokens of image s start where its patches started, shifted by the prefixes before it.
            starts = (ends - lengths + t * (present.long().cumsum(dim=1) - 1))[rows, slot_idx]  # I
            prefix_rows = rows[:, None]  # I, 1
            inner_lengths = torch.where(present, lengths + t, 0)  # B, S: each image with its prefix
        prefix_pos = starts[:, None] + torch.arange(t, device=device)  # I, T

        # One gather builds the internal rows: every internal position names its source in
        # [input tokens (B*N rows), prefix tokens (T rows), a zero row for the padding that packing
        # adds]. Index arithmetic runs on [B, L] integers; the activations are copied once (no
        # zero fill, scatter and index_put over [B, L, D]).
        total = inner_rows * inner_len
        row_offsets = torch.arange(batch, device=device)[:, None] * (0 if one_row else inner_len)  # B, 1
        patch_index = (patch_pos + row_offsets).flatten()  # B*N: flat internal position of each input
        prefix_index = (prefix_rows * inner_len + prefix_pos).flatten()  # I*T
        zero_row = batch * n + t
        # one slot past the end takes the input padding that has no internal position (one row)
        source = torch.full((total + 1,), zero_row, dtype=torch.long, device=device)
        scatter_at = torch.where(patch_valid.flatten(), patch_index, total) if one_row else patch_index
        source[scatter_at] = torch.arange(batch * n, device=device)
        source[prefix_index] = torch.arange(batch * n, zero_row, device=device).repeat(num_images)
        source = source[:total]
        table = torch.cat(
            [tokens.reshape(batch * n, dim), self._prefix(tokens.dtype), tokens.new_zeros(1, dim)]
        )
        inner = table.index_select(0, source).view(inner_rows, inner_len, dim)
        rope = None
        if self.rope is not None:
            cos, sin = self.rope(coords, **self._rope_options(coords, patch_valid, slot))  # B, N, 1, hd each
            # prefix tokens and padding stay unrotated (cos 1, sin 0), like the dense path
            rope_source = source.clamp_max(batch * n)  # B*N: the identity row
            head_dim = cos.shape[-1]
            cos = torch.cat([cos.reshape(batch * n, head_dim), cos.new_ones(1, head_dim)])
            sin = torch.cat([sin.reshape(batch * n, head_dim), sin.new_zeros(1, head_dim)])
            shape = (inner_rows, inner_len, 1, head_dim)
            rope = (
                cos.index_select(0, rope_source).view(shape),
                sin.index_select(0, rope_source).view(shape),
            )
        layout = PackedLayout(
            SeqLens(inner_lengths),
            patch_pos,
            prefix_rows,
            prefix_pos,
            patch_valid,
            seq_lens,
            patch_index,
            prefix_index,
        )
        return EmbeddedTokens(inner, rope, None, None, patch_valid, layout)

    def _rows_cost_nothing(self, tokens: Tensor) -> bool:
        """Whether this encoder's packed attention costs the same however images lie in rows, in the
        dtype attention will run in (autocast's, where it is on)."""
        device = tokens.device
        autocast = torch.is_autocast_enabled(device.type)
        dtype = torch.get_autocast_dtype(device.type) if autocast else tokens.dtype
        attn = self.blocks[0].attn
        return packed_rows_cost_nothing(attn.attn_backend, device, dtype, attn.head_dim)

    def _unpack(self, h: Tensor, layout: PackedLayout) -> EncoderOutput:
        """Internal ``[R, L, D]`` back to patch tokens in the input layout and per-image prefix tokens."""
        dim = h.shape[-1]
        flat = h.reshape(-1, dim)
        patch_tokens = flat.index_select(0, layout.patch_index).view(*layout.valid.shape, dim)  # B, N, D
        patch_tokens = patch_tokens.masked_fill(~layout.valid[..., None], 0.0)
        prefix_shape = (*layout.prefix_pos.shape, dim)  # I, T, D
        prefix_tokens = flat.index_select(0, layout.prefix_index).view(prefix_shape)
        return EncoderOutput(patch_tokens, prefix_tokens, None, layout.valid, layout.given)

    def _check_naflex(self, patches: Tensor, coords: Tensor | None, valid: Tensor | None) -> None:
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

    def _check_seq_lens(
        self, seq_lens: Tensor, batch: int, n: int, valid: Tensor | None, device: torch.device
    ) -> Tensor:
        if (
            not isinstance(seq_lens, Tensor)
            or seq_lens.ndim != 2
            or seq_lens.shape[0] != batch
            or seq_lens.is_floating_point()
            or seq_lens.dtype == torch.bool
        ):
            got = (
                f"{seq_lens.dtype} {list(seq_lens.shape)}" if isinstance(seq_lens, Tensor) else repr(seq_lens)
            )
            raise ValueError(f"seq_lens must be an integer tensor [B, S] with B = {batch} rows, got {got}")
        lengths = seq_lens.to(device=device, dtype=torch.long)
        totals = lengths.sum(dim=1)
        if (lengths < 0).any() or (totals > n).any():
            raise ValueError(
                f"seq_lens {seq_lens.tolist()} must be >= 0 and sum to at most N = {n} patches per row "
                f"(row sums: {totals.tolist()})"
            )
        if valid is not None:
            expected = torch.arange(n, device=device)[None] < totals[:, None]
            if not torch.equal(valid.to(device), expected):
                raise ValueError(
                    "valid disagrees with seq_lens: packed rows hold their images from position 0 and "
                    "padding after the last one; omit valid with seq_lens"
                )
        return lengths

    def _apply_mask_token(self, tokens: Tensor, mask: Tensor | None, mask_token: Tensor | None) -> Tensor:
        if mask is None and mask_token is None:
            return tokens
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


def _init_arg_names() -> list[str]:
    return [name for name in inspect.signature(CogViT.__init__).parameters if name != "self"]


def _preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        close = difflib.get_close_matches(str(name), list(PRESETS), n=2)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown CogViT preset {name!r}.{hint} Available presets: {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def _check_args(args: dict[str, Any]) -> None:
    """Validate CogViT's resolved init arguments; messages name the argument and its value."""
    embed_dim, num_heads = args["embed_dim"], args["num_heads"]
    if num_heads < 1 or embed_dim % num_heads:
        raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
    head_dim = embed_dim // num_heads
    if args["rope"] and head_dim % 4:
        raise ValueError(
            f"2D RoPE needs head_dim = embed_dim / num_heads divisible by 4, got "
            f"{embed_dim} / {num_heads} = {head_dim}"
        )
    for key in ("qk_norm_type", "norm_type"):
        check_norm_type(args[key], key)
    if args["mlp_type"] not in ("gelu", "swiglu"):
        raise ValueError(f"mlp_type must be 'gelu' or 'swiglu', got {args['mlp_type']!r}")
    if args["num_registers"] < 0 or args["depth"] < 1 or args["patch_size"] < 1:
        raise ValueError(
            f"need num_registers >= 0, depth >= 1, patch_size >= 1; got num_registers="
            f"{args['num_registers']}, depth={args['depth']}, patch_size={args['patch_size']}"
        )
    ref = tuple(args.get("rope_ref_grid", ()))
    if ref and (len(ref) != 2 or min(ref) < 1):
        raise ValueError(f"rope_ref_grid must be two positive sides (h, w) or empty, got {ref!r}")
    RopeJitter(args.get("rope_rescale", 1.0), args.get("rope_jitter", 1.0), args.get("rope_shift", 0.0))
    if not 0.0 <= args["drop_path_rate"] < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {args['drop_path_rate']}")
    get_attention_backend(args["attn_backend"])  # unknown names raise with the registered list


__all__ = ["PRESETS", "CogViT", "CogViTBlock", "EmbeddedTokens", "EncoderOutput", "PackedLayout"]
