"""The vision-language model: CogViT -> patch merger -> any transformers causal LM (GLM-4.5V / GLM-5V-Turbo).

GLM-5V-Turbo (arXiv 2604.26752, section 2.1-2.2) is built like GLM-4.5V: a vision encoder (CogViT),
a projector that merges each 2x2 block of patch tokens (and each pair of video frames) into one
LLM token, and a language model that reads the projected visual embeddings in place of the
``<|image|>`` placeholders of its input. :class:`VisionLanguageModel` assembles that from

* an encoder: a :class:`~glmkit.models.encoders.VisionEncoder` module, the directory or hub id of
  an export (``CogViT.save_pretrained`` / stage 1 or 2's ``ExportEncoder``), or a CogViT preset name;
* a projector: a registered name (``glm4v_merger``, ``mlp``; :mod:`glmkit.models.projectors`) or a
  module;
* any transformers causal LM: a module, a hub id or directory (``AutoModelForCausalLM``), or a
  config (a ``PretrainedConfig`` or a dict with ``model_type``) for a randomly initialised one.

Inputs come from :class:`~glmkit.models.vlm_processor.VLMProcessor`: token ids with the
placeholders, and NaFlex patches of every image and video frame (``patches``, ``coords``,
``grid_thw``, ``visual_batch_index``). Every frame is encoded on its own grid (frames are packed
into encoder rows with ``seq_lens``, each attending only to itself), the projector merges
neighbours on each item's own grid, and the visual embeddings are scattered into the LLM input at
the placeholder positions; a sample whose placeholder count differs from its visual tokens is an
error that names it, and text-only samples share the batch.

**MMTP hooks** (section 2.2; the MTP heads live in :mod:`glmkit.models.mtp`). Every VLM glmkit
trains with MTP is a :class:`MultimodalCausalLM`: :meth:`~MultimodalCausalLM.llm_inputs` returns
:class:`LLMInputs` (``inputs_embeds`` with the visual embeddings placed, the image-position mask,
the attention mask, position ids: M-RoPE ids ``[3, B, T]`` for GLM-V), and ``causal_lm``,
``decoder_layers`` and ``lm_head`` expose the language model. :class:`VisionLanguageModel` is one;
:class:`HFVisionLanguageAdapter` makes transformers' ``Glm4vForConditionalGeneration`` (and
Qwen2-VL / Qwen2.5-VL, which share its hooks) another, so MTP attaches to an open checkpoint too.
``causal_lm(inputs_embeds=..., attention_mask=..., position_ids=...)`` reproduces the VLM's logits.

**Training choices** are constructor arguments, so a recipe states them: peft LoRA on the LLM
(``llm_lora``) and on the encoder (``encoder_lora``), and freezing by parameter-name patterns
(``freeze``, ``unfreeze``).

**Checkpoints** (:meth:`VisionLanguageModel.save_pretrained`) use the transformers layout: the LLM's
``config.json`` and weights at the top level (``AutoModelForCausalLM.from_pretrained(directory)``
loads it in plain transformers), the encoder and projector as glmkit exports in ``vision_encoder/``
and ``projector/``, the VLM settings in ``vlm_config.json``, the tokenizer beside them.

**Chat** (:class:`VisionLanguageChat`): ``generate(question, images) -> str`` for eval's
``LocalVLMAdapter`` and ``chat(messages, tools) -> ChatCompletion`` for the agent's ``ChatModel``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import re
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from glmkit.models.encoders.cogvit import CogViT
from glmkit.models.mtp.checkpoint import load_language_model
from glmkit.models.projectors.base import PROJECTORS, Projector
from glmkit.models.zoo import class_path_of, glmkit_version, load_pretrained

if TYPE_CHECKING:
    from glmkit.agent.client import ChatCompletion

VLM_CONFIG_NAME = "vlm_config.json"
ENCODER_DIR = "vision_encoder"
PROJECTOR_DIR = "projector"
ADAPTERS_NAME = "lora_adapters.safetensors"
IGNORE_INDEX = -100


# ---------------------------------------------------------------------------------------- types
@dataclass
class LoRA:
    """peft LoRA settings (Hu et al. 2021, arXiv 2106.09685) for one module of the VLM.

    Attributes:
        r: rank of the update ``B A``.
        alpha: scaling numerator (the update is scaled by ``alpha / r``).
        dropout: dropout on the LoRA branch's input.
        target_modules: ``"all-linear"`` (every Linear of the LLM but its output head; of the
            encoder, every Linear inside its blocks), a list of module-name suffixes
            (``["q_proj", "v_proj"]``) or a regular expression matched against full names.
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"


@dataclass
class LLMInputs:
    """The language model's input with the visual embeddings placed (what MMTP heads read too).

    Attributes:
        inputs_embeds: ``[B, T, D]`` token embeddings, visual embeddings at image positions.
        image_mask: ``[B, T]`` bool, True at image (and video frame) positions.
        attention_mask: ``[B, T]`` padding mask (1 = token) or None.
        position_ids: ``[B, T]`` (1-D RoPE), ``[3, B, T]`` (GLM-V / Qwen-VL M-RoPE) or None (the
            LLM's default ``0..T-1``).
        input_ids: ``[B, T]`` token ids, placeholders kept (MTP option 3 reads them).
    """

    inputs_embeds: Tensor
    image_mask: Tensor
    attention_mask: Tensor | None
    position_ids: Tensor | None
    input_ids: Tensor

    def llm_kwargs(self) -> dict[str, Any]:
        """Keyword arguments that feed these inputs to a transformers causal LM."""
        return {
            "inputs_embeds": self.inputs_embeds,
            "attention_mask": self.attention_mask,
            "position_ids": self.position_ids,
        }


@dataclass
class VLMOutput:
    """Result of :meth:`VisionLanguageModel.forward`.

    Attributes:
        logits: ``[B, T, V]``; position ``i`` predicts token ``i + 1``.
        loss: next-token cross-entropy when ``labels`` were given (image targets and padding masked).
        hidden_states: the LLM's hidden states when asked for (``output_hidden_states=True``; the
            last entry is after the final norm).
        inputs: the :class:`LLMInputs` the LLM read.
    """

    logits: Tensor
    loss: Tensor | None
    hidden_states: tuple[Tensor, ...] | None
    inputs: LLMInputs


