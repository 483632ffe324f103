"""Muon/AdamW routing and the optimizer it feeds."""

from __future__ import annotations

import pytest
import torch
from timm.optim import Muon
from torch import nn

from glmkit.models.adaptors import MLPAdaptor
from glmkit.optim import muon_param_groups


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.patch_embed = nn.Linear(48, 16)
        self.mask_token = nn.Parameter(torch.zeros(16))
        self.block = nn.Sequential(nn.LayerNorm(16), nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16))
        self.adaptor = MLPAdaptor(16, 8)
        self.frozen = nn.Linear(16, 16).requires_grad_(False)


def _names(module: nn.Module, group: dict) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {n for n, p in module.named_parameters() if id(p) in ids}


def test_routing_sends_hidden_matrices_to_muon_and_the_rest_to_adamw() -> None:
    toy = Toy()
    groups = {g["name"]: g for g in muon_param_groups(toy)}
    assert _names(toy, groups["muon"]) == {"block.1.weight", "block.3.weight", "adaptor.body.1.weight"}
    assert _names(toy, groups["adamw"]) == {"patch_embed.weight", "adaptor.out.weight"}
    no_decay = _names(toy, groups["adamw_no_decay"])
    assert "mask_token" in no_decay and "block.0.weight" in no_decay and "block.1.bias" in no_decay
    assert groups["muon"]["use_muon"] is True and groups["muon"]["use_fallback"] is False
    assert groups["adamw"]["use_muon"] is False and groups["adamw"]["use_fallback"] is True
    # decayed groups take the optimizer's weight_decay; the no-decay group pins 0
    assert groups["adamw_no_decay"]["weight_decay"] == 0.0 and "weight_decay" not in groups["muon"]
    opt = Muon(list(groups.values()), lr=0.01, weight_decay=0.1)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.1, 0.0]
    # frozen parameters (teachers) are never optimised
    all_ids = {id(p) for g in groups.values() for p in g["params"]}
    assert id(toy.frozen.weight) not in all_ids
    assert len(all_ids) == sum(p.numel() > 0 for p in toy.parameters() if p.requires_grad)


def test_per_module_groups_carry_their_settings() -> None:
    vision, text = Toy(), nn.Linear(4, 4)
    groups = muon_param_groups(
        {"vision": vision, "text": text}, settings={"text": {"lr": 1e-4, "weight_decay": 0.0}}
    )
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {
        "vision/muon",
        "vision/adamw",
        "vision/adamw_no_decay",
        "text/muon",
        "text/adamw_no_decay",
    }
    assert by_name["text/muon"]["lr"] == 1e-4 and by_name["text/muon"]["weight_decay"] == 0.0
    assert "lr" not in by_name["vision/muon"]
    with pytest.raises(KeyError, match=r"unknown modules \['txt'\]"):
        muon_param_groups({"text": text}, settings={"txt": {}})


def test_timm_muon_steps_both_kinds_and_orthogonalises_muon_updates() -> None:
    torch.manual_seed(0)
    toy = Toy()
    opt = Muon(muon_param_groups(toy), lr=0.01, weight_decay=0.0)
    before = {n: p.detach().clone() for n, p in toy.named_parameters()}
    x = toy.block(toy.patch_embed(torch.randn(256, 48)) + toy.mask_token)
    (toy.adaptor(x).square().mean()).backward()
    grad = toy.block[1].weight.grad.clone()
    opt.step()
    for name in ("block.1.weight", "patch_embed.weight", "mask_token", "adaptor.out.weight"):
        assert not torch.equal(before[name], dict(toy.named_parameters())[name]), name
    # Muon orthogonalises the update of a hidden matrix: its singular values are far more equal
    # than the gradient's (Newton-Schulz pushes them all towards 1)
    delta = dict(toy.named_parameters())["block.1.weight"].detach() - before["block.1.weight"]

    def condition(m: torch.Tensor) -> float:
        s = torch.linalg.svdvals(m)
        return (s.max() / s.min()).item()

    assert condition(delta) < condition(grad) / 4


def test_patterns_are_anchored_so_blocks_named_like_heads_stay_with_muon() -> None:
    model = nn.Module()
    model.mtp_heads = nn.ModuleList([nn.Sequential(nn.Linear(8, 8))])
    model.token_mixer = nn.Linear(8, 8)
    model.head = nn.Linear(8, 4)
    groups = {g["name"]: g for g in muon_param_groups(model)}
    assert _names(model, groups["muon"]) == {"mtp_heads.0.0.weight", "token_mixer.weight"}
    assert _names(model, groups["adamw"]) == {"head.weight"}


def test_adaptor_output_layer_goes_to_adamw_named_or_nested() -> None:
    adaptor = MLPAdaptor(8, 16, num_layers=2)
    named = {g["name"]: g for g in muon_param_groups({"projector": adaptor})}
    assert "out.weight" in _names(adaptor, named["projector/adamw"])
    assert "out.weight" not in _names(adaptor, named["projector/muon"])
    parent = nn.Module()
    parent.projector = adaptor
    nested = {g["name"]: g for g in muon_param_groups(parent)}
    assert "projector.out.weight" in _names(parent, nested["adamw"])


def test_root_coverage_names_parameters_left_out() -> None:
    root = nn.Module()
    root.vision = nn.Linear(4, 4)
    root.logit_scale = nn.Parameter(torch.zeros(()))
    with pytest.raises(ValueError, match=r"never be optimised: \['logit_scale'\]"):
        muon_param_groups({"vision": root.vision}, root=root)
    assert muon_param_groups({"vision": root.vision, "loss": root}, root=root)
