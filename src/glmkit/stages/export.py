"""Exporting a stage's modules when fit ends: one callback for every stage.

Stage 1 exports its student encoder, stage 2 its image and text towers, the VLM stage the VLM with
its MTP layers. Each export is a directory that loads back alone (``CogViT.from_pretrained``,
``ImageTower.from_pretrained``, ``HFTextTower.from_pretrained``, ``VisionLanguageModel.from_pretrained``).

The weights always come from the strategy's full state dict, which every rank helps gather (a
collective under FSDP), so an export is whole under sharded strategies too. Rank 0 then writes each
module: the live module itself where it holds whole weights (single device, DDP), otherwise a copy
rebuilt from its ``init_args`` (nested modules as ``{class_path, init_args}`` specs, built by
:func:`glmkit.config.instantiate`) that takes the gathered weights strictly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from glmkit.models.zoo import class_path_of


class Export(pl.Callback):
    """Save modules of the stage, each to its own directory, when fit ends.

    Args:
        dirpath: the directory the exports are written under (moves with
            ``--trainer.default_root_dir``, like every output path of a recipe).
        modules: ``{attribute: subdirectory}``: a module of the stage by attribute path
            (``image_tower``; dots reach deeper, ``vlm.encoder``; ``""`` is the stage itself) and
            the directory under ``dirpath`` (``"."``: ``dirpath`` itself) that its
            ``save_pretrained(directory)`` writes.

    A module is exportable when it has ``save_pretrained``; under a sharding strategy (FSDP) it
    also needs ``init_args``, the JSON-able arguments that rebuild it (see ``docs/plugins.md``).
    Both are checked when fit starts, not after training.
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

    # ------------------------------------------------------------------------------- hooks
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Check before training, not after it, that every module can be exported."""
        sharded = _shards_weights(trainer.strategy)
        if getattr(trainer.strategy, "_state_dict_type", "full") != "full":
            raise ValueError(
                f"{type(self).__name__} gathers the strategy's full state dict; "
                f"{type(trainer.strategy).__name__}(state_dict_type={trainer.strategy._state_dict_type!r}) "
                "gives shards instead: set state_dict_type: full"
            )
        for attribute in self.modules:
            module = self._module(pl_module, attribute)
            if sharded and not hasattr(module, "init_args"):
                raise AttributeError(
                    f"{type(self).__name__}: {_name(pl_module, attribute)} ({type(module).__name__}) has "
                    f"no init_args, so it cannot be rebuilt whole from the gathered weights under "
                    f"{type(trainer.strategy).__name__}; train it with DDP or give it init_args"
                )

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Gather the full weights on every rank, write each module on rank 0."""
        for attribute in self.modules:  # the same check on every rank, before the collective
            self._module(pl_module, attribute)
        state = trainer.strategy.lightning_module_state_dict()  # a collective under FSDP
        if not trainer.is_global_zero:
            return
        for attribute, directory in self.modules.items():
            live = self._module(pl_module, attribute)
            module = whole_module(live, sub_state(state, attribute), _name(pl_module, attribute))
            with torch.no_grad():
                path = self.write(module, directory, trainer)
            rank_zero_info(f"exported {_name(pl_module, attribute)} to {Path(path).resolve()}")

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

    Load it back with ``MTPCausalLM.from_pretrained(d)`` and
    ``VisionLanguageModel.from_pretrained(d, language_model=that.llm)``.

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


def rebuild(module: nn.Module) -> nn.Module:
    """A new module of ``module``'s class and architecture, from its ``init_args`` (nested modules
    as ``{class_path, init_args}`` specs)."""
    from glmkit.config import instantiate

    init_args = getattr(module, "init_args", None)
    if not isinstance(init_args, Mapping):
        raise AttributeError(f"{type(module).__name__} has no init_args to rebuild it from")
    return instantiate({"class_path": class_path_of(module), "init_args": dict(init_args)})


def whole_module(module: nn.Module, state: Mapping[str, Tensor], name: str = "module") -> nn.Module:
    """``module`` itself when it holds whole weights, else a rebuilt copy loaded strictly with
    ``state`` (the gathered full weights)."""
    if not state:
        raise ValueError(f"the gathered state dict has no entries for {name}; is it part of the stage?")
    if holds_whole_weights(module, state):
        return module
    copy = rebuild(module)
    try:
        copy.load_state_dict({k: v.detach().cpu() for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        raise RuntimeError(
            f"the gathered weights of {name} do not fit {type(module).__name__} rebuilt from its "
            f"init_args: {exc}"
        ) from exc
    return copy


def _shards_weights(strategy: object) -> bool:
    from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy

    return isinstance(strategy, FSDPStrategy | DeepSpeedStrategy | ModelParallelStrategy)


def _name(pl_module: nn.Module, attribute: str) -> str:
    return f"{type(pl_module).__name__}.{attribute}" if attribute else type(pl_module).__name__


__all__ = [
    "Export",
    "ExportEncoder",
    "ExportVLM",
    "holds_whole_weights",
    "rebuild",
    "sub_state",
    "whole_module",
]
