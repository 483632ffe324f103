"""Exporting a stage's modules when fit ends: one callback for every stage.

Stage 1 exports its student encoder, stage 2 its image and text towers, the VLM stage the VLM with
its MTP layers. Each export is a directory that loads back alone (``CogViT.from_pretrained``,
``ImageTower.from_pretrained``, ``HFTextTower.from_pretrained``, ``VisionLanguageModel.from_pretrained``).

The weights always come from the strategy's full state dict, which every rank helps gather (a
collective under FSDP), so an export is whole under sharded strategies too. Rank 0 then writes each
module: the live module itself where it holds whole weights (single device, DDP), otherwise the
:func:`empty_copy` of it taken when fit set up, before the strategy wrapped or sharded anything (the
same classes and settings, parameters on the meta device), with the gathered weights loaded into it
strictly. Any module exports this way, with nothing to declare beyond its ``save_pretrained`` (or,
for :class:`ExportVLM`, the stage's ``export``): an encoder, a tower, a whole stage with its VLM and
MTP heads.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn


class Export(pl.Callback):
    """Save modules of the stage, each to its own directory, when fit ends.

    Args:
        dirpath: the directory the exports are written under (moves with
            ``--trainer.default_root_dir``, like every output path of a recipe).
        modules: ``{attribute: subdirectory}``: a module of the stage by attribute path
            (``image_tower``; dots reach deeper, ``vlm.encoder``; ``""`` is the stage itself) and
            the directory under ``dirpath`` (``"."``: ``dirpath`` itself) that its
            ``save_pretrained(directory)`` writes.

    A module is exportable when it has ``save_pretrained``; that is checked when fit sets up, not
    after training. Under a sharding strategy (FSDP) what is written is the module's
    :func:`empty_copy`, taken then, filled with the gathered weights; nothing else is asked of it.
    """

    #: what :meth:`write` calls on each module
    method = "save_pretrained"

    def __init__(self, dirpath: str, modules: dict[str, str]) -> None:
        if not modules:
            raise ValueError("Export needs at least one {attribute: subdirectory} entry in modules")
        self.dirpath = dirpath
        self.modules = {attribute: Path(dirpath) / sub for attribute, sub in modules.items()}
        directories = [str(d) for d in self.modules.values()]
        twice = sorted({d for d in directories if directories.count(d) > 1})
        if twice:
            raise ValueError(f"Export: two modules would be written to the same directory {twice}")
        self._empty: dict[str, nn.Module] = {}

    # ------------------------------------------------------------------------------- hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Before the strategy wraps or shards the stage: check that every module can be exported
        and keep an :func:`empty_copy` of each, which takes the gathered weights if the live module
        holds only shards when fit ends."""
        if stage != "fit":
            return
        if getattr(trainer.strategy, "_state_dict_type", "full") != "full":
            raise ValueError(
                f"{type(self).__name__} gathers the strategy's full state dict; "
                f"{type(trainer.strategy).__name__}(state_dict_type={trainer.strategy._state_dict_type!r}) "
                "gives shards instead: set state_dict_type: full"
            )
        self._empty = {
            attribute: empty_copy(self._module(pl_module, attribute)) for attribute in self.modules
        }

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Gather the full weights on every rank, write each module on rank 0."""
        for attribute in self.modules:  # the same check on every rank, before the collective
            self._module(pl_module, attribute)
        state = trainer.strategy.lightning_module_state_dict()  # a collective under FSDP
        empty, self._empty = self._empty, {}
        if not trainer.is_global_zero:
            return
        for attribute, directory in self.modules.items():
            name = _name(pl_module, attribute)
            live = self._module(pl_module, attribute)
            module = whole_module(live, sub_state(state, attribute), empty.get(attribute), name)
            with torch.no_grad():
                path = self.write(module, directory, trainer)
            rank_zero_info(f"exported {name} to {Path(path).resolve()}")

    # ------------------------------------------------------------------------------- pieces
    def write(self, module: nn.Module, directory: Path, trainer: pl.Trainer) -> Path:
        """Write one module; returns the directory."""
        module.save_pretrained(directory)
        return directory

    def _module(self, pl_module: pl.LightningModule, attribute: str) -> nn.Module:
        module: Any = pl_module
        for part in attribute.split(".") if attribute else []:
            module = getattr(module, part, None)
        if not isinstance(module, nn.Module) or not callable(getattr(module, self.method, None)):
            raise AttributeError(
                f"{type(self).__name__}: {_name(pl_module, attribute)} is missing or has no "
                f"{self.method}() to export with (found {type(module).__name__}); fix the attribute "
                f"path or remove {type(self).__name__} from the recipe's callbacks (see docs/plugins.md)"
            )
        return module


class ExportEncoder(Export):
    """Save the stage's ``encoder`` alone (``config.json`` + ``model.safetensors``) when fit ends.

    Stage 2 and the VLM start from that directory with ``CogViT.from_pretrained(dirpath)``.

    Args:
        dirpath: the export directory.
        attribute: the stage's attribute holding the encoder.
    """

    def __init__(self, dirpath: str, attribute: str = "encoder") -> None:
        super().__init__(dirpath, {attribute: "."})
        self.attribute = attribute


class ExportVLM(Export):
    """Export the stage's VLM, its MTP layers and the data's processor with the stage's
    ``export(directory, processor=...)`` (:meth:`~glmkit.stages.vlm_pretrain.VLMPretrain.export`)
    when fit ends.

    Load it back with :func:`glmkit.inference.load_vlm` (``MTPCausalLM.from_pretrained(d)`` and
    ``VisionLanguageModel.from_pretrained(d, language_model=that.llm)``). Under FSDP the stage's
    :func:`empty_copy`, filled with the gathered weights, is what exports itself.

    Args:
        dirpath: the export directory.
    """

    method = "export"

    def __init__(self, dirpath: str) -> None:
        super().__init__(dirpath, {"": "."})

    def write(self, module: nn.Module, directory: Path, trainer: pl.Trainer) -> Path:
        """The stage's ``export`` with the datamodule's processor (tokenizer files) beside."""
        datamodule = getattr(trainer, "datamodule", None)
        processor = getattr(getattr(datamodule, "collate", None), "processor", None)
        return Path(module.export(directory, processor=processor))


# ------------------------------------------------------------------------------------ helpers
def sub_state(state: Mapping[str, Tensor], attribute: str) -> dict[str, Tensor]:
    """The entries of a stage's state dict under ``attribute``, with that prefix removed."""
    if not attribute:
        return dict(state)
    prefix = f"{attribute}."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def holds_whole_weights(module: nn.Module, state: Mapping[str, Tensor]) -> bool:
    """Whether ``module``'s own parameters and buffers are ``state``'s entries at full shape (not
    FSDP shards or flattened views); reads no state dict, so it starts no collective."""
    live = dict(module.named_parameters()) | dict(module.named_buffers())
    return bool(state) and all(k in live and live[k].shape == v.shape for k, v in state.items())


