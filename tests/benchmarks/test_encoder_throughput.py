"""benchmarks/encoder_throughput.py: the analytic FLOP count is a function of the shape alone."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from torch import nn

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "encoder_throughput.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    # benchmarks/ is not a package: load the script from its path
    spec = importlib.util.spec_from_file_location("encoder_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _args(bench: ModuleType, *extra: str):
    return bench.parse_args(["--preset", "tiny", "--image-size", "32", "--device", "cpu", *extra])


def test_rows_of_one_shape_get_the_hand_computed_flops(bench: ModuleType) -> None:
    args = _args(bench)
    flops = {name: bench.train_flops(bench.row_config(name, args), 4, 32) for name in bench.row_names(args)}
    # tiny: D=96, depth 3, patch 16, 3 channels, class + 2 registers; 32 px -> 4 patches, L = 7, B = 4
    dim, depth, batch, patches, seq = 96, 3, 4, 4, 7
    patch_embed = 4 * (16 * 16 * 3 * dim) * batch * patches  # no input gradient: 4x, patches only
    blocks = 6 * depth * (3 * dim * dim + dim * dim + 2 * dim * 4 * dim) * batch * seq
    attention = 12 * depth * batch * seq**2 * dim
    assert set(flops) == {"cogvit", "cogvit-plain", "timm-vit"}
    assert set(flops.values()) == {float(patch_embed + blocks + attention)}


@pytest.mark.parametrize("mlp_type", ["gelu", "swiglu"])
def test_analytic_weights_match_the_built_models(bench: ModuleType, mlp_type: str) -> None:
    args = _args(bench)
    cfg = bench.resolve_config("tiny", mlp_type=mlp_type)
    cogvit = bench.CogViT(**vars(cfg))
    models = {"cogvit": cogvit}
    if mlp_type == "gelu":  # the timm row has a GELU MLP only
        models["timm-vit"] = bench.build_row("timm-vit", args)[0]
    for name, model in models.items():
        block_linears = sum(m.weight.numel() for m in model.blocks.modules() if isinstance(m, nn.Linear))
        assert block_linears == cfg.depth * bench.block_matmul_weights(cfg), name
        # CogViT embeds patches with a Linear, timm with a stride-P Conv2d: same weight count
        assert model.patch_embed.proj.weight.numel() == 16 * 16 * 3 * cfg.embed_dim, name


def test_memory_steps_must_be_positive(bench: ModuleType) -> None:
    with pytest.raises(SystemExit):
        _args(bench, "--memory-steps", "0")
