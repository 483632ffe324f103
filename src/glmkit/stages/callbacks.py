"""Callbacks shared by the stages."""

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


class PlotMetrics(pl.Callback):
    """Plot logged metrics over steps to a PNG when fit ends (needs a ``CSVLogger``).

    One panel per pattern group: e.g. ``["*/loss", "*/cosine"]`` draws every loss curve in one
    panel and every cosine-similarity curve in another, train and validation together.
    """

    def __init__(self, path: str, panels: list[str] | None = None) -> None:
        self.path = path
        self.panels = panels or ["*loss", "*cosine"]

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Read the CSV logger's metrics file and draw it (rank 0 only)."""
        if not trainer.is_global_zero:
            return
        metrics_file = _csv_metrics_file(trainer)
        if metrics_file is None:
            rank_zero_info("PlotMetrics: no CSVLogger metrics.csv found; nothing plotted")
            return
        plot_metrics_csv(metrics_file, self.path, self.panels)
        rank_zero_info(f"plotted metrics to {Path(self.path).resolve()}")


def _csv_metrics_file(trainer: pl.Trainer) -> Path | None:
    from lightning.pytorch.loggers import CSVLogger

    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger):
            logger.save()
            path = Path(logger.log_dir) / "metrics.csv"
            return path if path.is_file() else None
    return None


def plot_metrics_csv(metrics_file: str | Path, out_path: str | Path, panels: list[str]) -> Path:
    """Draw the columns of a Lightning ``metrics.csv`` matching each pattern in ``panels``."""
    import csv
    import fnmatch

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics_file, newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = list(rows[0]) if rows else []
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), squeeze=False)
    for ax, pattern in zip(axes[0], panels, strict=True):
        for column in sorted(c for c in columns if fnmatch.fnmatch(c, pattern)):
            points = [(int(r["step"]), float(r[column])) for r in rows if r.get(column) not in (None, "")]
            if points:
                steps, values = zip(*points, strict=True)
                ax.plot(steps, values, marker="o" if column.startswith("val/") else None, ms=3, label=column)
        ax.set_title(pattern)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
