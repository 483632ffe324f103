"""Original parameter shapes and names survive FSDP-style flattening and wrapper prefixes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from glmkit.models.encoders import CogViT
from glmkit.optim import clean_param_name, muon_param_groups, original_shape, record_param_shapes


def _flatten_like_fsdp(module: nn.Module, rank: int = 0, world: int = 2) -> None:
    """What FSDP (``use_orig_params=True``) does to each parameter: mark it, keep a flat slice."""
    for param in module.parameters():
        flat = param.detach().reshape(-1)
        size = -(-flat.numel() // world)
        param.data = flat[rank * size : (rank + 1) * size].clone()
        param._fsdp_flattened = True


def _summary(groups: list[dict]) -> dict:
    return {g["name"]: (g["param_names"], g["orig_shapes"], g.get("muon_blocks")) for g in groups}


def test_routing_after_flattening_equals_routing_before() -> None:
    encoder = CogViT.preset("tiny")
    before = _summary(muon_param_groups(encoder))
    record_param_shapes(encoder)
    _flatten_like_fsdp(encoder)
    assert all(p.ndim == 1 for p in encoder.parameters())
    assert _summary(muon_param_groups(encoder)) == before
    assert before["muon"][2][before["muon"][0].index("blocks.0.attn.qkv.weight")] == 3
    record_param_shapes(encoder)  # again, after flattening: the recorded shapes are kept
    assert original_shape(encoder, "blocks.0.attn.qkv.weight") == (3 * encoder.embed_dim, encoder.embed_dim)


def test_flattened_parameters_without_a_record_are_an_error() -> None:
    model = nn.Sequential(nn.Linear(4, 8))
    _flatten_like_fsdp(model)
    with pytest.raises(ValueError, match=r"'0.weight' was flattened by FSDP before its shape was recorded"):
        muon_param_groups(model)
    with pytest.raises(ValueError, match=r"'0.weight' is already flattened by FSDP.*before wrapping"):
        record_param_shapes(model)


def test_a_replaced_parameter_is_read_live_not_from_a_stale_record() -> None:
    model = nn.Linear(4, 8)
    record_param_shapes(model)
    model.weight = nn.Parameter(torch.zeros(16, 4))
    assert original_shape(model, "weight") == (16, 4)


def test_wrapper_segments_are_removed_from_names_before_matching() -> None:
    assert (
        clean_param_name("a._fsdp_wrapped_module.b._checkpoint_wrapped_module.head.weight")
        == "a.b.head.weight"
    )
    model = nn.Module()
    model.block = nn.Module()
    model.block._fsdp_wrapped_module = nn.Linear(8, 8)  # as a nested FSDP unit names it
    model.head = nn.Module()
    model.head._checkpoint_wrapped_module = nn.Linear(8, 8)
    groups = {g["name"]: g for g in muon_param_groups(model)}
    assert groups["muon"]["param_names"] == ["block.weight"]
    assert groups["adamw"]["param_names"] == ["head.weight"]  # "head.*" still matches


def test_qkv_split_options_and_their_errors() -> None:
    encoder = CogViT.preset("tiny")
    heads = encoder.blocks[0].attn.num_heads

    def blocks(split: str) -> int:
        muon = next(g for g in muon_param_groups(encoder, qkv_split=split) if g["name"] == "muon")
        return muon["muon_blocks"][muon["param_names"].index("blocks.0.attn.qkv.weight")]

    assert (blocks("none"), blocks("qkv"), blocks("heads")) == (1, 3, 3 * heads)
    odd = nn.Module()
    odd.qkv = nn.Linear(8, 20)  # 20 rows: not three equal parts
    with pytest.raises(ValueError, match="do not split into equal q, k and v"):
        muon_param_groups(odd)
    plain = nn.Module()
    plain.qkv = nn.Linear(8, 24)
    with pytest.raises(ValueError, match="qkv_split: heads needs the head width of qkv.weight"):
        muon_param_groups(plain, qkv_split="heads")
    with pytest.raises(ValueError, match=r"qkv_split must be one of \['none', 'qkv', 'heads'\]"):
        muon_param_groups(plain, qkv_split="per_head")
