"""Tiny stage-1 recipes derived from the quickstart, for fast end-to-end tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "recipes" / "quickstart" / "stage1_tiny.yaml"


def tiny_recipe(
    run_dir: Path, *, max_steps: int, image_size: int = 64, batch_size: int = 4, **trainer_args: Any
) -> dict[str, Any]:
    """The quickstart recipe shrunk to 64 px images and a few steps, writing under ``run_dir``;
    ``trainer_args`` are extra Trainer arguments (``accumulate_grad_batches``, ``precision``, ...)."""
    cfg = copy.deepcopy(yaml.safe_load(QUICKSTART.read_text()))
    trainer = cfg["trainer"]
    trainer.update(
        max_steps=max_steps,
        val_check_interval=None,
        limit_val_batches=0,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(run_dir),
        **trainer_args,
    )
    trainer["logger"]["init_args"]["save_dir"] = str(run_dir)
    callbacks = {c["class_path"].rsplit(".", 1)[-1]: c["init_args"] for c in trainer["callbacks"]}
    callbacks["ModelCheckpoint"].update(dirpath=str(run_dir / "checkpoints"), every_n_train_steps=max_steps)
    callbacks["ExportEncoder"]["dirpath"] = str(run_dir / "encoder")
    callbacks["PlotMetrics"]["path"] = str(run_dir / "metrics.png")
    for teacher in cfg["model"]["init_args"]["teachers"].values():
        teacher["init_args"]["image_size"] = image_size
    data = cfg["data"]["init_args"]
    data.update(batch_size=batch_size, samples_per_epoch=64, val_samples=0)
    data["transform"]["init_args"]["image_size"] = image_size
    data["val_transform"]["init_args"]["image_size"] = image_size
    for source in data["sources"].values():
        source["init_args"]["image_size"] = image_size
    return cfg


def write_recipe(path: Path, cfg: dict[str, Any]) -> Path:
    """Dump ``cfg`` as YAML to ``path``."""
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture
def recipe_factory(tmp_path: Path):
    """``make(name, max_steps=..., **overrides) -> (recipe path, run dir)``."""

    def make(name: str, **kwargs: Any) -> tuple[Path, Path]:
        run_dir = tmp_path / name
        run_dir.mkdir()
        return write_recipe(tmp_path / f"{name}.yaml", tiny_recipe(run_dir, **kwargs)), run_dir

    return make


def phis_norm(estimate_steps: int) -> dict[str, Any]:
    """The recipe spec of PHI-S target normalisation with ``estimate_steps``."""
    return {
        "class_path": "glmkit.models.distill_targets.PHISNorm",
        "init_args": {"estimate_steps": estimate_steps},
    }