def empty_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module``'s tree whose parameters and persistent buffers are empty meta tensors.

    Each submodule is a shallow copy: the same class, its other attributes shared with the original
    (an LLM's config, a stage's settings), so the copy has every method of the original
    (``save_pretrained``, a stage's ``export``) and costs no memory. A module or tensor reached twice
    in the tree (tied weights, the rotary embedding MTP heads borrow from the LLM) is one object in
    the copy too. Non-persistent buffers (in no state dict: RoPE frequencies) keep the
    original's tensors. Fill it with ``load_state_dict(weights, strict=True, assign=True)``.
    """
    memo: dict[int, Any] = {}

    def empty(tensor: Tensor, parameter: bool) -> Tensor:
        if id(tensor) not in memo:
            meta = torch.empty_like(tensor, device="meta")
            memo[id(tensor)] = nn.Parameter(meta, tensor.requires_grad) if parameter else meta
        return memo[id(tensor)]

    def copy_tree(original: nn.Module) -> nn.Module:
        if id(original) in memo:
            return memo[id(original)]
        new = memo[id(original)] = copy.copy(original)
        table = vars(new)
        # Its own hook tables too, so that what the strategy later does to the original (wrapping
        # children, adding hooks, swapping parameters) leaves the copy as it was.
        for key, value in list(table.items()):
            if key.startswith("_") and isinstance(value, dict | set):
                table[key] = copy.copy(value)
        kept = original._non_persistent_buffers_set
        table["_parameters"] = {
            k: p if p is None else empty(p, True) for k, p in original._parameters.items()
        }
        table["_buffers"] = {
            k: b if b is None or k in kept else empty(b, False) for k, b in original._buffers.items()
        }
        table["_modules"] = {k: m if m is None else copy_tree(m) for k, m in original._modules.items()}
        return new

    return copy_tree(module)


def whole_module(
    module: nn.Module,
    state: Mapping[str, Tensor],
    empty: nn.Module | None = None,
    name: str = "module",
) -> nn.Module:
    """``module`` itself when it holds whole weights, else ``empty`` (its :func:`empty_copy`, taken
    before the strategy sharded it) with ``state`` (the gathered full weights) loaded strictly."""
    if not state:
        raise ValueError(f"the gathered state dict has no entries for {name}; is it part of the stage?")
    if holds_whole_weights(module, state):
        return module
    if empty is None:
        raise RuntimeError(
            f"{name} holds sharded weights but no empty copy of it was taken before the strategy "
            "sharded it (Export.setup does that when fit sets up)"
        )
    try:
        empty.load_state_dict({k: v.detach().cpu() for k, v in state.items()}, strict=True, assign=True)
    except RuntimeError as exc:
        raise RuntimeError(
            f"the gathered weights of {name} do not fit the copy of {type(module).__name__} taken when "
            f"fit set up (did the stage add or replace modules after that?): {exc}"
        ) from exc
    return empty


def _name(pl_module: nn.Module, attribute: str) -> str:
    return f"{type(pl_module).__name__}.{attribute}" if attribute else type(pl_module).__name__


__all__ = [
    "Export",
    "ExportEncoder",
    "ExportVLM",
    "empty_copy",
    "holds_whole_weights",
    "sub_state",
    "whole_module",
]
