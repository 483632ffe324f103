"""``glmkit eval-retrieval``: zero-shot evaluation of an exported pair of stage-2 towers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("transformers")

import lightning.pytorch as pl

from glmkit.cli import main
from glmkit.config import instantiate
from glmkit.models.encoders import CogViT
from glmkit.models.encoders.image_tower import ImageTower
from glmkit.models.text import HFTextTower
from glmkit.stages.contrastive import Contrastive
from tests.models.test_text_towers import tiny_bert

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "recipes" / "quickstart" / "stage2_tiny.yaml"
COLOURS = ["red", "blue", "green", "yellow", "purple", "orange"]


@pytest.fixture(scope="module")
def towers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Contrastive, Path]:
    """A small untrained stage and its two towers exported under one directory."""
    root = tmp_path_factory.mktemp("towers")
    torch.manual_seed(0)
    stage = Contrastive(
        ImageTower(CogViT.preset("tiny", depth=1), embed_dim=16),
        HFTextTower(tiny_bert(root), embed_dim=16, max_length=16),
        class_names=COLOURS,
        class_templates=["{} shapes", "{}"],
    )
    stage.image_tower.save_pretrained(root / "image_tower")
    stage.text_tower.save_pretrained(root / "text_tower")
    return stage, root


def _held_out_recipe(path: Path) -> Path:
    """The quickstart recipe with its held-out procedural pairs cut to 24 at 24 patches."""
    recipe = yaml.safe_load(QUICKSTART.read_text())
    data = recipe["data"]["init_args"]
    data.update(val_samples=24, val_seq_len=24, max_tokens_per_batch=96, row_len=48)
    data["val_naflex"]["init_args"]["max_num_patches"] = 24
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_exported_towers_score_as_the_stage_validates_them(towers, tmp_path: Path) -> None:
    """On the quickstart's held-out pairs the command reports exactly what the training stage's
    validation computes in memory (retrieval both ways, zero-shot over the recipe's colours)."""
    stage, root = towers
    recipe = _held_out_recipe(tmp_path / "recipe.yaml")
    out = tmp_path / "metrics.json"
    argv = ["eval-retrieval", "--image-tower", str(root / "image_tower"), "--text-tower"]
    argv += [str(root / "text_tower"), "--config", str(recipe), "--accelerator", "cpu", "--out", str(out)]
    assert main(argv) == 0
    got = json.loads(out.read_text())

    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    datamodule = instantiate(yaml.safe_load(recipe.read_text())["data"])
    trainer.validate(stage, datamodule=datamodule, verbose=False)
    want = {
        k[4:]: float(v)
        for k, v in trainer.callback_metrics.items()
        if k.startswith("val/") and k != "val/loss"
    }
    assert set(got) == {"i2t/R@1", "i2t/R@5", "t2i/R@1", "t2i/R@5", "zero_shot/top1"}
    assert got == pytest.approx(want, abs=1e-6)


def test_a_manifest_of_pairs(towers, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--data``: pairs from a JSONL manifest (image and {language: caption}); with K = the number
    of distinct captions every image finds its caption (R@K = 1); the table names every metric."""
    from PIL import Image

    _, root = towers
    lines = []
    for i, (colour, size) in enumerate([("red", (40, 60)), ("blue", (64, 32)), ("green", (48, 48))]):
        Image.new("RGB", size, colour).save(tmp_path / f"{i}.png")
        lines.append({"image": f"{i}.png", "caption": {"en": f"a {colour} picture", "zh": f"{i}"}})
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    argv = ["eval-retrieval", "--image-tower", str(root / "image_tower"), "--text-tower"]
    argv += [str(root / "text_tower"), "--data", str(tmp_path / "pairs.jsonl"), "--languages", "en"]
    argv += ["--ks", "1", "3", "--max-num-patches", "16", "--accelerator", "cpu"]
    assert main(argv) == 0
    table = dict(line.split() for line in capsys.readouterr().out.strip().splitlines()[-4:])
    assert float(table["i2t/R@3"]) == float(table["t2i/R@3"]) == 1.0
    assert set(table) == {"i2t/R@1", "i2t/R@3", "t2i/R@1", "t2i/R@3"}


def test_a_recipe_without_held_out_pairs_is_refused(towers, tmp_path: Path, capsys) -> None:
    _, root = towers
    recipe = yaml.safe_load(QUICKSTART.read_text())
    recipe["data"]["init_args"]["val_samples"] = 0
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    argv = ["eval-retrieval", "--image-tower", str(root / "image_tower"), "--text-tower"]
    argv += [str(root / "text_tower"), "--config", str(tmp_path / "r.yaml")]
    assert main(argv) == 2
    assert "val_samples is 0; give --samples N" in capsys.readouterr().err
