"""The real stage-1 recipe (recipes/cogvit/stage1_mim_distill.yaml): what its settings make run.

The real recipe needs GPUs and hub weights, so these tests read its YAML and check each setting
against what it is meant to do, running the parts that need no weights on the tiny quickstart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from glmkit.cli import main

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "recipes" / "cogvit" / "stage1_mim_distill.yaml"

# Published patch sizes of the hub checkpoints the real recipe may name (their config.json).
HUB_PATCH_SIZES = {
    "google/siglip2-so400m-patch16-naflex": 16,
    "google/siglip2-so400m-patch14-224": 14,
    "facebook/dinov3-vitl16-pretrain-lvd1689m": 16,
}


def _real() -> dict[str, Any]:
    return yaml.safe_load(REAL.read_text())


def _callback(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c["init_args"] for c in cfg["trainer"]["callbacks"] if c["class_path"].endswith(name)]
    return found


def test_every_teacher_of_the_real_recipe_lands_on_the_student_grid() -> None:
    model = _real()["model"]["init_args"]
    student = model["encoder"]["init_args"]
    student_grid = student["img_size"] // student["patch_size"]
    for name, teacher in model["teachers"].items():
        args = teacher["init_args"]
        patch = HUB_PATCH_SIZES[args["model"]]  # KeyError: add the new checkpoint's patch size above
        assert args["image_size"] % patch == 0 and args["image_size"] // patch == student_grid, name


def test_real_recipe_uses_eva02_drop_path_and_a_bounded_checkpoint_policy() -> None:
    real = _real()
    assert real["model"]["init_args"]["encoder"]["init_args"]["drop_path_rate"] == 0.1
    policy = _callback(real, "ModelCheckpoint")
    # the newest save_top_k by step (Lightning allows only -1, 0 or 1 without a monitor)
    assert 0 < policy["save_top_k"] <= 5 and (policy["monitor"], policy["mode"]) == ("step", "max")


@pytest.mark.slow
def test_the_real_checkpoint_policy_keeps_only_the_newest_checkpoints(tmp_path: Path) -> None:
    from tests.stages.conftest import tiny_recipe, write_recipe

    policy = _callback(_real(), "ModelCheckpoint")
    (tmp_path / "run").mkdir()
    cfg = tiny_recipe(tmp_path / "run", max_steps=5)
    checkpoint = _callback(cfg, "ModelCheckpoint")
    checkpoint.update({k: policy[k] for k in ("monitor", "mode", "save_top_k", "save_last")})
    checkpoint.update(save_top_k=2, every_n_train_steps=1)  # the real policy, smaller
    assert main(["fit", "--config", str(write_recipe(tmp_path / "r.yaml", cfg))]) == 0
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt")
    assert kept == ["epoch=0-step=4.ckpt", "epoch=0-step=5.ckpt"]  # the newest two, not all five
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_real_recipe_runs_plain_adamw_beside_muon() -> None:
    optimization = _real()["model"]["init_args"]["optimization"]["init_args"]
    assert optimization["nesterov"] is True  # Nesterov momentum in Muon
    assert (optimization["fallback"], optimization["fallback_eps"]) == ("adamw", 1e-8)


def _build(spec: dict[str, Any], kind: type) -> Any:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--spec", type=kind)
    return parser.instantiate_classes(parser.parse_object({"spec": spec})).spec


def test_real_recipe_draws_block_masks_on_the_student_grid_in_the_data_workers() -> None:
    import numpy as np
    from PIL import Image

    from glmkit.data.transforms import Transform

    real = _real()
    model, data = real["model"]["init_args"], real["data"]["init_args"]
    assert model["masking"] is None  # nothing drawn on the training process
    student = model["encoder"]["init_args"]
    grid = student["img_size"] // student["patch_size"]
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    for key in ("transform", "val_transform"):
        record = _build(data[key], Transform)({"image": image}, 7)
        assert record["image"].shape == (3, student["img_size"], student["img_size"])
        assert record["mask"].shape == (grid * grid,) and int(record["mask"].sum()) == round(
            0.35 * grid * grid
        )


def test_real_recipe_decodes_jpegs_in_draft_mode_at_a_size_every_crop_can_use() -> None:
    import math

    data = _real()["data"]["init_args"]
    crop = data["transform"]["init_args"]["transforms"][0]["init_args"]
    smallest_side = math.sqrt(crop["scale"][0] * 3 / 4)  # of the shorter image side: area 40%, aspect 3/4
    for name, source in data["sources"].items():
        draft = source["init_args"]["draft_size"]
        assert draft * smallest_side >= crop["image_size"], name


def test_real_recipe_distils_every_teachers_summary_into_its_own_prefix_token() -> None:
    model = _real()["model"]["init_args"]
    assert set(model["summary_weights"]) == set(model["teachers"]) and all(model["summary_weights"].values())
    tokens = model["summary_tokens"]
    prefix = 1 + 4  # the large preset: class token and 4 registers
    assert len(set(tokens.values())) == len(tokens) and all(0 <= t < prefix for t in tokens.values())
