"""PlotMetrics: the parts of a resumed run are drawn as one run."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

from lightning.pytorch.loggers import CSVLogger

from glmkit.stages.plots import _csv_metrics_files, plot_metrics_csv, read_metrics_csv


def _write(path: Path, steps: range, loss: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["epoch", "step", "train/loss"])
        writer.writeheader()
        writer.writerows({"epoch": 0, "step": s, "train/loss": loss + s} for s in steps)
    return path


def _trainer(root: Path, version: int, global_step: int) -> SimpleNamespace:
    """A trainer as PlotMetrics sees it; its logger's folder is created (and emptied) first, as in a run."""
    logger = CSVLogger(root, name="logs", version=version)
    logger.experiment  # noqa: B018 - creating the experiment clears the version folder, as a launch does
    return SimpleNamespace(loggers=[logger], global_step=global_step)


def test_a_resumed_run_is_read_from_every_version_it_logged_in(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    _write(logs / "version_0" / "metrics.csv", range(0, 10), 100.0)  # an unrelated earlier run
    first = _write(logs / "version_1" / "metrics.csv", range(0, 8), 0.0)  # crashed after step 7
    trainer = _trainer(tmp_path, 2, 12)
    resumed = _write(logs / "version_2" / "metrics.csv", range(5, 12), 0.5)  # resumed at step 5
    files = _csv_metrics_files(trainer)
    assert files == [first, resumed]  # version_0 starts no earlier than version_1: another run
    rows, columns = read_metrics_csv(files)
    assert [int(r["step"]) for r in rows] == list(range(12))
    assert [float(r["train/loss"]) for r in rows[4:6]] == [4.0, 5.5]  # the replayed steps win
    assert columns == ["epoch", "step", "train/loss"]
    out = plot_metrics_csv(files, tmp_path / "metrics.png", ["*loss"])
    assert out.stat().st_size > 0


def test_a_finished_run_resumed_again_still_plots_its_history(tmp_path: Path) -> None:
    logged = _write(tmp_path / "logs" / "version_0" / "metrics.csv", range(0, 6), 0.0)
    # the resumed launch logged nothing (its max_steps was already reached) and starts at step 6
    assert _csv_metrics_files(_trainer(tmp_path, 1, 6)) == [logged]
    # a fresh run (step 0) never pulls in earlier versions
    trainer = _trainer(tmp_path, 2, 3)
    fresh = _write(tmp_path / "logs" / "version_2" / "metrics.csv", range(0, 3), 0.0)
    assert _csv_metrics_files(trainer) == [fresh]