@runtime_checkable
class MultimodalCausalLM(Protocol):
    """A VLM seen the way MMTP (GLM-5V-Turbo section 2.2) needs it.

    * ``image_token_id``: the placeholder id whose positions hold visual embeddings;
    * ``causal_lm``: the transformers causal LM; ``causal_lm(**inputs.llm_kwargs())`` gives the
      VLM's logits (``MTPCausalLM`` wraps it);
    * ``decoder_layers``: its decoder layers (the MTP block copies their type);
    * ``lm_head``: its output head (shared with the MTP heads);
    * ``llm_inputs(input_ids, **batch) -> LLMInputs``: the LLM input of a processor batch.
    """

    image_token_id: int

    @property
    def causal_lm(self) -> nn.Module:
        """The transformers causal LM that reads :class:`LLMInputs`."""
        ...

    @property
    def decoder_layers(self) -> nn.ModuleList:
        """The LLM's decoder layers."""
        ...

    @property
    def lm_head(self) -> nn.Module:
        """The LLM's output head."""
        ...

    def llm_inputs(self, input_ids: Tensor, **batch: Any) -> LLMInputs:
        """The LLM input of one batch, visual embeddings placed."""
        ...


class _CausalLMParts:
    """``decoder_layers`` and ``lm_head`` of a :class:`MultimodalCausalLM`, found through its
    ``causal_lm`` with transformers' own accessors; a subclass says which module ``causal_lm`` is."""

    @property
    def causal_lm(self) -> nn.Module:
        """The transformers causal LM."""
        raise NotImplementedError

    @property
    def decoder_layers(self) -> nn.ModuleList:
        """The LLM's decoder layers (``causal_lm.get_decoder().layers``; for GLM-V,
        ``model.language_model.layers``)."""
        return self.causal_lm.get_decoder().layers

    @property
    def lm_head(self) -> nn.Module:
        """The LLM's output head (``causal_lm.get_output_embeddings()``)."""
        return self.causal_lm.get_output_embeddings()


# ---------------------------------------------------------------------------------------- building
def build_encoder(spec: nn.Module | str | Path) -> nn.Module:
    """A vision encoder from a module, an export directory, a CogViT preset name or a hub id."""
    if isinstance(spec, nn.Module):
        return spec
    text = str(spec)
    if Path(text).expanduser().is_dir():
        return load_pretrained(Path(text).expanduser())
    if text in CogViT.PRESETS:
        return CogViT.preset(text)
    if "/" in text:
        return load_pretrained(text)
    raise ValueError(
        f"encoder {text!r} is neither an export directory, a CogViT preset ({', '.join(CogViT.PRESETS)}) "
        "nor a hub id of the form 'org/name'"
    )


def build_language_model(
    spec: nn.Module | str | Path | Mapping[str, Any] | Any, dtype: str | None = None
) -> nn.Module:
    """A transformers causal LM from a module, a hub id or directory, or a config (random weights).

    A config is a ``PretrainedConfig`` or a dict with ``model_type`` (``{"model_type": "llama",
    "hidden_size": 64, ...}``); ``dtype`` (``"bfloat16"``, ...) applies to hub ids and directories.
    The MTP layers an export of ``MTPCausalLM`` carries are left out without being reported as
    unexpected keys (:func:`glmkit.models.mtp.checkpoint.load_language_model`).
    """
    if isinstance(spec, nn.Module):
        return spec
    from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

    if isinstance(spec, Mapping):
        args = dict(spec)
        if "model_type" not in args:
            raise ValueError(
                f"a language_model config dict needs 'model_type' (e.g. 'llama', 'qwen2', 'glm4'); got keys {sorted(args)}"
            )
        spec = AutoConfig.for_model(args.pop("model_type"), **args)
    if isinstance(spec, PretrainedConfig):
        return AutoModelForCausalLM.from_config(spec)
    kwargs = {"dtype": getattr(torch, dtype)} if dtype else {}
    return load_language_model(spec, **kwargs)


def build_projector(
    spec: nn.Module | str, in_dim: int, out_dim: int, args: Mapping[str, Any] | None = None
) -> Projector:
    """A projector from a module or a registered name (built with ``in_dim``, ``out_dim`` and ``args``)."""
    if isinstance(spec, str):
        spec = PROJECTORS.get(spec)(in_dim, out_dim, **dict(args or {}))
    elif args:
        raise ValueError("projector_args only apply to a projector given by name")
    if not isinstance(spec, Projector):
        raise TypeError(
            f"projector must be a glmkit Projector (registry 'projectors'), got {type(spec).__name__}"
        )
    if spec.in_dim != in_dim or spec.out_dim != out_dim:
        raise ValueError(
            f"projector maps {spec.in_dim} -> {spec.out_dim} but the encoder width is {in_dim} and the "
            f"LLM hidden size {out_dim}"
        )
    return spec


def _lora_layers(module: nn.Module) -> dict[str, nn.Module]:
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in module.named_modules() if isinstance(m, LoraLayer)}


def inject_lora(module: nn.Module, lora: LoRA, *, blocks_only: bool = False) -> nn.Module:
    """Add LoRA adapters to ``module`` in place (peft ``inject_adapter_in_model``); only they train in it.

    The module keeps its class and module names (a LoRA Linear holds the original as
    ``base_layer``), so transformers methods and the MTP heads' layer lookups still work.
    ``blocks_only`` resolves ``"all-linear"`` to the Linears inside ``module.blocks`` (the encoder).
    """
    from peft import LoraConfig, inject_adapter_in_model

    targets: str | list[str] = lora.target_modules
    if targets == "all-linear" and blocks_only:
        names = [n for n, m in module.named_modules() if isinstance(m, nn.Linear) and n.startswith("blocks.")]
        if not names:
            raise ValueError(f"{type(module).__name__} has no Linear layers under 'blocks' for LoRA")
        targets = "(" + "|".join(re.escape(n) for n in names) + ")"
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets)
    inject_adapter_in_model(config, module)
    if not _lora_layers(module):
        raise ValueError(
            f"LoRA target_modules={lora.target_modules!r} matched no layer of {type(module).__name__}"
        )
    return module


