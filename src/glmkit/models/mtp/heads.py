"""DeepSeek-V3-style multi-token prediction (MTP) modules on any transformers causal LM.

DeepSeek-V3 (arXiv 2412.19437, section 2.2, eq. 21-23) adds D sequential modules after the main
model. Module ``k`` at position ``i`` combines the previous depth's hidden state ``h_i^{k-1}``
(``h^0``: the main model's output after its final norm) with the embedding of token ``t_{i+k}``,

    h'_i^k = M_k [RMSNorm(Emb(t_{i+k})); RMSNorm(h_i^{k-1})]        (eh_proj: 2D -> D, no bias)
    h^k_{1:T-k} = TRM_k(h'^k_{1:T-k})                               (one decoder block)
    P^k_{i+k+1} = OutHead(h_i^k)                                    (own RMSNorm, shared lm_head)

and predicts ``t_{i+k+1}``. As in every public implementation (vLLM, SGLang, Megatron,
transformers), the embedding comes *first* in the concatenation (the reverse of the paper's
equation); ``eh_proj``'s weight layout depends on it. The block is the LLM's own decoder-layer
class built from its config, and runs at position ``i``'s position ids (multimodal RoPE ids for
GLM-V) with the LLM's own rotary embedding. The next depth reads the block output ``h^k`` before
the output norm (``shared_head.norm``), as vLLM's ``DeepSeekMultiTokenPredictor`` does.

GLM-5V-Turbo (section 2.2) trains these modules on a VLM (MMTP); what the head reads at image
positions is a strategy from :mod:`glmkit.models.mtp.image_inputs`. The VLM passes its LLM input
(``inputs_embeds``, visual embeddings scattered in) and the image-position mask; nothing here
needs a vision encoder.

Registry ``mtp_heads`` (base :class:`MTPHeads`): ``deepseek_v3`` (:class:`MTPHeads`).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from glmkit.losses.mtp import sequence_ids as make_sequence_ids
from glmkit.losses.mtp import shift_left
from glmkit.models.mtp.image_inputs import MTPImageInput, build_image_input
from glmkit.registry import declare


@dataclass(frozen=True)
class DecoderParts:
    """The pieces of a transformers causal LM that MTP modules reuse or copy."""

    #: the decoder stack (``LlamaModel``, ``Glm4vTextModel``, ...) holding ``layers``
    text_model: nn.Module
    #: its module path inside the LLM (``"model"``, ``"model.language_model"``): checkpoint key prefix
    path: str
    #: the decoder's config (``config.get_text_config(decoder=True)``)
    config: Any
    #: class of one decoder layer, built as ``layer_cls(config, layer_idx)``
    layer_cls: type[nn.Module]
    #: class of the decoder's final norm, built as ``norm_cls(hidden_size, eps=...)``
    norm_cls: type[nn.Module]
    #: the decoder's rotary embedding (``rotary_emb(x, position_ids) -> (cos, sin)``), if any
    rotary_emb: nn.Module | None


def decoder_parts(llm: nn.Module) -> DecoderParts:
    """Find the decoder stack of ``llm`` (``get_decoder()``, ``.model`` or ``.model.language_model``)."""
    candidates = []
    if hasattr(llm, "get_decoder"):
        with contextlib.suppress(AttributeError, NotImplementedError):
            candidates.append(llm.get_decoder())
    inner = getattr(llm, "model", None)
    candidates += [inner, getattr(inner, "language_model", None)]
    text_model = next((m for m in candidates if isinstance(getattr(m, "layers", None), nn.ModuleList)), None)
    if text_model is None or len(text_model.layers) == 0:
        raise TypeError(
            f"{type(llm).__name__}: cannot find its decoder layers (looked for get_decoder().layers, "
            f".model.layers and .model.language_model.layers); MTP heads need a transformers causal LM"
        )
    path = next(name for name, module in llm.named_modules() if module is text_model)
    config = getattr(text_model, "config", None)
    config = llm.config if config is None else config
    if hasattr(config, "get_text_config"):
        config = config.get_text_config(decoder=True)
    norm = getattr(text_model, "norm", None)
    return DecoderParts(
        text_model=text_model,
        path=path,
        config=config,
        layer_cls=type(text_model.layers[-1]),
        norm_cls=type(norm) if isinstance(norm, nn.Module) else nn.RMSNorm,
        rotary_emb=getattr(text_model, "rotary_emb", None),
    )


def mtp_block_config(text_config: Any) -> Any:
    """A copy of the decoder config for building one MTP block as layer 0 of a one-layer stack.

    Index-based fields are replaced so that ``layer_cls(block_config, 0)`` builds the right kind of
    layer: ``layer_types`` / ``mlp_layer_types`` become their ``mtp_*`` values or the main model's
    last entry, and ``first_k_dense_replace`` becomes 0 (DeepSeek's MTP blocks are MoE blocks),
    as transformers' ``PreTrainedConfig.get_mtp_config`` does. Each depth is its own block, with its
    own KV cache when drafting, so index 0 never collides.
    """
    config = copy.deepcopy(text_config)
    for name in ("layer_types", "mlp_layer_types"):
        types = getattr(config, name, None)
        if isinstance(types, (list, tuple)) and types:
            mtp_types = getattr(config, f"mtp_{name}", None)
            setattr(config, name, [mtp_types[0] if mtp_types else types[-1]])
    config.num_hidden_layers = 1
    if hasattr(config, "first_k_dense_replace"):
        config.first_k_dense_replace = 0
    return config


def cache_kwargs(fn: Any, cache: Any) -> dict[str, Any]:
    """``{"cache": cache}`` or ``{"past_key_values": cache}``, whichever ``fn`` takes (transformers 5.x renamed it)."""
    params = inspect.signature(fn).parameters
    return {"cache": cache} if "cache" in params else {"past_key_values": cache}


def _mask_function(layer_type: str | None) -> Any:
    """transformers' mask builder for a layer type (causal for full attention, windowed for sliding, ...)."""
    from transformers import masking_utils

    mapping = getattr(masking_utils, "LAYER_PATTERN_TO_MASK_FUNCTION_MAPPING", {})
    fn = mapping.get(layer_type, masking_utils.create_causal_mask)
    if isinstance(fn, dict):
        raise NotImplementedError(
            f"MTP blocks of layer type {layer_type!r} (hybrid attention) are not supported; "
            "set mtp_layer_types in the LLM config to an attention layer type"
        )
    return fn


class SharedHead(nn.Module):
    """DeepSeek's ``shared_head`` minus the head: the MTP depth's own output norm.

    The head itself is the LLM's ``lm_head`` (shared, DeepSeek-V3 eq. 23); only ``norm`` belongs to
    the depth, so checkpoints name it ``model.layers.{i}.shared_head.norm.weight``.
    """

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, hidden: Tensor) -> Tensor:
        """``norm(hidden)``, ready for the shared ``lm_head``."""
        return self.norm(hidden)


