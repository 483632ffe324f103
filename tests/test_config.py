"""Recipe preparation: registered names as class_path, presets expanded, typos answered by kind."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from glmkit.cli import main
from glmkit.config import ConfigError, expected_kinds, instantiate, prepare_recipe
from glmkit.losses import CosineDistillLoss
from glmkit.models.encoders import CogViT
from glmkit.stages import MIMDistill

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "recipes" / "quickstart" / "stage1_tiny.yaml"


def _recipe() -> dict:
    return yaml.safe_load(QUICKSTART.read_text())


def test_registered_and_short_names_become_import_paths_and_presets_expand() -> None:
    cfg = _recipe()
    cfg["model"]["class_path"] = "mim_distill"  # the name `glmkit list stages` shows
    cfg["model"]["init_args"]["encoder"] = {
        "class_path": "cogvit",
        "init_args": {"preset": "tiny", "depth": 2},
    }
    cfg["model"]["init_args"]["loss"] = {"class_path": "CosineDistillLoss"}
    prepared = prepare_recipe(cfg)
    model = prepared["model"]
    assert model["class_path"] == "glmkit.stages.mim_distill.MIMDistill"
    encoder = model["init_args"]["encoder"]
    assert encoder["class_path"] == "glmkit.models.encoders.cogvit.CogViT"
    assert encoder["init_args"] == {**CogViT.PRESETS["tiny"], "depth": 2}  # given values win
    assert model["init_args"]["loss"]["class_path"] == "glmkit.losses.distill.CosineDistillLoss"


def test_print_config_shows_every_cogvit_hyperparameter_of_the_real_recipe(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(ROOT / "recipes/cogvit/stage1_mim_distill.yaml"), "--print_config"])
    encoder = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]["encoder"]["init_args"]
    assert "preset" not in encoder and None not in encoder.values()
    assert (encoder["embed_dim"], encoder["depth"], encoder["num_heads"]) == (1024, 24, 16)
    assert set(encoder) == set(CogViT.preset_args("large"))


def test_a_typo_names_the_key_file_and_closest_names_of_the_expected_kind(tmp_path, capsys) -> None:
    cfg = _recipe()
    cfg["model"]["init_args"]["masking"]["class_path"] = "BlokMask"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(bad), "--print_config"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0  # one line, not the parser's usage
    assert f"{bad}: model.init_args.masking.class_path: 'BlokMask'" in err
    assert "expected a component of kind maskings" in err and "'BlockMask' (maskings:" in err


def test_unknown_preset_and_bad_import_path() -> None:
    cfg = _recipe()
    cfg["model"]["init_args"]["encoder"]["init_args"] = {"preset": "tinny"}
    with pytest.raises(ConfigError, match=r"unknown CogViT preset 'tinny'. Did you mean 'tiny'"):
        prepare_recipe(cfg)
    cfg = _recipe()
    cfg["model"]["init_args"]["loss"] = {"class_path": "glmkit.losses.CosineDistilLoss"}
    with pytest.raises(
        ConfigError, match=r"cannot import 'glmkit.losses.CosineDistilLoss'.*'CosineDistillLoss'"
    ):
        prepare_recipe(cfg)


def test_expected_kind_comes_from_the_owners_signature() -> None:
    assert expected_kinds(MIMDistill, "masking") == ("maskings",)
    assert expected_kinds(MIMDistill, "teachers") == ("teachers",)
    assert expected_kinds(MIMDistill, "encoder") == ("encoders",)  # VisionEncoder | nn.Module


def test_instantiate_builds_nested_specs_in_python() -> None:
    loss = instantiate(
        {
            "class_path": "combined",
            "init_args": {"terms": {"c": {"class_path": "cosine"}}, "weights": {"c": 2.0}},
        },
        kind="distill_losses",
    )
    assert isinstance(loss.terms["c"], CosineDistillLoss) and loss.weights == {"c": 2.0}
    with pytest.raises(ConfigError, match="expected a component spec"):
        instantiate({"init_args": {}})
