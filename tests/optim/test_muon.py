"""glmkit's Muon: q, k and v orthogonalised apart, timm's update elsewhere, whole matrices from slices."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from timm.optim import Muon as TimmMuon
from torch import nn

from glmkit.nn.self_attention import SelfAttention
from glmkit.optim import Muon, muon_param_groups, record_param_shapes
from tests.helpers.distributed import run_on_ranks

D = 64


def _qkv_update_rms(split: str, grad: torch.Tensor) -> list[float]:
    """RMS of the q, k and v blocks of one Muon step (lr 1, no decay) on a fused [3D, D] weight."""
    torch.manual_seed(0)
    attn = SelfAttention(D, num_heads=4)
    weight = attn.qkv.weight
    before = weight.detach().clone()
    weight.grad = grad.clone()
    Muon(
        [g for g in muon_param_groups(attn, qkv_split=split) if g["use_muon"]], lr=1.0, weight_decay=0.0
    ).step()
    return [block.pow(2).mean().sqrt().item() for block in (weight.detach() - before).split(D)]


def _small_qk_grad() -> torch.Tensor:
    grad = torch.randn(3 * D, D, generator=torch.Generator().manual_seed(1))
    grad[: 2 * D] *= 0.01  # q and k gradients a hundred times smaller than v's
    return grad


def test_fused_qkv_is_orthogonalised_as_q_k_and_v_so_their_updates_have_equal_rms() -> None:
    fused = _qkv_update_rms("none", _small_qk_grad())
    split = _qkv_update_rms("qkv", _small_qk_grad())
    heads = _qkv_update_rms("heads", _small_qk_grad())
    print(f"update RMS / lr (q, k, v): fused {fused}, qkv {split}, heads {heads}")
    # one [3D, D] matrix: v takes the spectral budget and q, k barely move
    assert max(fused[:2]) < 0.15 * fused[2]
    # apart: every block gets match_rms_adamw's 0.2 (each [D, D] block has RMS 0.2 * lr)
    for rms in (*split, *heads):
        assert rms == pytest.approx(0.2, rel=0.05)


def test_heads_split_gives_every_head_the_same_update_rms() -> None:
    grad = torch.randn(3 * D, D, generator=torch.Generator().manual_seed(2))
    grad[:16] *= 0.01  # the first head of q (head_dim 16) has a tiny gradient
    per_qkv = _qkv_update_rms_per_head("qkv", grad)
    per_head = _qkv_update_rms_per_head("heads", grad)
    assert per_qkv[0] < 0.5 * min(per_qkv[1:4])  # within q, the quiet head moves far less
    assert max(per_head) / min(per_head) < 1.1


def _qkv_update_rms_per_head(split: str, grad: torch.Tensor) -> list[float]:
    torch.manual_seed(0)
    attn = SelfAttention(D, num_heads=4)
    before = attn.qkv.weight.detach().clone()
    attn.qkv.weight.grad = grad.clone()
    Muon(
        [g for g in muon_param_groups(attn, qkv_split=split) if g["use_muon"]], lr=1.0, weight_decay=0.0
    ).step()
    return [b.pow(2).mean().sqrt().item() for b in (attn.qkv.weight.detach() - before).split(16)]


class _Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.norm = nn.LayerNorm(64)
        self.fc2 = nn.Linear(64, 32)
        self.head = nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc2(self.norm(self.fc1(x)).relu()))


@pytest.mark.parametrize("nesterov", [False, True])
def test_unsplit_matrices_and_the_fallback_step_exactly_as_timm(nesterov: bool) -> None:
    torch.manual_seed(0)
    ours_model = _Mlp()
    timm_model = copy.deepcopy(ours_model)
    kwargs = {"lr": 0.02, "weight_decay": 0.1, "nesterov": nesterov}
    ours = Muon(muon_param_groups(ours_model), **kwargs)
    reference = TimmMuon(muon_param_groups(timm_model), **kwargs)
    assert {g["name"] for g in ours.param_groups} == {"muon", "adamw", "adamw_no_decay"}
    for step in range(3):
        x = torch.randn(16, 32, generator=torch.Generator().manual_seed(step))
        for model, optimizer in ((ours_model, ours), (timm_model, reference)):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()
    for (name, mine), theirs in zip(ours_model.named_parameters(), timm_model.parameters(), strict=True):
        assert torch.equal(mine, theirs), name


def test_step_hooks_run_once_even_when_timm_muon_step_is_hooked() -> None:
    TimmMuon(muon_param_groups(nn.Linear(4, 4)))  # torch wraps timm's step with its hook runner
    model = _Mlp()
    optimizer = Muon(muon_param_groups(model))
    calls = []
    optimizer.register_step_pre_hook(lambda *args: calls.append("pre"))
    optimizer.register_step_post_hook(lambda *args: calls.append("post"))
    model(torch.randn(2, 32)).sum().backward()
    optimizer.step()
    assert calls == ["pre", "post"]


def test_state_dict_round_trip_resumes_the_same_steps() -> None:
    torch.manual_seed(0)
    model = SelfAttention(D, num_heads=4)
    optimizer = Muon(muon_param_groups(model), lr=0.01, nesterov=True)
    x = torch.randn(2, 5, D)
    model(x).sum().backward()
    optimizer.step()
    resumed_model = copy.deepcopy(model)
    resumed = Muon(muon_param_groups(resumed_model), lr=0.01, nesterov=True)
    saved = copy.deepcopy(optimizer.state_dict())
    for group in saved["param_groups"]:  # as timm's Muon saved it: no layout keys
        for key in ("orig_shapes", "muon_blocks", "param_names"):
            group.pop(key, None)
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["muon_blocks"] == [3, 1]  # the layout is the model's, not the checkpoint's
    for m, opt in ((model, optimizer), (resumed_model, resumed)):
        opt.zero_grad()
        m(x).square().sum().backward()
        opt.step()
    for mine, theirs in zip(model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(mine, theirs)


def test_groups_and_layouts_are_checked() -> None:
    weight = nn.Parameter(torch.randn(6, 4))
    with pytest.raises(ValueError, match="flagged either use_muon=True or use_fallback=True"):
        Muon([{"params": [weight]}])
    with pytest.raises(
        ValueError, match=r"rows split into muon_blocks equal blocks.*\(6, 4\) and muon_blocks=4"
    ):
        Muon([{"params": [weight], "use_muon": True, "muon_blocks": [4]}])
    with pytest.raises(ValueError, match=r"Muon needs a matrix.*original shape \(6,\)"):
        Muon([{"params": [nn.Parameter(torch.randn(6))], "use_muon": True}])
    with pytest.raises(ValueError, match="supports only algo='muon'"):
        Muon([{"params": [weight], "use_muon": True}], algo="adamuon")


def test_a_flattened_matrix_with_its_original_shape_steps_as_the_matrix() -> None:
    """Without a process group, a 1-D view of a whole matrix (FSDP on one rank) is the matrix."""
    torch.manual_seed(0)
    matrix = nn.Parameter(torch.randn(3 * D, D))
    flat = nn.Parameter(matrix.detach().reshape(-1).clone())
    matrix.grad = _small_qk_grad()
    flat.grad = matrix.grad.reshape(-1).clone()
    Muon([{"params": [matrix], "use_muon": True, "muon_blocks": [3]}], lr=0.1).step()
    group = {"params": [flat], "use_muon": True, "muon_blocks": [3], "orig_shapes": [(3 * D, D)]}
    Muon([group], lr=0.1).step()
    assert torch.equal(flat.detach().reshape(3 * D, D), matrix.detach())


# A matrix per case: (rows, cols, row blocks, slice sizes on ranks 0 and 1)
_LAYOUTS = [(12, 8, 1, (40, 56)), (6, 4, 1, (24, 0)), (24, 8, 3, (100, 92)), (8, 8, 1, (0, 64))]


def _full_tensors(step: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(step)
    params = [
        torch.randn(r, c, generator=torch.Generator().manual_seed(10 + i))
        for i, (r, c, _, _) in enumerate(_LAYOUTS)
    ]
    grads = [torch.randn(r, c, generator=generator) for r, c, _, _ in _LAYOUTS]
    return params, grads


def _slice(full: torch.Tensor, sizes: tuple[int, int], rank: int) -> torch.Tensor:
    start = sum(sizes[:rank])
    return full.reshape(-1)[start : start + sizes[rank]].clone()


def _sharded_muon_steps(rank: int, world: int) -> dict:
    full, _ = _full_tensors(0)
    params = [
        nn.Parameter(_slice(p, sizes, rank)) for p, (_, _, _, sizes) in zip(full, _LAYOUTS, strict=True)
    ]
    group = {
        "params": params,
        "use_muon": True,
        "orig_shapes": [(r, c) for r, c, _, _ in _LAYOUTS],
        "muon_blocks": [b for _, _, b, _ in _LAYOUTS],
    }
    optimizer = Muon([group], lr=0.05, weight_decay=0.1, nesterov=True)
    for step in range(2):
        _, grads = _full_tensors(step + 1)
        for p, g, (_, _, _, sizes) in zip(params, grads, _LAYOUTS, strict=True):
            p.grad = _slice(g, sizes, rank) if sizes[rank] else None  # FSDP: no grad on an empty slice
        optimizer.step()
    # replicated parameters (HYBRID_SHARD over the wrong group): the slices add up to twice the matrix
    replica = nn.Parameter(torch.zeros(32))
    replica.grad = torch.ones(32)
    wrong = Muon([{"params": [replica], "use_muon": True, "orig_shapes": [(4, 8)]}])
    with pytest.raises(RuntimeError, match="hold 64 elements, but its original shape has 32") as error:
        wrong.step()
    return {"slices": [p.detach().clone() for p in params], "error": str(error.value)}


@pytest.mark.distributed
def test_sharded_slices_step_like_the_whole_matrices_on_two_processes(tmp_path: Path) -> None:
    """Slices of uneven size (one empty on either rank) and a 3-block qkv matrix: two ranks' Muon steps,
    put back together, equal one process's steps on the whole matrices, bit for bit."""
    results = run_on_ranks(_sharded_muon_steps, 2, tmp_path)
    full, _ = _full_tensors(0)
    params = [nn.Parameter(p.clone()) for p in full]
    group = {"params": params, "use_muon": True, "muon_blocks": [b for _, _, b, _ in _LAYOUTS]}
    optimizer = Muon([group], lr=0.05, weight_decay=0.1, nesterov=True)
    for step in range(2):
        _, grads = _full_tensors(step + 1)
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        optimizer.step()
    for i, p in enumerate(params):
        stitched = torch.cat([results[0]["slices"][i], results[1]["slices"][i]]).reshape(p.shape)
        assert torch.equal(stitched, p.detach()), _LAYOUTS[i]
    assert "pass Muon(process_group=...)" in results[0]["error"]


def test_under_fsdp_the_state_dict_gives_every_parameter_every_state_tensor() -> None:
    """FSDP's optim_state_dict gathers state key by key and needs each key for every parameter."""
    model = _Mlp()
    optimizer = Muon(muon_param_groups(model))
    model(torch.randn(2, 32)).sum().backward()
    optimizer.step()
    lean = optimizer.state_dict()
    assert "exp_avg" not in lean["state"][0] and "momentum_buffer" in lean["state"][0]  # fc1.weight: Muon
    record_param_shapes(model)
    for param in model.parameters():
        param._fsdp_flattened = True  # as FSDP marks the parameters it manages
    padded = optimizer.state_dict()
    assert all({"momentum_buffer", "exp_avg", "exp_avg_sq"} <= set(s) for s in padded["state"].values())
    assert set(optimizer.state[model.fc1.weight]) == {"momentum_buffer"}  # the live state is untouched
    reloaded = Muon(muon_param_groups(model))
    reloaded.load_state_dict(padded)
    assert {n: set(reloaded.state[p]) for n, p in model.named_parameters()} == {
        n: set(optimizer.state[p]) for n, p in model.named_parameters()
    }