class MTPLayer(nn.Module):
    """One MTP depth: ``enorm``, ``hnorm``, ``eh_proj``, a decoder ``block`` and ``shared_head.norm``.

    Args:
        block_config: the decoder config for one block (:func:`mtp_block_config`).
        layer_cls: the LLM's decoder-layer class.
        norm_cls: the LLM's RMSNorm class (``torch.nn.RMSNorm`` if it has none).
    """

    def __init__(self, block_config: Any, layer_cls: type[nn.Module], norm_cls: type[nn.Module]) -> None:
        super().__init__()
        hidden = block_config.hidden_size
        eps = getattr(block_config, "rms_norm_eps", 1e-6)
        self.enorm = _norm(norm_cls, hidden, eps)
        self.hnorm = _norm(norm_cls, hidden, eps)
        self.eh_proj = nn.Linear(2 * hidden, hidden, bias=False)
        self.block = layer_cls(block_config, 0)
        self.shared_head = SharedHead(_norm(norm_cls, hidden, eps))
        self._cache_key = (
            "cache" if "cache" in inspect.signature(self.block.forward).parameters else "past_key_values"
        )

    def forward(
        self,
        hidden: Tensor,
        token_embeds: Tensor,
        *,
        position_embeddings: tuple[Tensor, Tensor] | None,
        attention_mask: Tensor | None,
        position_ids: Tensor | None,
        cache: Any = None,
    ) -> Tensor:
        """``h^k [B, t, D]`` from ``h^{k-1} [B, t, D]`` and the embeddings of ``t_{i+k}`` ``[B, t, D]``.

        ``cache`` (a transformers ``Cache``) holds this depth's keys and values when drafting.
        """
        x = self.eh_proj(torch.cat([self.enorm(token_embeds), self.hnorm(hidden)], dim=-1))  # B, t, 2D -> D
        out = self.block(
            x,
            attention_mask=attention_mask,
            position_ids=position_ids,
            position_embeddings=position_embeddings,
            use_cache=cache is not None,
            **{self._cache_key: cache},
        )
        return out[0] if isinstance(out, tuple) else out


