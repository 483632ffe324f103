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
    assert args.qkv_split == "qkv" and args.qkv_patterns == ["*qkv.weight", "*in_proj_weight"]
    assert (args.fallback, args.fallback_eps) == ("adamw", 1e-8)  # what runs on non-Muon parameters


@pytest.mark.parametrize("nesterov", [False, True])
def test_the_fallback_is_plain_adamw_whatever_muons_nesterov(nesterov: bool) -> None:
    """timm's Muon turns ``nesterov=True`` into NAdamW (eps 1e-7) on the fallback; the builder's
    ``fallback: adamw`` runs torch's AdamW there (eps 1e-8), Nesterov momentum stays in Muon."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8))
    reference = [p.detach().clone().requires_grad_() for p in model[1].parameters()]
    builder = MuonAdamW(lr=0.01, weight_decay=0.1, nesterov=nesterov, schedule=Constant())
    optimizer = builder.build(model, 10)["optimizer"]
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["muon"]["nesterov"] is nesterov and groups["muon"]["eps"] == 1e-7
    assert not groups["adamw_no_decay"]["nesterov"] and groups["adamw_no_decay"]["eps"] == 1e-8
    adamw = torch.optim.AdamW(reference, lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    for _ in range(3):
        grads = [torch.randn_like(p) * 1e-4 for p in reference]  # small: eps matters
        for p, r, g in zip(model[1].parameters(), reference, grads, strict=True):
            p.grad, r.grad = g.clone(), g.clone()
        model[0].weight.grad = torch.randn_like(model[0].weight)
        model[0].bias.grad = torch.randn_like(model[0].bias)
        optimizer.step()
        adamw.step()
    for p, r in zip(model[1].parameters(), reference, strict=True):
        torch.testing.assert_close(p, r, rtol=0, atol=1e-7)


def test_nadamw_fallback_is_what_timm_runs_with_nesterov() -> None:
    from timm.optim import Muon as TimmMuon

    torch.manual_seed(0)
    ours, theirs = nn.LayerNorm(8), nn.LayerNorm(8)
    theirs.load_state_dict(ours.state_dict())
    builder = MuonAdamW(lr=0.01, nesterov=True, fallback="nadamw", fallback_eps=1e-7, schedule=Constant())
    optimizer = builder.build(ours, 10)["optimizer"]
    timm = TimmMuon(
        [{"params": list(theirs.parameters()), "use_fallback": True, "weight_decay": 0.0}],
        lr=0.01,
        nesterov=True,
        betas=(0.9, 0.95),
    )
    for _ in range(3):
        for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        optimizer.step()
        timm.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match=r"fallback must be one of \['adamw', 'nadamw'\], got 'adam'"):
        MuonAdamW(fallback="adam")  # type: ignore[arg-type]


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
