"""Teacher-target preparation: grid resampling and per-teacher normalisation."""

from __future__ import annotations

import pytest
import torch

from glmkit.models.adaptors import MLPAdaptor
from glmkit.models.distill_targets import (
    LayerNormTarget,
    PHISNorm,
    TargetResamplingWarning,
    resample_to_grid,
)
from tests.helpers.distributed import run_on_ranks


def test_resample_identity_and_constant_fields() -> None:
    feats = torch.randn(2, 16 * 16, 8)
    assert resample_to_grid(feats, (16, 16), (16, 16)) is feats
    const = torch.ones(2, 16 * 16, 8) * torch.arange(8.0)
    with pytest.warns(TargetResamplingWarning):
        out = resample_to_grid(const, (16, 16), (14, 14))
    assert out.shape == (2, 14 * 14, 8)
    assert torch.allclose(out, torch.ones(2, 196, 8) * torch.arange(8.0), atol=1e-5)


def test_resample_keeps_spatial_layout() -> None:
    # a left/right split stays a left/right split (row-major token order preserved)
    grid = torch.zeros(1, 1, 16, 16)
    grid[..., 8:] = 1.0
    feats = grid.flatten(2).transpose(1, 2)  # 1, 256, 1
    out = resample_to_grid(feats, (16, 16), (4, 4)).view(4, 4)
    assert torch.allclose(out[:, 0], torch.zeros(4), atol=1e-6)
    assert torch.allclose(out[:, 3], torch.ones(4), atol=1e-6)
    assert (out[:, 1] < 0.5).all() and (out[:, 2] > 0.5).all()
    assert torch.allclose(out, out[:1].expand(4, 4))  # rows are identical: no vertical mixing