def lora_free_state_dict(module: nn.Module, merge: bool = True) -> dict[str, Tensor]:
    """``module``'s state dict under its original names, LoRA removed (``merge``: folded into the weights)."""
    state = {}
    for key, value in module.state_dict().items():
        if ".lora_" in key:
            continue
        state[key.replace(".base_layer.", ".")] = value
    if merge:
        for name, layer in _lora_layers(module).items():
            key = f"{name}.weight"
            state[key] = state[key] + layer.get_delta_weight("default").to(state[key].dtype)
    return state


def _as_lora(value: LoRA | Mapping[str, Any] | None) -> LoRA | None:
    if value is None or isinstance(value, LoRA):
        return value
    try:
        return LoRA(**dict(value))
    except TypeError as exc:
        valid = ", ".join(f.name for f in dataclasses.fields(LoRA))
        raise TypeError(f"LoRA settings {dict(value)!r} do not fit (valid keys: {valid}): {exc}") from None


def _sample_name(b: int, sample_ids: Sequence[Any] | None) -> str:
    if sample_ids is not None and b < len(sample_ids):
        return f"sample {b} ({sample_ids[b]!r})"
    return f"sample {b}"


# ---------------------------------------------------------------------------------------- the model
def set_trainable(module: nn.Module, patterns: Sequence[str], trainable: bool) -> None:
    """Set ``requires_grad`` of ``module``'s parameters matching ``patterns``: a module path
    (``"encoder"``, ``"encoder.blocks.0"``: it and everything under it) or an ``fnmatch`` pattern
    (``"projector.*"``). A pattern that matches no parameter raises ``ValueError`` naming the
    top-level names there are."""
    params = dict(module.named_parameters())
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            hits = [n for n in params if fnmatch.fnmatchcase(n, pattern)]
        else:
            hits = [n for n in params if n == pattern or n.startswith(pattern.rstrip(".") + ".")]
        if not hits:
            tops = sorted({n.split(".")[0] for n in params})
            raise ValueError(
                f"{'unfreeze' if trainable else 'freeze'} pattern {pattern!r} matches no parameter; "
                f"names start with {', '.join(tops)} (a module path such as 'encoder.blocks.0', or an "
                "fnmatch pattern such as 'projector.*')"
            )
        for name in hits:
            params[name].requires_grad_(trainable)


