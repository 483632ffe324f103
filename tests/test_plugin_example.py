"""The example plugin installs as its own package and is usable from a recipe by short names."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.stages.conftest import tiny_recipe

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "plugins" / "glmkit-example"


@pytest.fixture(scope="module")
def installed_plugin() -> None:
    """``pip install -e plugins/glmkit-example`` into this environment (no network needed)."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-e",
        str(PLUGIN),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def _glmkit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    code = "import sys; from glmkit.cli import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_plugin_components_are_listed(installed_plugin: None) -> None:
    result = _glmkit("list", "encoders")
    assert result.returncode == 0, result.stderr
    assert "example_conv" in result.stdout and "glmkit_example.ConvPatchEncoder" in result.stdout
    plugins = _glmkit("plugins")
    assert "loaded  example (glmkit-example 0.1.0)" in plugins.stdout


def test_recipe_uses_plugin_components_by_short_name(installed_plugin: None, tmp_path: Path) -> None:
    cfg = tiny_recipe(tmp_path / "run", max_steps=3)
    (tmp_path / "run").mkdir()
    model = cfg["model"]["init_args"]
    model["encoder"] = {"class_path": "ConvPatchEncoder", "init_args": {"embed_dim": 32, "patch_size": 16}}
    model["loss"] = {"class_path": "CharbonnierDistillLoss", "init_args": {"eps": 0.001}}
    model["masking"] = {"class_path": "RandomMask", "init_args": {"ratio": 0.35}}  # a glmkit short name
    cfg["trainer"]["callbacks"] = [
        c for c in cfg["trainer"]["callbacks"] if "ExportEncoder" not in c["class_path"]
    ]
    recipe = tmp_path / "plugin.yaml"
    recipe.write_text(yaml.safe_dump(cfg, sort_keys=False))

    printed = _glmkit("fit", "--config", str(recipe), "--print_config")
    assert printed.returncode == 0, printed.stderr
    encoder = yaml.safe_load(printed.stdout)["model"]["init_args"]["encoder"]
    assert encoder["class_path"] == "glmkit_example.ConvPatchEncoder"

    result = _glmkit("fit", "--config", str(recipe))
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics,) = (tmp_path / "run").glob("logs/version_*/metrics.csv")
    losses = [float(r["train/loss"]) for r in csv.DictReader(metrics.open()) if r.get("train/loss")]
    assert len(losses) == 3