def test_resampling_by_a_non_integer_factor_warns_naming_teacher_and_grids() -> None:
    import warnings

    with pytest.warns(TargetResamplingWarning, match=r"teacher 'siglip2': its 16x16 .* student's 14x14 grid"):
        resample_to_grid(torch.zeros(1, 256, 4), (16, 16), (14, 14), teacher="siglip2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # whole factors (down and up) and equal grids are silent
        resample_to_grid(torch.zeros(1, 28 * 28, 4), (28, 28), (14, 14), teacher="dinov3")
        resample_to_grid(torch.zeros(1, 49, 4), (7, 7), (14, 14), teacher="dinov3")
        resample_to_grid(torch.zeros(1, 196, 4), (14, 14), (14, 14), teacher="dinov3")


def test_resample_rejects_wrong_token_count() -> None:
    with pytest.raises(ValueError, match=r"100 tokens but the grid \(8, 8\) has 64"):
        resample_to_grid(torch.zeros(1, 100, 4), (8, 8), (4, 4))


def test_layernorm_target_standardises_each_token() -> None:
    out = LayerNormTarget(32)(torch.randn(4, 10, 32) * 50 + 7)
    assert torch.allclose(out.mean(-1), torch.zeros(4, 10), atol=1e-4)
    assert torch.allclose(out.var(-1, unbiased=False), torch.ones(4, 10), atol=1e-3)


@pytest.mark.parametrize("dim", [16, 12])  # Hadamard (power of two) and random-rotation paths
def test_phis_whitens_to_isotropic_unit_variance(dim: int) -> None:
    torch.manual_seed(0)
    scales = torch.logspace(-1, 2, dim)
    mixing = torch.linalg.qr(torch.randn(dim, dim))[0]
    x = (torch.randn(20000, dim) * scales) @ mixing + 5.0
    norm = PHISNorm(dim, estimate_steps=1).train()
    y = norm(x.unsqueeze(0)).squeeze(0)
    assert torch.allclose(y.mean(0), torch.zeros(dim), atol=1e-3)
    # every channel gets the same variance (isotropic), and on average it is 1
    var = y.var(0, unbiased=False)
    assert torch.allclose(var.mean(), torch.tensor(1.0), atol=1e-3)
    assert (var.max() / var.min()).item() < 1.5
    # the map is a scaled rotation: pairwise distances shrink by one common factor
    d_in, d_out = torch.pdist(x[:50]), torch.pdist(y[:50])
    ratio = d_out / d_in
    assert torch.allclose(ratio, ratio.mean().expand_as(ratio), rtol=1e-3)


def test_phis_freezes_after_estimate_steps_and_round_trips_state() -> None:
    norm = PHISNorm(8, estimate_steps=2).train()
    for _ in range(3):
        norm(torch.randn(1, 64, 8) * 3)
    assert int(norm.steps_seen) == 2
    frozen = norm.transform.clone()
    norm(torch.randn(1, 64, 8) * 100)
    assert torch.equal(norm.transform, frozen)
    clone = PHISNorm(8, estimate_steps=2)
    clone.load_state_dict(norm.state_dict())
    x = torch.randn(1, 5, 8)
    assert torch.equal(clone.eval()(x), norm.eval()(x))
    assert clone.ready and torch.equal(clone.sum_outer, norm.sum_outer)
    with pytest.raises(
        ValueError,
        match=r"statistic 'sum' of the checkpoint has shape \[8\], but this PHISNorm\(dim=4\) needs \[4\]",
    ):
        PHISNorm(4).load_state_dict(norm.state_dict())


def test_phis_statistics_are_never_cast() -> None:
    """A bf16 copy of a float64 running sum loses updates (300 + 1 == 300 in bf16); casts of the
    module (model.to(bfloat16), FSDP's buffer_dtype) must leave the statistics alone."""
    norm = PHISNorm(4, estimate_steps=3).train()
    norm(torch.randn(1, 300, 4))
    norm.to(torch.bfloat16)
    norm(torch.randn(1, 1, 4))
    assert norm.count.dtype == norm.sum_outer.dtype == torch.float64 and float(norm.count) == 301
    assert norm.transform.dtype == torch.float32
    assert not list(norm.buffers())  # nothing a buffer caster could reach
    with torch.device("meta"):
        lazy = PHISNorm(4)
    lazy.to_empty(device="cpu")
    assert torch.equal(lazy.transform, torch.eye(4)) and float(lazy.count) == 0


def test_mlp_adaptor_shapes_and_output_layer_name() -> None:
    head = MLPAdaptor(16, 40, num_layers=3)
    assert head(torch.randn(2, 5, 16)).shape == (2, 5, 40)
    assert any(n.startswith("out.") for n, _ in head.named_parameters())
    with pytest.raises(ValueError, match="num_layers >= 1"):
        MLPAdaptor(4, 4, num_layers=0)


def _phis_stats(rank: int, world: int, chunks: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    norm = PHISNorm(chunks[rank].shape[-1], estimate_steps=1).train()
    norm(chunks[rank].unsqueeze(0))
    return norm.mean.clone(), norm.transform.clone()


@pytest.mark.distributed
def test_phis_statistics_are_all_reduced_across_ranks(tmp_path) -> None:
    """Every rank of a 2-process gloo group normalises exactly like one process over all data."""
    torch.manual_seed(0)
    data = torch.randn(2, 500, 8) * torch.linspace(0.5, 4, 8) + 1.0
    single = PHISNorm(8, estimate_steps=1).train()
    single(data.reshape(1, 1000, 8))
    for mean, transform in run_on_ranks(_phis_stats, 2, tmp_path, list(data)):
        assert torch.allclose(mean, single.mean, atol=1e-5)
        assert torch.allclose(transform, single.transform, atol=1e-4)


def test_phis_loads_checkpoints_that_kept_statistics_as_buffers() -> None:
    """Before the statistics became extra state they were six buffers; such checkpoints still load."""
    norm = PHISNorm(4, estimate_steps=1).train()
    norm(torch.randn(1, 50, 4) * 2 + 1)
    legacy = {name: value.clone() for name, value in norm.get_extra_state().items()}
    clone = PHISNorm(4, estimate_steps=1)
    clone.load_state_dict(legacy)  # strict
    assert clone.ready and torch.equal(clone.transform, norm.transform)


def test_phis_statistics_follow_the_features_device() -> None:
    """FSDP moves parameters and buffers to the GPU without ``_apply``; the statistics then move on
    first use (shown here with the meta device, which needs no GPU)."""
    norm = PHISNorm(4).eval()
    out = norm(torch.randn(2, 3, 4, device="meta"))
    assert out.device.type == "meta" and norm.transform.device.type == "meta"
