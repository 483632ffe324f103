"""The stage optimizer builder: defaults visible in the recipe, per-module settings, clear errors."""

from __future__ import annotations

import pytest
import torch
from jsonargparse import ArgumentParser
from torch import nn

from glmkit.optim import Constant, ModuleOptim, MuonAdamW, OptimizerBuilder, WarmupCosine


class _TwoTowers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.vision = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8))
        self.text = nn.Linear(8, 8)
        self.logit_scale = nn.Parameter(torch.zeros(()))


def test_every_default_is_printed_by_the_parser() -> None:
    parser = ArgumentParser()
    parser.add_argument("--optimization", type=OptimizerBuilder)
    cfg = parser.parse_args(["--optimization", "glmkit.optim.MuonAdamW"])
    args = cfg.optimization.init_args
    assert (args.lr, args.weight_decay, args.momentum, args.nesterov, args.eps) == (
        1e-3,
        0.05,
        0.95,
        False,
        1e-7,
    )
    assert args.schedule.class_path == "glmkit.optim.WarmupCosine"
    assert args.schedule.init_args.warmup_steps == 0 and "*patch_embed.*" in args.fallback_patterns
    assert args.qkv_split == "qkv" and args.qkv_patterns == ["*qkv.weight"]


def test_the_optimizer_takes_the_builder_values() -> None:
    module = nn.Linear(4, 4)
    config = MuonAdamW(lr=0.02, weight_decay=0.1, nesterov=True, betas=(0.8, 0.9)).build(module, 10)
    optimizer = config["optimizer"]
    assert type(optimizer).__name__ == "Muon"
    group = next(g for g in optimizer.param_groups if g["name"] == "muon")
    assert group["lr"] == pytest.approx(0.02 * WarmupCosine().factor(0, 10))  # the schedule applied
    assert group["weight_decay"] == 0.1 and group["nesterov"] and tuple(group["betas"]) == (0.8, 0.9)
    bias = next(g for g in optimizer.param_groups if g["name"] == "adamw_no_decay")
    assert bias["weight_decay"] == 0.0


def test_per_module_learning_rates_decay_and_schedules() -> None:
    model = _TwoTowers()
    builder = MuonAdamW(
        lr=1e-3,
        schedule=WarmupCosine(warmup_steps=5),
        modules={"vision": ModuleOptim(lr=2e-4, schedule=Constant()), "text": ModuleOptim(weight_decay=0.0)},
    )
    with pytest.raises(ValueError, match=r"trainable parameters outside the modules \['text', 'vision'\]"):
        builder.build(model, 100, {"vision": model.vision, "text": model.text})
    config = builder.build(
        model,
        100,
        {"vision": model.vision, "text": model.text, "scale": nn.ParameterList([model.logit_scale])},
    )
    groups = {g["name"]: g for g in config["optimizer"].param_groups}
    assert groups["vision/muon"]["lr"] == pytest.approx(2e-4)  # Constant: full rate at step 0
    assert groups["text/muon"]["weight_decay"] == 0.0 and groups["text/muon"]["lr"] == pytest.approx(1e-3 / 6)
    assert groups["scale/adamw_no_decay"]["lr"] == pytest.approx(1e-3 / 6)


def test_module_settings_need_named_modules_and_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="routes its parameters as one module"):
        MuonAdamW(modules={"vision": ModuleOptim(lr=1.0)}).build(nn.Linear(2, 2), 5)
    with pytest.raises(ValueError, match="need lr > 0"):
        MuonAdamW(lr=0.0)
    with pytest.raises(ValueError, match=r"qkv_split must be one of \['none', 'qkv', 'heads'\], got 'head'"):
        MuonAdamW(qkv_split="head")


def test_the_builder_orthogonalises_fused_qkv_weights_as_configured() -> None:
    from glmkit.nn.self_attention import SelfAttention

    attention = SelfAttention(16, num_heads=2)
    for split, blocks in (("none", 1), ("qkv", 3), ("heads", 6)):
        optimizer = MuonAdamW(qkv_split=split).build(attention, 10)["optimizer"]
        muon = next(g for g in optimizer.param_groups if g["name"] == "muon")
        assert dict(zip(muon["param_names"], muon["muon_blocks"], strict=True)) == {
            "qkv.weight": blocks,
            "proj.weight": 1,
        }
