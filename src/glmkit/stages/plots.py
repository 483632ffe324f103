"""Plotting a run's logged metrics to a PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info


class PlotMetrics(pl.Callback):
    """Plot logged metrics over steps to a PNG when fit ends (needs a ``CSVLogger``).

    One panel per pattern group: e.g. ``["*/loss", "*/cosine"]`` draws every loss curve in one
    panel and every cosine-similarity curve in another, train and validation together.
    """

    def __init__(self, path: str, panels: list[str] | None = None) -> None:
        self.path = path
        self.panels = panels or ["*loss", "*cosine"]

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Read the CSV logger's metrics of the whole run, resumed parts included, and draw them
        (rank 0 only)."""
        if not trainer.is_global_zero:
            return
        metrics_files = _csv_metrics_files(trainer)
        if not metrics_files:
            rank_zero_info("PlotMetrics: no CSVLogger metrics.csv found; nothing plotted")
            return
        plot_metrics_csv(metrics_files, self.path, self.panels)
        rank_zero_info(f"plotted metrics to {Path(self.path).resolve()}")


def _csv_metrics_files(trainer: pl.Trainer) -> list[Path]:
    """The ``metrics.csv`` files of this run, oldest first.

    Lightning gives every launch a new ``version_N``, so a run resumed with ``--ckpt_path`` logs its
    later steps in a new folder. Earlier versions are taken while each starts before the part
    already collected (a run from step 0 ends the chain; a later, unrelated run from scratch starts
    no earlier, so it is never mixed in).
    """
    from lightning.pytorch.loggers import CSVLogger

    logger = next((lg for lg in trainer.loggers if isinstance(lg, CSVLogger)), None)
    if logger is None:
        return []
    logger.save()
    current = Path(logger.log_dir) / "metrics.csv"
    files = [current] if current.is_file() else []
    start = _first_step(current) if files else None
    if start is None:  # nothing logged yet (e.g. a finished run resumed): it would start here
        start = trainer.global_step
    earlier = sorted(
        (p for p in Path(logger.root_dir).glob("version_*/metrics.csv") if p.parent != current.parent),
        key=lambda p: _version_number(p.parent.name),
        reverse=True,
    )
    for path in earlier:
        if _version_number(path.parent.name) > _version_number(current.parent.name):
            continue
        first = _first_step(path)
        if first is None or first >= start:
            break
        files.insert(0, path)
        start = first
    return files


def _version_number(name: str) -> int:
    suffix = name.rpartition("_")[2]
    return int(suffix) if suffix.isdigit() else -1


def _first_step(metrics_file: Path) -> int | None:
    import csv

    with open(metrics_file, newline="") as fh:
        steps = [int(row["step"]) for row in csv.DictReader(fh) if row.get("step") not in (None, "")]
    return min(steps) if steps else None


def read_metrics_csv(files: Sequence[str | Path]) -> tuple[list[dict[str, str]], list[str]]:
    """Rows and columns of Lightning ``metrics.csv`` files that are parts of one run, oldest first.

    Where a later part starts at or before a step an earlier part already logged (a run resumed
    from a checkpoint replays the steps after it), the later rows replace the earlier ones.
    """
    import csv

    rows: list[dict[str, str]] = []
    columns: list[str] = []
    for path in files:
        with open(path, newline="") as fh:
            part = [r for r in csv.DictReader(fh) if r.get("step") not in (None, "")]
        if part:
            start = min(int(r["step"]) for r in part)
            rows = [r for r in rows if int(r["step"]) < start] + part
            columns += [c for c in part[0] if c not in columns]
    return rows, columns


def plot_metrics_csv(
    metrics_file: str | Path | Sequence[str | Path], out_path: str | Path, panels: list[str]
) -> Path:
    """Draw the columns of Lightning ``metrics.csv`` files matching each pattern in ``panels``.

    Several files (the parts of a resumed run, oldest first) are drawn as one run: where they
    overlap, the later file's rows win, as the resumed run replayed those steps.
    """
    import fnmatch

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = [metrics_file] if isinstance(metrics_file, str | Path) else list(metrics_file)
    rows, columns = read_metrics_csv(files)
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
