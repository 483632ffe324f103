"""The contrastive stage: per-module optimisation, a short fit with validation retrieval metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

import lightning.pytorch as pl

from glmkit.data.captions import PickCaption, ShapeCaptions
from glmkit.data.datamodule_naflex import NaFlexDataModule
from glmkit.data.naflex import NaFlexRandomResizedCrop, NaFlexResize
from glmkit.models.encoders import CogViT
from glmkit.models.encoders.image_tower import ImageTower
from glmkit.models.text import HFTextTower
from glmkit.optim import ModuleOptim, MuonAdamW
from glmkit.stages.contrastive import Contrastive
from tests.models.test_text_towers import tiny_bert


def build(tmp_path: Path) -> Contrastive:
    torch.manual_seed(0)
    return Contrastive(
        ImageTower(CogViT.preset("tiny", depth=2), embed_dim=32, pooling="map"),
        HFTextTower(tiny_bert(tmp_path), embed_dim=32, max_length=16),
        optimization=MuonAdamW(
            lr=2e-3,
            modules={
                "vision": ModuleOptim(lr=2e-3),
                "text": ModuleOptim(lr=1e-3),
                "proj": ModuleOptim(lr=3e-3),
            },
        ),
        class_names=["red", "blue", "green", "yellow", "purple", "orange"],
    )


def test_module_groups_have_their_lrs(tmp_path: Path) -> None:
    stage = build(tmp_path)
    groups = stage.optimization.param_groups(stage, stage.optim_modules())
    lrs = {g["lr"] for g in groups}
    assert {2e-3, 1e-3, 3e-3} <= lrs
    names = {id(p) for g in groups for p in g["params"]}
    assert id(stage.loss.logit_bias) in names and id(stage.text_tower.proj.weight) in names


def test_projections_are_named_the_probe_never_decays_and_pooling_attention_splits(tmp_path: Path) -> None:
    # The towers' projections into the shared space train with Muon and a recipe can address them by
    # name (they were anonymous list entries); the MAP head's probe is a learned token (no decay);
    # its fused in_proj weight is orthogonalised as q, k and v.
    stage = build(tmp_path)
    groups = stage.optimization.param_groups(stage, stage.optim_modules())
    where = {n: g for g in groups for n in g["param_names"]}
    for projection in ("proj/projection.image.weight", "proj/projection.text.weight"):
        assert where[projection]["use_muon"], projection
    assert where["proj/image_pool.probe"]["weight_decay"] == 0.0
    pool = where["proj/image_pool.attn.in_proj_weight"]
    assert pool["muon_blocks"][pool["param_names"].index("proj/image_pool.attn.in_proj_weight")] == 3
    assert where["proj/image_pool.mlp.fc1.weight"]["use_muon"]  # a hidden weight of the head
    assert where["proj/loss.logit_bias"]["use_fallback"]
    stage.optimization.fallback_patterns = [*stage.optimization.fallback_patterns, "projection.*"]
    groups = stage.optimization.param_groups(stage, stage.optim_modules())
    where = {n: g for g in groups for n in g["param_names"]}
    assert where["proj/projection.image.weight"]["use_fallback"]  # a recipe's pattern reaches them


def test_validation_counts_two_draws_of_one_record_as_one_item(tmp_path: Path, monkeypatch) -> None:
    # The held-out mixture draws with replacement: record 7 comes twice, once with its English and
    # once with its Chinese caption. A perfect model (one embedding per record) must score 1.
    from torch.utils.data import DataLoader

    stage = build(tmp_path)
    batch = {
        "caption": ["a red circle", "一个红色圆形", "a blue square"],
        "source": ["shapes", "shapes", "shapes"],
        "source_index": torch.tensor([7, 7, 8]),
    }
    one_hot = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    monkeypatch.setattr(stage, "encode_images", lambda b: one_hot)
    monkeypatch.setattr(stage, "encode_texts", lambda c: (one_hot, None))
    trainer = pl.Trainer(
        logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu"
    )
    metrics = trainer.validate(stage, DataLoader([batch], batch_size=None), verbose=False)[0]
    assert metrics["val/i2t/R@1"] == metrics["val/t2i/R@1"] == 1.0


def test_embed_dims_must_match(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="embed_dim"):
        Contrastive(
            ImageTower(CogViT.preset("tiny", depth=1), embed_dim=8),
            HFTextTower(tiny_bert(tmp_path), embed_dim=16),
        )


def test_short_fit_logs_loss_and_retrieval(tmp_path: Path) -> None:
    stage = build(tmp_path)
    data = NaFlexDataModule(
        {"shapes": ShapeCaptions(1000, seed=1, min_size=48, max_size=96)},
        transform=PickCaption(),
        naflex=NaFlexRandomResizedCrop(16, 24),
        val_naflex=NaFlexResize(16, 24),
        seq_lens=(12, 24),
        max_tokens_per_batch=192,
        row_len=48,
        val_seq_len=24,
        samples_per_epoch=400,
        val_samples=24,
        val_sources={"held_out": ShapeCaptions(100, seed=9, min_size=48, max_size=96)},
    )
    trainer = pl.Trainer(
        max_steps=4,
        val_check_interval=4,
        check_val_every_n_epoch=None,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
    )
    trainer.fit(stage, data)
    m = trainer.callback_metrics
    for key in (
        "train/loss",
        "train/temperature",
        "train/bias",
        "val/i2t/R@1",
        "val/t2i/R@5",
        "val/zero_shot/top1",
    ):
        assert key in m, sorted(m)
    assert torch.isfinite(m["train/loss"])


@pytest.mark.parametrize("named", [True, False])
def test_frozen_text_backbone_makes_no_empty_group(tmp_path: Path, named: bool) -> None:
    modules = {"vision": ModuleOptim(lr=2e-3), "proj": ModuleOptim(lr=3e-3)}
    if named:
        modules["text"] = ModuleOptim(lr=1e-3)
    stage = Contrastive(
        ImageTower(CogViT.preset("tiny", depth=1), embed_dim=16),
        HFTextTower(tiny_bert(tmp_path), embed_dim=16, trainable_layers=0),
        optimization=MuonAdamW(modules=modules),
    )
    routed = stage.optim_modules()
    assert ("text" in routed) is named  # kept only where the recipe's settings name it
    out = stage.optimization.build(stage, 10, routed)
    groups = out["optimizer"].param_groups
    assert groups and all(g["params"] for g in groups)
    assert not any(g["name"].startswith("text/") for g in groups)
    assert id(stage.text_tower.proj.weight) in {id(p) for g in groups for p in g["params"]}