class VisionLanguageModel(_CausalLMParts, nn.Module):
    """Encoder -> projector -> causal LM, with visual embeddings at the ``<|image|>`` placeholders.

    Args:
        encoder: a vision encoder module, an export directory or hub id, or a CogViT preset name
            (see :func:`build_encoder`). It must take packed NaFlex input (``seq_lens``), as CogViT does.
        language_model: a transformers causal LM, a hub id / directory, or a config
            (:func:`build_language_model`).
        image_token_id: id of ``<|image|>`` (``VLMProcessor.model_kwargs()`` gives it).
        projector: a registered projector name or a :class:`Projector` (dims must match).
        projector_args: extra arguments of a projector given by name (``merge_size``,
            ``temporal_patch_size``, ``hidden_features``, ...).
        vocab_size: grow the LLM's embeddings to this many rows when it has fewer (the processor
            adds special tokens; ``len(tokenizer)``).
        encoder_row_len: patches per packed encoder row; frames are packed in order and a longer
            frame gets a row of its own.
        llm_lora: LoRA on the LLM (only the adapters train in it), or None.
        encoder_lora: LoRA on the encoder's blocks, or None.
        freeze: parameter-name patterns to freeze: a module path (``"encoder"``,
            ``"language_model.model.embed_tokens"``) or an ``fnmatch`` glob
            (``"encoder.blocks.[0-5].*"``). A pattern that matches nothing is an error.
        unfreeze: patterns made trainable after ``freeze`` and LoRA (e.g. ``"language_model.lm_head"``).
        llm_dtype: dtype of an LLM loaded by hub id or directory (``"bfloat16"``); None keeps its default.
        recompute_encoder: keep only the encoder's input and output for backward and run it again
            there (``torch.utils.checkpoint`` around the whole encoder call; GLM-5V-Turbo section
            2.4's ViT recomputation). Unlike CogViT's ``grad_checkpointing`` (each block's input
            kept), nothing of the encoder stays; it works for any encoder. Same gradients.
        offload_visual_activations: move what backward needs from the encoder and projector to
            CPU memory (``torch.autograd.graph.save_on_cpu``) and back when it runs (section 2.4's
            CPU offload); pinned memory on CUDA. Same gradients.
    """

    def __init__(
        self,
        encoder: nn.Module | str,
        language_model: nn.Module | str | dict[str, Any],
        image_token_id: int,
        projector: nn.Module | str = "glm4v_merger",
        projector_args: dict[str, Any] | None = None,
        vocab_size: int | None = None,
        encoder_row_len: int = 4096,
        llm_lora: LoRA | dict[str, Any] | None = None,
        encoder_lora: LoRA | dict[str, Any] | None = None,
        freeze: Sequence[str] = (),
        unfreeze: Sequence[str] = (),
        llm_dtype: str | None = None,
        recompute_encoder: bool = False,
        offload_visual_activations: bool = False,
    ) -> None:
        super().__init__()
        self.recompute_encoder = bool(recompute_encoder)
        self.offload_visual_activations = bool(offload_visual_activations)
        self.encoder = build_encoder(encoder)
        self.language_model = build_language_model(language_model, llm_dtype)
        embeddings = self.language_model.get_input_embeddings()
        if vocab_size is not None and vocab_size > embeddings.num_embeddings:
            self.language_model.resize_token_embeddings(vocab_size)
            embeddings = self.language_model.get_input_embeddings()
        if not 0 <= image_token_id < embeddings.num_embeddings:
            raise ValueError(
                f"image_token_id={image_token_id} is outside the LLM's {embeddings.num_embeddings} embeddings; "
                "pass vocab_size=len(tokenizer) after the processor added its special tokens"
            )
        if encoder_row_len < 1:
            raise ValueError(f"encoder_row_len must be >= 1, got {encoder_row_len}")
        self.image_token_id = int(image_token_id)
        self.encoder_row_len = int(encoder_row_len)
        self.projector = build_projector(
            projector, self.encoder.embed_dim, embeddings.embedding_dim, projector_args
        )
        self.llm_lora = _as_lora(llm_lora)
        self.encoder_lora = _as_lora(encoder_lora)
        self.freeze_patterns = list(freeze)
        self.unfreeze_patterns = list(unfreeze)
        if self.llm_lora is not None:
            inject_lora(self.language_model, self.llm_lora)
        if self.encoder_lora is not None:
            inject_lora(self.encoder, self.encoder_lora, blocks_only=True)
        set_trainable(self, self.freeze_patterns, False)
        set_trainable(self, self.unfreeze_patterns, True)
        for name, lora in (("language_model", self.llm_lora), ("encoder", self.encoder_lora)):
            module = getattr(self, name)
            if lora is not None and not any(
                p.requires_grad for n, p in module.named_parameters() if ".lora_" in n
            ):
                raise ValueError(
                    f"{name} has LoRA adapters but freeze={self.freeze_patterns} freezes all of them; "
                    f"freeze patterns that spare '{name}.*lora_*' or drop the LoRA setting"
                )

    # ------------------------------------------------------------------ MultimodalCausalLM
    @property
    def causal_lm(self) -> nn.Module:
        """The transformers causal LM (``language_model``)."""
        return self.language_model

    def trainable_summary(self) -> dict[str, tuple[int, int]]:
        """``{module: (trainable parameters, all parameters)}`` for encoder, projector and LLM."""
        out = {}
        for name in ("encoder", "projector", "language_model"):
            params = list(getattr(self, name).parameters())
            out[name] = (sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))
        return out

    # ------------------------------------------------------------------ vision
    def encode_visual(self, patches: Tensor, coords: Tensor, grid_thw: Tensor) -> Tensor:
        """Visual embeddings ``[M, D_llm]`` of every item, back to back (each item's merged tokens in order).

        Args:
            patches: ``[N, P*P*C]`` patches of every frame of every item, back to back.
            coords: ``[N, 2]`` (y, x) of each patch in its frame's grid (any order within a frame).
            grid_thw: ``[I, 3]`` (frames, rows, columns) of each item.
        """
        grid = grid_thw.long().cpu()
        if grid.ndim != 2 or grid.shape[1] != 3:
            raise ValueError(f"grid_thw must be [I, 3] (t, h, w), got {list(grid_thw.shape)}")
        self.projector.check_grids(grid)
        frame_len = torch.repeat_interleave(grid[:, 1] * grid[:, 2], grid[:, 0])  # F
        frame_item = torch.repeat_interleave(torch.arange(grid.shape[0]), grid[:, 0])  # F
        total = int(frame_len.sum())
        if patches.ndim != 2 or patches.shape[0] != total or coords.shape != (total, 2):
            raise ValueError(
                f"grid_thw {grid.tolist()} describes {total} patches (sum of t*h*w), got patches "
                f"{list(patches.shape)} and coords {list(coords.shape)}"
            )
        frame_start = torch.cumsum(frame_len, 0) - frame_len  # F: first patch of each frame in patches
        order = self._canonical_order(coords.long().cpu(), grid, frame_len, frame_item, frame_start)  # N
        device = next(self.encoder.parameters()).device
        dtype = next(self.encoder.parameters()).dtype
        # Pack the frames in order into rows of encoder_row_len patches (a longer frame: its own row).
        lengths = frame_len.tolist()
        frame_row, frame_pos, rows = [], [], [[]]
        used = 0
        for n in lengths:
            if rows[-1] and used + n > self.encoder_row_len:
                rows.append([])
                used = 0
            frame_row.append(len(rows) - 1)
            frame_pos.append(used)
            rows[-1].append(n)
            used += n
        row_len = max(sum(r) for r in rows)
        seq_lens = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long)
        for r, row in enumerate(rows):
            seq_lens[r, : len(row)] = torch.tensor(row)
        offset_in_frame = torch.arange(total) - torch.repeat_interleave(frame_start, frame_len)  # N
        patch_row = torch.repeat_interleave(torch.tensor(frame_row), frame_len).to(device)  # N
        patch_pos = (torch.repeat_interleave(torch.tensor(frame_pos), frame_len) + offset_in_frame).to(device)
        packed = patches.new_zeros(len(rows), row_len, patches.shape[1], dtype=dtype, device=device)
        packed[patch_row, patch_pos] = patches.to(device=device, dtype=dtype)  # R, L, P*P*C
        packed_coords = torch.zeros(len(rows), row_len, 2, dtype=torch.long, device=device)
        packed_coords[patch_row, patch_pos] = coords.to(device=device, dtype=torch.long)
        seq_lens = seq_lens.to(device)
        offload = self.offload_visual_activations and torch.is_grad_enabled()
        with torch.autograd.graph.save_on_cpu(pin_memory=device.type == "cuda") if offload else nullcontext():
            if self.recompute_encoder and torch.is_grad_enabled():
                patch_tokens = checkpoint(
                    self._patch_tokens, packed, packed_coords, seq_lens, use_reentrant=False
                )
            else:
                patch_tokens = self._patch_tokens(packed, packed_coords, seq_lens)
            tokens = patch_tokens[patch_row, patch_pos]  # N, D in the input order
            return self.projector(tokens[order.to(device)], grid.to(device))  # M, D_llm

    def _patch_tokens(self, patches: Tensor, coords: Tensor, seq_lens: Tensor) -> Tensor:
        """The encoder's patch tokens ``[R, L, D]`` of packed rows (a function of tensors, for checkpointing)."""
        return self.encoder(patches=patches, coords=coords, seq_lens=seq_lens).patch_tokens

    @staticmethod
    def _canonical_order(
        coords: Tensor, grid: Tensor, frame_len: Tensor, frame_item: Tensor, frame_start: Tensor
    ) -> Tensor:
        """Permutation putting each frame's patches in row-major (y, x) order; checks the coords cover each grid."""
        h = torch.repeat_interleave(grid[frame_item, 1], frame_len)  # N
        w = torch.repeat_interleave(grid[frame_item, 2], frame_len)
        y, x = coords.unbind(-1)
        inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        key = torch.repeat_interleave(frame_start, frame_len) + y * w + x  # N: target slot
        counts = torch.bincount(key.clamp(0, max(key.numel() - 1, 0)), minlength=key.numel())
        if not bool(inside.all()) or not bool((counts == 1).all()):
            patch_frame = torch.repeat_interleave(torch.arange(frame_len.numel()), frame_len)
            bad_slots = (counts != 1).nonzero().flatten()
            bad = (~inside).nonzero().flatten()
            frame = (
                int(patch_frame[bad[0]])
                if bad.numel()
                else int(torch.searchsorted(frame_start, bad_slots[0], right=True) - 1)
            )
            item = int(frame_item[frame])
            raise ValueError(
                f"visual item {item}: the coords of its frame {frame} do not cover its "
                f"{int(grid[item, 1])}x{int(grid[item, 2])} grid exactly once (each (y, x) with "
                "0 <= y < h, 0 <= x < w, once per frame)"
            )
        return torch.argsort(key)

    # ------------------------------------------------------------------ LLM input
    def llm_inputs(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        patches: Tensor | None = None,
        coords: Tensor | None = None,
        grid_thw: Tensor | None = None,
        visual_batch_index: Tensor | None = None,
        sample_ids: Sequence[Any] | None = None,
        **_: Any,
    ) -> LLMInputs:
        """Token embeddings with the visual embeddings scattered in at the ``<|image|>`` positions.

        Arguments are the processor's output (other keys are ignored); ``sample_ids`` name the
        samples in errors. Each sample's placeholders must equal its items' merged visual tokens.
        """
        embeds = self.language_model.get_input_embeddings()(input_ids)  # B, T, D
        image_mask = input_ids == self.image_token_id  # B, T
        placeholders = image_mask.sum(dim=1).cpu()  # B
        if grid_thw is None or patches is None or coords is None:
            if bool(placeholders.any()):
                b = int(placeholders.nonzero()[0])
                raise ValueError(
                    f"{_sample_name(b, sample_ids)} has {int(placeholders[b])} <|image|> placeholders but the "
                    "batch has no images or videos (patches, coords, grid_thw)"
                )
        else:
            grid = grid_thw.long().cpu()
            self._check_counts(
                placeholders, self.projector.num_tokens(grid), visual_batch_index, sample_ids, grid
            )
            visual = self.encode_visual(patches, coords, grid)  # M, D
            embeds = embeds.masked_scatter(image_mask[..., None], visual.to(embeds.dtype))
        position_ids = None
        if attention_mask is not None and attention_mask.dim() == 2:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # left padding shifts them
        return LLMInputs(embeds, image_mask, attention_mask, position_ids, input_ids)

    @staticmethod
    def _check_counts(
        placeholders: Tensor,
        tokens_per_item: Tensor,
        visual_batch_index: Tensor | None,
        sample_ids: Sequence[Any] | None,
        grid: Tensor,
    ) -> None:
        """Each sample's placeholder count must equal its items' visual tokens; the error names the sample."""
        batch = placeholders.shape[0]
        if visual_batch_index is not None:
            owners = visual_batch_index.long().cpu()
            if owners.shape != tokens_per_item.shape or (owners < 0).any() or (owners >= batch).any():
                raise ValueError(
                    f"visual_batch_index {owners.tolist()} must name a sample in 0..{batch - 1} for each of the "
                    f"{tokens_per_item.numel()} items"
                )
            if (owners[1:] < owners[:-1]).any():
                raise ValueError(f"visual_batch_index {owners.tolist()} must list the items in sample order")
            per_sample = torch.zeros(batch, dtype=torch.long).index_add_(0, owners, tokens_per_item)
            for b in range(batch):
                if int(per_sample[b]) != int(placeholders[b]):
                    items = (owners == b).nonzero().flatten().tolist()
                    raise ValueError(
                        f"{_sample_name(b, sample_ids)}: {int(placeholders[b])} <|image|> placeholders but its "
                        f"{len(items)} image/video item(s) {items} (grids t,h,w {grid[items].tolist()}) give "
                        f"{int(per_sample[b])} visual tokens; was the text truncated or built for another "
                        "patch or merge size?"
                    )
            return
        if int(placeholders.sum()) == int(tokens_per_item.sum()):
            return
        # Without visual_batch_index the items go to the samples in order; name the first that does not add up.
        item = 0
        for b in range(batch):
            got = 0
            while got < int(placeholders[b]) and item < tokens_per_item.numel():
                got += int(tokens_per_item[item])
                item += 1
            if got != int(placeholders[b]):
                break
        raise ValueError(
            f"{_sample_name(b, sample_ids)}: its {int(placeholders[b])} <|image|> placeholders do not match the "
            f"visual tokens of the items in order (batch: {int(placeholders.sum())} placeholders, "
            f"{int(tokens_per_item.sum())} visual tokens from {tokens_per_item.tolist()})"
        )

    # ------------------------------------------------------------------ forward and generate
    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        patches: Tensor | None = None,
        coords: Tensor | None = None,
        grid_thw: Tensor | None = None,
        visual_batch_index: Tensor | None = None,
        labels: Tensor | None = None,
        sample_ids: Sequence[Any] | None = None,
        **llm_kwargs: Any,
    ) -> VLMOutput:
        """Logits (and the next-token loss with ``labels``) for a processor batch.

        ``labels [B, T]`` are unshifted token targets (transformers convention; -100 ignored);
        targets at image positions and padding are ignored, so the first text token after an
        image keeps its target. ``llm_kwargs`` go to the LLM (``output_hidden_states=True``, ...).
        """
        inputs = self.llm_inputs(
            input_ids, attention_mask, patches, coords, grid_thw, visual_batch_index, sample_ids
        )
        if labels is not None:
            labels = labels.masked_fill(inputs.image_mask, IGNORE_INDEX)
            if attention_mask is not None:
                labels = labels.masked_fill(attention_mask == 0, IGNORE_INDEX)
        out = self.language_model(**inputs.llm_kwargs(), labels=labels, **llm_kwargs)
        return VLMOutput(out.logits, out.loss, getattr(out, "hidden_states", None), inputs)

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        patches: Tensor | None = None,
        coords: Tensor | None = None,
        grid_thw: Tensor | None = None,
        visual_batch_index: Tensor | None = None,
        **generate_kwargs: Any,
    ) -> Tensor:
        """transformers ``generate`` from a processor batch; returns the prompt ids followed by the new ones.

        The prompt's embeddings (visual embeddings placed) feed the first step; new tokens are text.
        """
        inputs = self.llm_inputs(input_ids, attention_mask, patches, coords, grid_thw, visual_batch_index)
        return self.language_model.generate(
            input_ids=input_ids,
            inputs_embeds=inputs.inputs_embeds,
            attention_mask=attention_mask,
            **generate_kwargs,
        )

    # ------------------------------------------------------------------ save and load
    def vlm_config(self, lora_merged: bool) -> dict[str, Any]:
        """The settings ``vlm_config.json`` records."""
        return {
            "class_path": class_path_of(self),
            "glmkit_version": glmkit_version(),
            "image_token_id": self.image_token_id,
            "encoder_row_len": self.encoder_row_len,
            "llm_lora": dataclasses.asdict(self.llm_lora) if self.llm_lora else None,
            "encoder_lora": dataclasses.asdict(self.encoder_lora) if self.encoder_lora else None,
            "lora_merged": lora_merged,
            "freeze": self.freeze_patterns,
            "unfreeze": self.unfreeze_patterns,
            "recompute_encoder": self.recompute_encoder,
            "offload_visual_activations": self.offload_visual_activations,
        }

    def save_pretrained(
        self,
        directory: str | Path,
        *,
        merge_lora: bool = True,
        processor: Any = None,
        save_language_model: bool = True,
        **llm_save_kwargs: Any,
    ) -> Path:
        """Write the VLM in the transformers layout (see the module docstring).

        Args:
            directory: created if missing.
            merge_lora: fold LoRA updates into the saved weights (plain transformers then loads the
                fine-tuned LLM; :meth:`from_pretrained` adds fresh adapters). False saves the base
                weights and the adapters (``lora_adapters.safetensors``) for an exact round trip.
            processor: a :class:`~glmkit.models.vlm_processor.VLMProcessor` saved beside (tokenizer files).
            save_language_model: False leaves the LLM part to the caller (e.g.
                ``MTPCausalLM.save_pretrained`` writes it with its MTP layers).
            llm_save_kwargs: passed to the LLM's ``save_pretrained`` (``safe_serialization``, ...).
        """
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        has_lora = self.llm_lora is not None or self.encoder_lora is not None
        if save_language_model:
            state = lora_free_state_dict(self.language_model, merge=merge_lora)
            self.language_model.save_pretrained(str(directory), state_dict=state, **llm_save_kwargs)
        self._export_encoder(directory / ENCODER_DIR, merge_lora)
        self.projector.save_pretrained(directory / PROJECTOR_DIR)
        if has_lora and not merge_lora:
            adapters = {
                f"{prefix}.{key}": value.detach().contiguous()
                for prefix, module in (("language_model", self.language_model), ("encoder", self.encoder))
                for key, value in module.state_dict().items()
                if ".lora_" in key
            }
            save_file(adapters, str(directory / ADAPTERS_NAME))
        config = self.vlm_config(lora_merged=merge_lora or not has_lora)
        (directory / VLM_CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        if processor is not None:
            processor.save_pretrained(directory)
        return directory

    def _export_encoder(self, directory: Path, merge_lora: bool) -> None:
        if not hasattr(self.encoder, "init_args"):
            raise TypeError(
                f"{type(self.encoder).__name__} has no init_args; the VLM can only save encoders that "
                "export themselves (glmkit.models.zoo), as CogViT does"
            )
        if self.encoder_lora is None:
            self.encoder.save_pretrained(directory)
            return
        # A LoRA-free copy built on the meta device takes the merged (or base) weights without copying them.
        with torch.device("meta"):
            clean = type(self.encoder)(**self.encoder.init_args)
        clean.load_state_dict(lora_free_state_dict(self.encoder, merge=merge_lora), strict=True, assign=True)
        clean.save_pretrained(directory)

    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str | Path,
        *,
        language_model: nn.Module | None = None,
        llm_dtype: str | None = None,
        **overrides: Any,
    ) -> VisionLanguageModel:
        """Load what :meth:`save_pretrained` wrote, from a directory or a hub id.

        Args:
            path_or_hub_id: the directory (or ``org/name`` on the hub).
            language_model: an LLM already loaded from the directory (e.g. ``MTPCausalLM.from_pretrained(d).llm``).
            llm_dtype: dtype to load the LLM in.
            overrides: constructor arguments replacing the recorded ones (``freeze``, ``llm_lora``, ...).
        """
        directory = _resolve_directory(path_or_hub_id)
        path = directory / VLM_CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found; {directory} was not written by VisionLanguageModel.save_pretrained"
            )
        config = json.loads(path.read_text())
        merged = bool(config.pop("lora_merged", True))
        for key in ("class_path", "glmkit_version"):
            config.pop(key, None)
        encoder = load_pretrained(directory / ENCODER_DIR)
        projector = load_pretrained(directory / PROJECTOR_DIR, expected_class=Projector)
        llm = (
            language_model if language_model is not None else build_language_model(str(directory), llm_dtype)
        )
        model = cls(encoder=encoder, language_model=llm, projector=projector, **{**config, **overrides})
        adapters = directory / ADAPTERS_NAME
        if not merged and adapters.is_file():
            model._load_adapters(adapters)
        return model

    def _load_adapters(self, path: Path) -> None:
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        own = {n: p for n, p in self.state_dict(keep_vars=True).items() if ".lora_" in n}
        missing = sorted(set(own) - set(tensors))
        unexpected = sorted(set(tensors) - set(own))
        if missing or unexpected:
            raise RuntimeError(
                f"{path} does not match this model's LoRA adapters: missing {missing[:5]}, unexpected "
                f"{unexpected[:5]} (were the LoRA settings overridden?)"
            )
        with torch.no_grad():
            for name, value in tensors.items():
                own[name].copy_(value)