def _norm(norm_cls: type[nn.Module], hidden: int, eps: float) -> nn.Module:
    try:
        return norm_cls(hidden, eps=eps)
    except TypeError:  # a norm class with another signature: fall back to PyTorch's RMSNorm
        return nn.RMSNorm(hidden, eps=eps)


class MTPHeads(nn.Module):
    """D sequential MTP modules for a transformers causal LM (DeepSeek-V3 section 2.2).

    Built from ``llm``'s config and decoder-layer class; initialised with ``llm``'s own weight
    initialisation, on its device and dtype. The LLM's embedding and ``lm_head`` are *not* held
    here (the caller passes token embeddings in and applies the head to the outputs), so a model
    holding both the LLM and its heads stores every weight once. The rotary embedding is shared by
    reference (it has no persistent state).

    Args:
        llm: the causal LM (``AutoModelForCausalLM``; a VLM whose language model has ``layers``).
        depths: ``D``, the number of sequential modules (DeepSeek-V3 uses 1).
        image_input: what the head reads at image positions: a name registered in
            ``mtp_image_inputs`` (``visual``, ``mask``, ``image_token``) or an instance.
    """

    def __init__(
        self, llm: nn.Module, depths: int = 1, image_input: str | MTPImageInput = "image_token"
    ) -> None:
        super().__init__()
        if not isinstance(depths, int) or depths < 1:
            raise ValueError(f"depths (D, the number of MTP modules) must be an int >= 1, got {depths!r}")
        parts = decoder_parts(llm)
        self.num_hidden_layers = int(parts.config.num_hidden_layers)
        self.hidden_size = int(parts.config.hidden_size)
        self.block_config = mtp_block_config(parts.config)
        layer_types = getattr(self.block_config, "layer_types", None)
        self.layer_type: str | None = layer_types[0] if layer_types else None
        self._mask_fn = _mask_function(self.layer_type)
        self._mask_cache_key = next(iter(cache_kwargs(self._mask_fn, None)))
        self.layers = nn.ModuleList(
            [MTPLayer(self.block_config, parts.layer_cls, parts.norm_cls) for _ in range(depths)]
        )
        init = getattr(llm, "_init_weights", None)
        if callable(init):
            for module in self.layers.modules():
                init(module)
        self.image_input = build_image_input(image_input, self.hidden_size)
        self.rotary_emb = parts.rotary_emb
        reference = next(iter(llm.parameters()), None)
        if reference is not None:
            self.layers.to(device=reference.device, dtype=reference.dtype)
            self.image_input.to(device=reference.device, dtype=reference.dtype)

    @property
    def depths(self) -> int:
        """``D``, the number of MTP modules."""
        return len(self.layers)

    def token_inputs(self, inputs_embeds: Tensor, image_mask: Tensor | None = None) -> Tensor:
        """The token embeddings the heads read ``[B, T, D]``: ``inputs_embeds`` with image positions filled."""
        if image_mask is None:
            return inputs_embeds
        return self.image_input(inputs_embeds, image_mask.to(device=inputs_embeds.device, dtype=torch.bool))

    def position_embeddings(self, hidden: Tensor, position_ids: Tensor) -> tuple[Tensor, Tensor] | None:
        """The LLM's rotary ``(cos, sin)`` for ``position_ids`` ([B, t] or multimodal [A, B, t])."""
        return None if self.rotary_emb is None else self.rotary_emb(hidden, position_ids)

    def attention_mask(
        self, hidden: Tensor, attention_mask: Tensor | None, position_ids: Tensor | None, cache: Any = None
    ) -> Any:
        """The block's attention mask, built as the main model builds its own (transformers masking utils).

        A 2-D padding mask or ``None`` (with restarting 2-D position ids marking packed sequences)
        becomes the causal mask of the block's layer type; a prepared 4-D mask passes through.
        """
        mask_positions = position_ids if position_ids is not None and position_ids.dim() == 2 else None
        return self._mask_fn(
            config=self.block_config,
            inputs_embeds=hidden,
            attention_mask=attention_mask,
            position_ids=mask_positions,
            **{self._mask_cache_key: cache},
        )

    def forward(
        self,
        hidden_states: Tensor,
        inputs_embeds: Tensor,
        *,
        image_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        sequence_ids: Tensor | None = None,
    ) -> list[Tensor]:
        """Per-depth output hidden states ``[B, T, D]`` (after ``shared_head.norm``), depth 1 first.

        Args:
            hidden_states: the main model's output after its final norm ``[B, T, D]`` (``h^0``).
            inputs_embeds: the LLM's input ``[B, T, D]`` (token embeddings; visual embeddings at
                image positions).
            image_mask: ``[B, T]`` True at image positions (filled by the ``image_input`` strategy).
            position_ids: the main model's ``[B, T]`` (or multimodal ``[A, B, T]``) position ids;
                default ``0 .. T-1`` per row.
            attention_mask: the main model's ``[B, T]`` padding mask or prepared 4-D mask.
            sequence_ids: ``[B, T]`` packed-sequence ids (:func:`glmkit.losses.mtp.sequence_ids`);
                by default from ``position_ids`` and ``attention_mask``. Token inputs never cross
                a sequence boundary.

        Position ``i`` of depth ``k``'s output predicts ``t_{i+k+1}``; apply the LLM's ``lm_head``.
        """
        if hidden_states.dim() != 3 or hidden_states.shape[-1] != self.hidden_size:
            raise ValueError(
                f"hidden_states must be [B, T, {self.hidden_size}], got {tuple(hidden_states.shape)}"
            )
        if inputs_embeds.shape != hidden_states.shape:
            raise ValueError(
                f"inputs_embeds must match hidden_states {tuple(hidden_states.shape)}, got {tuple(inputs_embeds.shape)}"
            )
        batch, length, _ = hidden_states.shape
        if position_ids is None:
            position_ids = torch.arange(length, device=hidden_states.device).expand(batch, length)
        if sequence_ids is None:
            padding = attention_mask if attention_mask is not None and attention_mask.dim() == 2 else None
            sequence_ids = make_sequence_ids(
                batch, length, position_ids=position_ids, attention_mask=padding, device=hidden_states.device
            )
        tokens = self.token_inputs(inputs_embeds, image_mask)
        rope = self.position_embeddings(hidden_states, position_ids)
        mask = self.attention_mask(hidden_states, attention_mask, position_ids)
        outputs = []
        hidden = hidden_states
        for k, layer in enumerate(self.layers, start=1):
            shifted, _ = shift_left(tokens, k, sequence_ids)  # Emb(t_{i+k}) at position i
            hidden = layer(
                hidden, shifted, position_embeddings=rope, attention_mask=mask, position_ids=position_ids
            )
            outputs.append(layer.shared_head(hidden))
        return outputs

    def step(
        self, depth: int, hidden: Tensor, token_embeds: Tensor, position_ids: Tensor, cache: Any
    ) -> tuple[Tensor, Tensor]:
        """Run depth ``depth`` (1-based) on new positions with its KV ``cache``; for drafting.

        ``hidden [B, t, D]`` is ``h^{depth-1}`` and ``token_embeds [B, t, D]`` the (already shifted)
        token inputs at those positions; ``position_ids`` are theirs. Returns ``(h^depth, normed)``:
        the hidden state the next depth reads and the one ``lm_head`` reads.
        """
        if not 1 <= depth <= self.depths:
            raise ValueError(f"depth must be in 1..{self.depths}, got {depth}")
        layer = self.layers[depth - 1]
        rope = self.position_embeddings(hidden, position_ids)
        mask = self.attention_mask(hidden, None, position_ids, cache)
        out = layer(
            hidden,
            token_embeds,
            position_embeddings=rope,
            attention_mask=mask,
            position_ids=position_ids,
            cache=cache,
        )
        return out, layer.shared_head(out)


MTP_HEADS = declare("mtp_heads", "multi-token prediction heads on a causal LM", base=MTPHeads)
MTP_HEADS.add("deepseek_v3", MTPHeads)


__all__ = [
    "MTP_HEADS",
    "DecoderParts",
    "MTPHeads",
    "MTPLayer",
    "SharedHead",
    "cache_kwargs",
    "decoder_parts",
    "mtp_block_config",
]
