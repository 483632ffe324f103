"""Stage 1 under FSDP keeps Muon: routing by original shapes, whole-matrix orthogonalisation of shards.

Lightning's FSDP strategy needs CUDA, so the stage is wrapped with torch FSDP on 2 gloo processes
the way Lightning wraps it (``use_orig_params=True``, model wrapped before ``configure_optimizers``),
once as one FSDP unit and once with every encoder block its own unit (nested names). The parameter
shapes are recorded before wrapping, as the stage does in a hook that runs before the strategy.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from glmkit.data.masking import RandomMask
from glmkit.models.encoders import CogViT
from glmkit.models.encoders.cogvit import CogViTBlock
from glmkit.models.teachers import DINOv3Teacher
from glmkit.optim import MuonAdamW, clean_param_name, record_param_shapes
from glmkit.stages import MIMDistill
from tests.helpers.distributed import run_on_ranks

STEPS = 2  # the second step starts from the momentum the first left in each rank's slice


def _stage() -> MIMDistill:
    torch.manual_seed(0)
    return MIMDistill(
        encoder=CogViT.preset("tiny"),
        teachers={"dinov3": DINOv3Teacher.preset("tiny", image_size=64)},
        masking=RandomMask(0.35),
        optimization=MuonAdamW(lr=0.01, weight_decay=0.05, nesterov=True),  # the recipe's settings
    )


def _images(rank: int, step: int) -> torch.Tensor:
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(100 * step + rank))


def _routing(groups: list[dict]) -> dict[str, tuple]:
    return {g["name"]: (g["param_names"], g["orig_shapes"], g.get("muon_blocks")) for g in groups}


class _DistillStep(torch.nn.Module):
    """Runs the stage's loss through ``forward``, the way Lightning's strategies call training_step."""

    def __init__(self, stage: MIMDistill) -> None:
        super().__init__()
        self.stage = stage

    def forward(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.stage.distill(images, mask)["loss"]


def _fsdp_muon_steps(rank: int, world: int) -> dict:
    from torch.distributed.fsdp import FullOptimStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    torch.set_num_threads(1)
    results = {}
    for nested in (False, True):
        stage = _stage()
        record_param_shapes(stage)
        policy = ModuleWrapPolicy({CogViTBlock}) if nested else None
        wrapped = FSDP(
            _DistillStep(stage), device_id=torch.device("cpu"), use_orig_params=True, auto_wrap_policy=policy
        )
        optimizer = stage.optimization.build(stage, total_steps=10)["optimizer"]
        muon = next(g for g in optimizer.param_groups if g["name"] == "muon")
        split = [
            n
            for n, p, s in zip(muon["param_names"], muon["params"], muon["orig_shapes"], strict=True)
            if 0 < p.numel() < s[0] * s[1]
        ]
        grads = []
        for step in range(STEPS):
            optimizer.zero_grad()
            wrapped(_images(rank, step), stage.draw_mask(2, (4, 4), split="train", step=step)).backward()
            optimizer.step()
            with FSDP.summon_full_params(wrapped, with_grads=True):
                grads.append(
                    {
                        clean_param_name(n): p.grad.clone()
                        for n, p in stage.named_parameters()
                        if p.grad is not None
                    }
                )
        with FSDP.summon_full_params(wrapped):
            params = {clean_param_name(n): p.detach().clone() for n, p in stage.named_parameters()}
        # Lightning's checkpoint: FSDP gathers the sharded state into whole tensors, then loads it back.
        # offload_to_cpu=False: on a CPU device FSDP's ".cpu()" returns views of one buffer it
        # reuses for every state key, so each key would read the last one's values (torch 2.14)
        config = FullOptimStateDictConfig(offload_to_cpu=False)
        with FSDP.state_dict_type(wrapped, StateDictType.FULL_STATE_DICT, optim_state_dict_config=config):
            full = FSDP.optim_state_dict(wrapped, optimizer)
        checkpoint = {
            k: full["state"][f"stage.{k}"] for k in ("encoder.blocks.0.attn.qkv.weight", "mask_token")
        }
        before = {
            id(p): {k: v.clone() for k, v in s.items() if torch.is_tensor(v)}
            for p, s in optimizer.state.items()
        }
        optimizer.load_state_dict(FSDP.optim_state_dict_to_load(wrapped, optimizer, full))
        checkpoint["reloaded_equal"] = all(
            set(before[id(p)]) == {k for k, v in s.items() if torch.is_tensor(v)}
            and all(torch.equal(v, s[k]) for k, v in before[id(p)].items())
            for p, s in optimizer.state.items()
        )
        results[nested] = {
            "routing": _routing(optimizer.param_groups),
            "ndims": {p.ndim for g in optimizer.param_groups for p in g["params"]},
            "split_across_ranks": split,
            "grads": grads,
            "params": params,
            "checkpoint": checkpoint,
        }
    return results


def _unsharded_steps(grads: list[dict[str, torch.Tensor]]) -> tuple[MIMDistill, torch.optim.Optimizer]:
    """The single-process reference: the same stage and optimizer, fed the gradients FSDP reduced."""
    stage = _stage()
    optimizer = stage.optimization.build(stage, total_steps=10)["optimizer"]
    params = dict(stage.named_parameters())
    for step_grads in grads:
        optimizer.zero_grad()
        for name, grad in step_grads.items():
            params[name].grad = grad.clone()
        optimizer.step()
    return stage, optimizer


@pytest.mark.distributed
def test_fsdp_keeps_muon_routing_and_its_steps_equal_the_unsharded_steps(tmp_path: Path) -> None:
    ranks = run_on_ranks(_fsdp_muon_steps, 2, tmp_path)
    stage = _stage()
    expected = _routing(stage.optimization.build(stage, total_steps=10)["optimizer"].param_groups)
    sizes = {name: len(names) for name, (names, _, _) in expected.items()}
    assert sizes == {"muon": 13, "adamw": 2, "adamw_no_decay": 46}
    qkv = "encoder.blocks.0.attn.qkv.weight"
    assert expected["muon"][2][expected["muon"][0].index(qkv)] == 3  # q, k and v orthogonalised apart
    initial_qkv = stage.encoder.blocks[0].attn.qkv.weight.detach().clone()
    for nested in (False, True):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as on the ranks: the same Newton-Schulz matmuls, bit for bit
        try:
            reference, optimizer = _unsharded_steps(ranks[0][nested]["grads"])
        finally:
            torch.set_num_threads(threads)
        params = dict(reference.named_parameters())
        for rank, result in enumerate(r[nested] for r in ranks):
            where = f"rank {rank}, {'an FSDP unit per block' if nested else 'one FSDP unit'}"
            assert result["ndims"] == {1}, where  # every parameter really is a flat slice
            assert result["routing"] == expected, where
            assert result["split_across_ranks"], where  # some Muon matrices straddle the two ranks
            for name, value in params.items():
                torch.testing.assert_close(
                    result["params"][name], value.detach(), rtol=0, atol=0, msg=where + name
                )
            assert (result["params"][qkv] - initial_qkv).abs().max() > 1e-3, where  # not a vacuous comparison
            # the gathered checkpoint holds each parameter's own state, whole, and reloads unchanged
            checkpoint = result["checkpoint"]
            assert checkpoint["reloaded_equal"], where
            momentum = optimizer.state[params[qkv]]["momentum_buffer"]
            torch.testing.assert_close(checkpoint[qkv]["momentum_buffer"], momentum)
            second_moment = optimizer.state[params["mask_token"]]["exp_avg_sq"]
            torch.testing.assert_close(checkpoint["mask_token"]["exp_avg_sq"], second_moment)
