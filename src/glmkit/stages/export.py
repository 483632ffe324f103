"""Exporting a stage's encoder when fit ends."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info
from torch import nn


class ExportEncoder(pl.Callback):
    """Save the stage's ``encoder`` alone (``config.json`` + ``model.safetensors``) when fit ends.

    Stage 2 and the VLM start from that directory with ``CogViT.from_pretrained(dirpath)``. The
    weights are taken from the strategy's full state dict, which every rank helps gather, so the
    export is whole under sharded strategies (FSDP) too; rank 0 rebuilds the encoder from its
    ``init_args``, loads them strictly and writes the directory.
    """

    def __init__(self, dirpath: str, attribute: str = "encoder") -> None:
        self.dirpath = dirpath
        self.attribute = attribute

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Check before training, not after it, that the encoder can be exported."""
        self._encoder(pl_module)

    def _encoder(self, pl_module: pl.LightningModule) -> nn.Module:
        encoder = getattr(pl_module, self.attribute, None)
        if encoder is None or not hasattr(encoder, "save_pretrained") or not hasattr(encoder, "init_args"):
            raise AttributeError(
                f"ExportEncoder: {type(pl_module).__name__}.{self.attribute} is missing or has no "
                "save_pretrained() / init_args to export with; remove ExportEncoder from the recipe's "
                "callbacks or give the encoder those two members (see docs/plugins.md)"
            )
        return encoder

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Gather the full weights on every rank, export on rank 0."""
        encoder = self._encoder(pl_module)
        state = trainer.strategy.lightning_module_state_dict()  # a collective under FSDP
        if not trainer.is_global_zero:
            return
        prefix = f"{self.attribute}."
        weights = {k[len(prefix) :]: v.detach().cpu() for k, v in state.items() if k.startswith(prefix)}
        export = type(encoder)(**encoder.init_args)
        export.load_state_dict(weights, strict=True)
        export.save_pretrained(self.dirpath)
        rank_zero_info(f"exported {self.attribute} to {Path(self.dirpath).resolve()}")