def _resolve_directory(path_or_hub_id: str | Path) -> Path:
    local = Path(path_or_hub_id).expanduser()
    if local.is_dir():
        return local
    text = str(path_or_hub_id)
    if re.match(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$", text):
        from huggingface_hub import snapshot_download  # network only on this path

        try:
            return Path(snapshot_download(text))
        except Exception as exc:
            raise OSError(
                f"could not download VLM {text!r} from the hub (no local directory {local} either): {exc}"
            ) from exc
    raise FileNotFoundError(f"VLM directory {local} does not exist (and {text!r} is not a hub id 'org/name')")


# ---------------------------------------------------------------------------------------- HF VLMs
class HFVisionLanguageAdapter(_CausalLMParts):
    """A transformers VLM (``Glm4vForConditionalGeneration``, ``Glm4vMoe``, Qwen2-VL, Qwen2.5-VL) as a :class:`MultimodalCausalLM`.

    :meth:`llm_inputs` runs the model's own hooks in the order its ``forward`` does:
    ``get_image_features`` / ``get_video_features``, ``get_placeholder_mask`` and
    ``masked_scatter``, then ``get_rope_index`` for the 3-D M-RoPE position ids (GLM-4.5V:
    ``mrope_section``; each video frame its own temporal index). ``causal_lm`` is the model itself:
    called with ``inputs_embeds`` and those ``position_ids`` it reproduces its logits.

    Args:
        model: the ``*ForConditionalGeneration`` model.
    """

    def __init__(self, model: nn.Module) -> None:
        inner = getattr(model, "model", None)
        missing = [
            name
            for name in ("get_image_features", "get_placeholder_mask", "get_rope_index")
            if not callable(getattr(inner, name, None))
        ]
        if missing:
            raise TypeError(
                f"{type(model).__name__} lacks the transformers VLM hooks {missing} on .model; expected a "
                "Glm4v / Qwen2-VL style *ForConditionalGeneration"
            )
        self.model = model
        config = model.config
        self.image_token_id = int(config.image_token_id)
        self.video_token_id = getattr(config, "video_token_id", None)
        self.video_start_token_id = getattr(config, "video_start_token_id", None)
        self.video_end_token_id = getattr(config, "video_end_token_id", None)

    @property
    def causal_lm(self) -> nn.Module:
        """The model itself (it takes ``inputs_embeds`` and M-RoPE ``position_ids``)."""
        return self.model

    def token_types(self, input_ids: Tensor) -> Tensor:
        """``mm_token_type_ids [B, T]``: 0 text, 1 image, 2 video (GLM-V writes video frames with the image token)."""
        types = torch.zeros_like(input_ids, dtype=torch.int)
        is_image = input_ids == self.image_token_id
        in_video = torch.zeros_like(is_image)
        if self.video_start_token_id is not None and self.video_end_token_id is not None:
            starts = (input_ids == self.video_start_token_id).cumsum(-1)
            ends = (input_ids == self.video_end_token_id).cumsum(-1)
            in_video = starts > ends
        types[is_image & ~in_video] = 1
        types[is_image & in_video] = 2
        if self.video_token_id is not None:
            types[input_ids == self.video_token_id] = 2
        return types

    def llm_inputs(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        pixel_values: Tensor | None = None,
        image_grid_thw: Tensor | None = None,
        pixel_values_videos: Tensor | None = None,
        video_grid_thw: Tensor | None = None,
        mm_token_type_ids: Tensor | None = None,
        **rope_kwargs: Any,
    ) -> LLMInputs:
        """The model's LLM input for a batch of its own processor (``rope_kwargs``: e.g. Qwen2.5-VL's ``second_per_grid_ts``)."""
        inner = self.model.model
        embeds = self.model.get_input_embeddings()(input_ids)
        if mm_token_type_ids is None:
            mm_token_type_ids = self.token_types(input_ids)
        # Positions by modality from the token types (GLM-V writes video frames with the image token,
        # so its own get_placeholder_mask cannot tell them apart in a batch holding both).
        for kind, name, pixels, grid, features_of in (
            (1, "image", pixel_values, image_grid_thw, inner.get_image_features),
            (2, "video", pixel_values_videos, video_grid_thw, getattr(inner, "get_video_features", None)),
        ):
            if pixels is None:
                continue
            features = _pooled(features_of(pixels, grid)).to(embeds.device, embeds.dtype)  # M, D
            mask = mm_token_type_ids == kind  # B, T
            if int(mask.sum()) != features.shape[0]:
                raise ValueError(
                    f"{int(mask.sum())} {name} placeholders (per sample: {mask.sum(dim=1).tolist()}) but the "
                    f"{name}s give {features.shape[0]} visual tokens (grids {grid.tolist()})"
                )
            embeds = embeds.masked_scatter(mask[..., None], features)
        visual_mask = (mm_token_type_ids == 1) | (mm_token_type_ids == 2)
        position_ids, _ = inner.get_rope_index(
            input_ids,
            mm_token_type_ids=mm_token_type_ids,
            image_grid_thw=image_grid_thw,
            video_grid_thw=video_grid_thw,
            attention_mask=attention_mask,
            **rope_kwargs,
        )
        return LLMInputs(embeds, visual_mask, attention_mask, position_ids, input_ids)


def _pooled(output: Any) -> Tensor:
    """The merged visual embeddings ``[M, D]`` of a transformers ``get_*_features`` result."""
    pooled = getattr(output, "pooler_output", output)
    if isinstance(pooled, list | tuple):
        pooled = torch.cat(list(pooled), dim=0)
    return pooled


def as_multimodal_lm(model: nn.Module) -> MultimodalCausalLM:
    """``model`` itself when it is a :class:`MultimodalCausalLM` (glmkit's VLM), else an :class:`HFVisionLanguageAdapter`."""
    if isinstance(model, VisionLanguageModel):
        return model
    return HFVisionLanguageAdapter(model)


# ---------------------------------------------------------------------------------------- chat
class VisionLanguageChat:
    """A :class:`VisionLanguageModel` and its processor answering questions and chats.

    Serves eval's local protocol (``generate(question, images) -> str``, so
    ``LocalVLMAdapter(VisionLanguageChat(...))`` works) and the agent's ``ChatModel`` protocol
    (``tool_format`` and ``chat(messages, tools) -> ChatCompletion``). Images stay pixels: canonical
    image refs and ``image_url`` parts become the model's visual input. Tools are announced in the
    system prompt in a text format (``glm45`` by default, GLM-4.5's XML calls) and parsed by the
    agent loop.

    Args:
        model: the VLM (anything with ``generate(**processor_batch, **generate_kwargs)``).
        processor: its :class:`~glmkit.models.vlm_processor.VLMProcessor`.
        tool_format: a text tool-call format name or instance (``glm45``, ``hermes``).
        max_new_tokens: reply length limit (``finish_reason="length"`` when reached).
        generation_kwargs: extra ``generate`` arguments (default greedy: ``do_sample=False``).
        observation_role: ``"tool"`` keeps ``role: tool`` results, which the GLM-V template renders
            as ``<|observation|>`` turns (as GLM-4.5V was trained); ``"user"`` sends them as
            ``<tool_response>`` user turns. Assistant ``tool_calls`` are written as text in
            ``tool_format``.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        tool_format: Any = "glm45",
        max_new_tokens: int = 256,
        generation_kwargs: dict[str, Any] | None = None,
        observation_role: Literal["tool", "user"] = "tool",
    ) -> None:
        # agent/ sits above models/ in glmkit's layers: its formats are imported only when chatting.
        from glmkit.agent.formats import get_tool_call_format

        if observation_role not in ("tool", "user"):
            raise ValueError(f"observation_role must be 'tool' or 'user', got {observation_role!r}")
        self.tool_format = get_tool_call_format(tool_format)
        if self.tool_format.native:
            raise ValueError(
                f"VisionLanguageChat needs a text tool-call format (glm45, hermes), got {self.tool_format.name!r}"
            )
        self.model = model
        self.processor = processor
        self.max_new_tokens = max_new_tokens
        self.generation_kwargs = {"do_sample": False, **(generation_kwargs or {})}
        self.observation_role = observation_role

    def prepare(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """The history as the template renders it: tools in the system prompt, calls and results as text."""
        from glmkit.agent.formats import openai_tool_schemas

        return self.tool_format.prepare_messages(
            messages, openai_tool_schemas(tools), observation_role=self.observation_role, native_calls="text"
        )

    def render_prompt(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
        """The exact prompt text :meth:`chat` generates from."""
        return self.processor.apply_chat_template(self.prepare(messages, tools), add_generation_prompt=True)

    def _generate_ids(self, messages: list[dict[str, Any]]) -> tuple[list[int], int, str]:
        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        images, videos = self.processor.extract_media(messages)
        batch = self.processor([prompt], images=[images], videos=[videos])
        device = next(self.model.parameters()).device if isinstance(self.model, nn.Module) else None
        if device is not None:
            batch = batch.to(device)
        tokenizer = self.processor.tokenizer
        stop_ids = self.processor.stop_token_ids()
        output = self.model.generate(
            **batch,
            max_new_tokens=self.max_new_tokens,
            eos_token_id=stop_ids,
            pad_token_id=tokenizer.pad_token_id,
            **self.generation_kwargs,
        )
        prompt_len = int(batch["input_ids"].shape[1])
        new_ids = output[0, prompt_len:].tolist()
        stop_at = next((i for i, t in enumerate(new_ids) if t in stop_ids), None)
        if stop_at is not None:
            new_ids = new_ids[: stop_at + 1]
        return new_ids, prompt_len, prompt

    def _reply_text(self, new_ids: list[int]) -> tuple[str, bool]:
        """The reply without its stop token, special tokens kept (``<|begin_of_box|>``, ``<tool_call>``)."""
        stopped = bool(new_ids) and new_ids[-1] in set(self.processor.stop_token_ids())
        text_ids = new_ids[:-1] if stopped else new_ids
        return self.processor.tokenizer.decode(text_ids, skip_special_tokens=False), stopped

    def chat(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> ChatCompletion:
        """One assistant turn; it stops at EOS, ``<|user|>`` or ``<|observation|>`` or after ``max_new_tokens``."""
        from glmkit.agent.client import ChatCompletion

        new_ids, prompt_len, prompt = self._generate_ids(self.prepare(messages, tools))
        text, stopped = self._reply_text(new_ids)
        finish = "stop" if stopped or len(new_ids) < self.max_new_tokens else "length"
        usage = {
            "prompt_tokens": prompt_len,
            "completion_tokens": len(new_ids),
            "total_tokens": prompt_len + len(new_ids),
        }
        return ChatCompletion(
            message={"role": "assistant", "content": text},
            finish_reason=finish,
            usage=usage,
            raw={"prompt": prompt},
        )

    def generate(self, question: str, images: Sequence[Any] = ()) -> str:
        """Eval's local protocol: the answer to ``question`` about ``images`` (images first, then the text)."""
        content: list[dict[str, Any]] = [{"type": "image", "image": image} for image in images]
        content.append({"type": "text", "text": question})
        new_ids, _, _ = self._generate_ids([{"role": "user", "content": content}])
        return self._reply_text(new_ids)[0]

    __call__ = generate


__all__ = [
    "ADAPTERS_NAME",
    "ENCODER_DIR",
    "PROJECTOR_DIR",
    "VLM_CONFIG_NAME",
    "HFVisionLanguageAdapter",
    "LLMInputs",
    "LoRA",
    "MultimodalCausalLM",
    "VLMOutput",
    "VisionLanguageChat",
    "VisionLanguageModel",
    "as_multimodal_lm",
    "build_encoder",
    "build_language_model",
    "build_projector",
    "inject_lora",
    "lora_free_state_dict",
    "set_trainable",
]
