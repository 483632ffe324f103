"""CogViT: input forms, QK-Norm, RoPE, padding, masking, presets, checkpointing, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from glmkit.models.encoders import ENCODERS, PRESETS, CogViT, EncoderOutput
from glmkit.nn.attention import is_xformers_available
from glmkit.nn.patch_embed import patchify
from glmkit.registry import RegistryError, registry

D = PRESETS["tiny"]["embed_dim"]


@pytest.fixture(scope="module")
def model() -> CogViT:
    torch.manual_seed(0)
    return CogViT.preset("tiny").eval()


def images(b: int = 2, h: int = 48, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_registered_as_cogvit() -> None:
    assert registry("encoders") is ENCODERS
    assert ENCODERS.get("cogvit") is CogViT


def test_image_input_shapes(model: CogViT) -> None:
    out = model(images())
    assert isinstance(out, EncoderOutput)
    assert out.patch_tokens.shape == (2, 3 * 2, D)
    assert out.prefix_tokens.shape == (2, model.num_prefix_tokens, D) == (2, 1 + 2, D)
    assert out.grid_size == (3, 2) and out.valid is None
    assert out.class_token.shape == (2, D)
    assert (model.embed_dim, model.patch_size) == (D, 16)


def test_any_resolution_runs(model: CogViT) -> None:
    out = model(images(1, 64, 112))
    assert out.patch_tokens.shape == (1, 4 * 7, D) and out.grid_size == (4, 7)


def test_naflex_input_shapes(model: CogViT) -> None:
    p = patchify(images(), 16)
    out = model(patches=p.patches, coords=p.coords, valid=p.valid)
    assert out.patch_tokens.shape == (2, 6, D) and out.grid_size is None
    assert torch.equal(out.valid, p.valid)


def test_no_prefix_tokens() -> None:
    enc = CogViT.preset("tiny", class_token=False, num_registers=0).eval()
    out = enc(images(1))
    assert enc.num_prefix_tokens == 0
    assert out.prefix_tokens.shape == (1, 0, D) and out.class_token is None


def test_image_path_equals_naflex_path(model: CogViT) -> None:
    x = images()
    p = patchify(x, 16)
    a = model(x)
    b = model(patches=p.patches, coords=p.coords, valid=p.valid)
    torch.testing.assert_close(a.patch_tokens, b.patch_tokens, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.prefix_tokens, b.prefix_tokens, atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_valid_tokens(model: CogViT) -> None:
    short, long = patchify(images(1, 32, 32, seed=1), 16), patchify(images(1, 48, 48, seed=2), 16)
    n_short, n_long = short.patches.shape[1], long.patches.shape[1]  # 4 and 9
    pad = n_long - n_short
    g = torch.Generator().manual_seed(3)
    # pad the short image with garbage patches at garbage coordinates
    patches = torch.cat(
        [short.patches, 50 * torch.randn(1, pad, short.patches.shape[-1], generator=g)], dim=1
    )
    coords = torch.cat([short.coords, torch.randint(0, 40, (1, pad, 2), generator=g)], dim=1)
    valid = torch.cat([short.valid, torch.zeros(1, pad, dtype=torch.bool)], dim=1)
    batch = model(
        patches=torch.cat([patches, long.patches]),
        coords=torch.cat([coords, long.coords]),
        valid=torch.cat([valid, long.valid]),
    )
    alone_short = model(patches=short.patches, coords=short.coords)
    alone_long = model(patches=long.patches, coords=long.coords)
    torch.testing.assert_close(
        batch.patch_tokens[0, :n_short], alone_short.patch_tokens[0], atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(batch.prefix_tokens[0], alone_short.prefix_tokens[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch.patch_tokens[1], alone_long.patch_tokens[0], atol=1e-5, rtol=1e-5)
    assert (batch.patch_tokens[0, n_short:] == 0).all()


def test_rope_makes_outputs_translation_invariant_and_position_aware(model: CogViT) -> None:
    p = patchify(images(), 16)
    base = model(patches=p.patches, coords=p.coords).patch_tokens
    # Unrotated prefix tokens act as an origin: patch-to-prefix scores see absolute positions.
    shifted = model(patches=p.patches, coords=p.coords + torch.tensor([5, 9])).patch_tokens
    assert not torch.allclose(shifted, base, atol=1e-3)
    # Without prefix tokens only coordinate differences matter.
    torch.manual_seed(0)
    bare = CogViT.preset("tiny", class_token=False, num_registers=0).eval()
    bare_base = bare(patches=p.patches, coords=p.coords).patch_tokens
    bare_shifted = bare(patches=p.patches, coords=p.coords + torch.tensor([5, 9])).patch_tokens
    torch.testing.assert_close(bare_shifted, bare_base, atol=1e-4, rtol=1e-4)
    perm = torch.randperm(p.patches.shape[1], generator=torch.Generator().manual_seed(0))
    permuted = model(patches=p.patches[:, perm], coords=p.coords[:, perm]).patch_tokens
    torch.testing.assert_close(permuted, base[:, perm], atol=1e-5, rtol=1e-5)
    swapped = model(patches=p.patches, coords=p.coords.flip(-1)).patch_tokens  # (y, x) -> (x, y)
    assert not torch.allclose(swapped, base, atol=1e-3)


def test_prefix_tokens_get_identity_rotation(model: CogViT) -> None:
    emb = model.embed(images())
    cos, sin = emb.rope
    t = model.num_prefix_tokens
    assert (cos[:, :t] == 1).all() and (sin[:, :t] == 0).all()
    assert not (sin[:, t:] == 0).all()


def test_qk_norm_modules_and_scale_invariance() -> None:
    torch.manual_seed(0)
    enc = CogViT.preset("tiny").eval()
    head_dim = D // enc.num_heads
    for block in enc.blocks:
        assert isinstance(block.attn.q_norm, nn.LayerNorm) and block.attn.q_norm.normalized_shape == (
            head_dim,
        )
        assert isinstance(block.attn.k_norm, nn.LayerNorm)
    assert isinstance(CogViT.preset("tiny", qk_norm_type="rmsnorm").blocks[0].attn.k_norm, nn.RMSNorm)
    plain = CogViT.preset("tiny", qk_norm=False).eval()
    assert isinstance(plain.blocks[0].attn.q_norm, nn.Identity)
    plain.load_state_dict({k: v for k, v in enc.state_dict().items() if "_norm" not in k}, strict=True)

    # QK-Norm makes attention invariant to the scale of the query projection; plain attention is not.
    x = images(1)
    before, before_plain = enc(x).patch_tokens, plain(x).patch_tokens
    with torch.no_grad():
        for m in (enc, plain):
            m.blocks[0].attn.qkv.weight[:D] *= 30.0
            m.blocks[0].attn.qkv.bias[:D] *= 30.0
    torch.testing.assert_close(enc(x).patch_tokens, before, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(plain(x).patch_tokens, before_plain, atol=1e-3)


def test_mask_token_replaces_only_masked_patch_embeddings(model: CogViT) -> None:
    x = images()
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, [1, 4]] = True
    mask[1, 0] = True
    token = torch.randn(D)
    plain = model.embed(x).tokens
    masked = model.embed(x, mask=mask, mask_token=token).tokens
    t = model.num_prefix_tokens
    assert torch.equal(masked[:, :t], plain[:, :t])  # prefix tokens untouched
    assert torch.equal(masked[:, t:][mask], token.expand(int(mask.sum()), D))
    assert torch.equal(masked[:, t:][~mask], plain[:, t:][~mask])
    # the forward pass uses it, and the gradient reaches the stage-owned token
    token.requires_grad_(True)
    model(x, mask=mask, mask_token=token).patch_tokens.sum().backward()
    assert token.grad is not None and token.grad.abs().sum() > 0


def test_mask_token_errors(model: CogViT) -> None:
    x = images()
    mask = torch.zeros(2, 6, dtype=torch.bool)
    with pytest.raises(ValueError, match="pass both or neither"):
        model(x, mask=mask)
    with pytest.raises(ValueError, match=r"mask must be a bool tensor \[B, N\] = \[2, 6\]"):
        model(x, mask=torch.zeros(2, 5, dtype=torch.bool), mask_token=torch.zeros(D))
    with pytest.raises(ValueError, match=rf"mask_token must have shape \[{D}\]"):
        model(x, mask=mask, mask_token=torch.zeros(D + 1))


def test_input_errors_name_the_values(model: CogViT) -> None:
    with pytest.raises(ValueError, match="H=40, W=32 is not divisible by patch_size=16"):
        model(images(1, 40, 32))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.randn(1, 1, 32, 32))
    p = patchify(images(1), 16)
    with pytest.raises(ValueError, match="not both"):
        model(images(1), patches=p.patches)
    with pytest.raises(ValueError, match="needs coords"):
        model(patches=p.patches)
    with pytest.raises(ValueError, match="16\\*16\\*3 = 768"):
        model(patches=p.patches[..., :-1], coords=p.coords)
    with pytest.raises(ValueError, match=r"valid must be a bool tensor \[B, N\] = \[1, 6\]"):
        model(patches=p.patches, coords=p.coords, valid=p.valid.float())
    with pytest.raises(ValueError, match="image batch x"):
        model()


def test_presets_param_counts() -> None:
    counts = {}
    for name in ("tiny", "base", "large"):
        with torch.device("meta"):
            counts[name] = sum(p.numel() for p in CogViT.preset(name).parameters())
    assert counts["tiny"] < 1e6
    assert 84e6 < counts["base"] < 88e6  # ViT-B/16
    assert 0.28e9 < counts["large"] < 0.4e9  # ViT-L/16


def test_preset_arguments_and_overrides() -> None:
    enc = CogViT(preset="tiny", depth=2, num_registers=0)
    assert len(enc.blocks) == 2 and enc.num_prefix_tokens == 1
    assert enc.config.embed_dim == PRESETS["tiny"]["embed_dim"]
    assert enc.init_args["depth"] == 2 and "preset" not in enc.init_args
    assert CogViT(**enc.init_args).config == enc.config  # the recorded args rebuild the same shape
    with pytest.raises(ValueError, match="unknown CogViT preset 'larg'. Did you mean 'large'"):
        CogViT(preset="larg")
    with pytest.raises(ValueError, match="embed_dim=96 is not divisible by num_heads=5"):
        CogViT(preset="tiny", num_heads=5)
    with pytest.raises(RegistryError, match="unknown attention 'flash'"):
        CogViT(preset="tiny", attn_backend="flash")


def test_jsonargparse_builds_from_preset_and_prints_none_defaults() -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(CogViT, "encoder")
    cfg = parser.parse_object({"encoder": {"preset": "tiny", "depth": 1}})
    assert cfg.encoder.embed_dim is None  # "from preset" until built
    enc = parser.instantiate_classes(cfg).encoder
    assert isinstance(enc, CogViT) and len(enc.blocks) == 1 and enc.embed_dim == D


def test_swiglu_and_layer_scale_variants() -> None:
    enc = CogViT.preset("tiny", mlp_type="swiglu", layer_scale_init=1e-5, norm_type="rmsnorm")
    out = enc(images(1))
    assert torch.isfinite(out.patch_tokens).all()
    assert enc.blocks[0].ls1.gamma.shape == (D,)
    assert isinstance(enc.norm, nn.RMSNorm)


def test_grad_checkpointing_gives_identical_outputs_and_grads() -> None:
    torch.manual_seed(0)
    enc = CogViT.preset("tiny").train()
    x = images()
    p = patchify(images(), 16)
    valid = p.valid.clone()
    valid[1, -2:] = False

    def run() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        enc.zero_grad(set_to_none=True)
        out = (
            enc(x).patch_tokens.square().mean()
            + enc(patches=p.patches, coords=p.coords, valid=valid).patch_tokens.square().mean()
        )
        out.backward()
        return out.detach(), {n: q.grad.clone() for n, q in enc.named_parameters()}

    loss, grads = run()
    enc.set_grad_checkpointing(True)
    loss_ckpt, grads_ckpt = run()
    torch.testing.assert_close(loss_ckpt, loss, atol=0, rtol=0)
    for name in grads:
        torch.testing.assert_close(grads_ckpt[name], grads[name], atol=1e-7, rtol=1e-6, msg=name)


def test_attention_backend_switch() -> None:
    enc = CogViT.preset("tiny", attn_backend="xformers")
    assert enc.blocks[0].attn.attn_backend == "xformers"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="attn_backend='sdpa'"):
            enc(images(1))
    enc.set_attn_backend("sdpa")
    assert enc(images(1)).patch_tokens.shape == (1, 6, D)
    with pytest.raises(RegistryError):
        enc.set_attn_backend("nope")


def test_bf16_autocast_on_cpu(model: CogViT) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images(1))
    assert torch.isfinite(out.patch_tokens.float()).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(
    "backend",
    [
        "sdpa",
        pytest.param("xformers", marks=pytest.mark.skipif(not is_xformers_available(), reason="no xformers")),
    ],
)
def test_cuda_bf16_matches_cpu_fp32(backend: str) -> None:
    torch.manual_seed(0)
    enc = CogViT.preset("tiny").eval()
    p = patchify(images(), 16)
    valid = p.valid.clone()
    valid[0, -2:] = False
    ref = enc(patches=p.patches, coords=p.coords, valid=valid).patch_tokens
    enc = enc.cuda()
    enc.set_attn_backend(backend)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = enc(patches=p.patches.cuda(), coords=p.coords.cuda(), valid=valid.cuda()).patch_tokens
    torch.testing.assert_close(out.float().cpu(), ref, atol=0.1, rtol=0.05)
