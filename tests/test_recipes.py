"""Every recipe parses (``--print_config``); the quickstart recipe runs end to end."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml

from glmkit.cli import main
from glmkit.models.encoders import CogViT

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").rglob("*.yaml"))
QUICKSTARTS = sorted((ROOT / "recipes" / "quickstart").glob("*.yaml"))


def test_recipes_exist() -> None:
    names = {p.relative_to(ROOT / "recipes").as_posix() for p in RECIPES}
    assert {"quickstart/stage1_tiny.yaml", "cogvit/stage1_mim_distill.yaml"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.relative_to(ROOT / "recipes").as_posix())
def test_print_config(recipe: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(recipe), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    written = yaml.safe_load(recipe.read_text())
    # the printed config is the whole run: every section, the model and data classes as written
    assert {"trainer", "model", "data", "seed_everything"} <= set(printed)
    assert printed["model"]["class_path"] == written["model"]["class_path"]
    assert printed["data"]["class_path"] == written["data"]["class_path"]
    assert printed["trainer"]["max_steps"] == written["trainer"]["max_steps"]


def test_recipe_typo_gets_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = yaml.safe_load((ROOT / "recipes/quickstart/stage1_tiny.yaml").read_text())
    cfg["model"]["init_args"]["encoder"]["init_args"]["embed_dimm"] = 64
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(bad), "--print_config"])
    assert "embed_dimm" in capsys.readouterr().err


def _read_metrics(run_dir: Path) -> list[dict[str, str]]:
    (metrics,) = run_dir.glob("logs/version_*/metrics.csv")
    return list(csv.DictReader(metrics.open()))


@pytest.mark.parametrize("recipe", QUICKSTARTS, ids=lambda p: p.name)
def test_quickstart_runs_end_to_end_and_learns(
    recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quickstart recipe as shipped (about 30 s here): it saves its outputs and it learns."""
    monkeypatch.chdir(tmp_path)  # the recipe writes under ./runs
    assert main(["fit", "--config", str(recipe)]) == 0
    run_dir = tmp_path / "runs" / "quickstart_stage1"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "metrics.png").stat().st_size > 10_000
    encoder = CogViT.from_pretrained(run_dir / "encoder")
    assert encoder(torch.rand(1, 3, 224, 224)).patch_tokens.shape == (1, 196, encoder.embed_dim)
    rows = _read_metrics(run_dir)
    for teacher in ("siglip2", "dinov3"):
        vals = [float(r[f"val/{teacher}/cosine"]) for r in rows if r.get(f"val/{teacher}/cosine")]
        assert len(vals) == 3 and vals[-1] > vals[0] + 0.02, (teacher, vals)
