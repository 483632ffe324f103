"""MTP heads on tiny random Llama / Qwen2: structure, the DeepSeek-V3 equations, packing, image inputs."""

from __future__ import annotations

import pytest
import torch

from glmkit.models.mtp import (
    MTP_HEADS,
    MTP_IMAGE_INPUTS,
    LearnedImageToken,
    MaskedImageInput,
    MTPCausalLM,
    MTPHeads,
    VisualImageInput,
)
from glmkit.registry import RegistryError
from tests.models.mtp.tiny import tiny_llm


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("depths", [1, 3])
def test_builds_the_llms_own_decoder_layer_per_depth(kind: str, depths: int) -> None:
    llm = tiny_llm(kind, tie=kind == "qwen2")
    model = MTPCausalLM(llm, depths=depths)
    assert model.depths == depths
    for layer in model.mtp.layers:
        assert type(layer.block) is type(llm.model.layers[0])
        assert layer.eh_proj.weight.shape == (32, 64) and layer.eh_proj.bias is None
        assert type(layer.enorm) is type(llm.model.norm)
        # initialised like the LLM (normal, std = initializer_range), norms at one
        assert layer.eh_proj.weight.std().item() == pytest.approx(llm.config.initializer_range, rel=0.2)
        assert torch.equal(layer.shared_head.norm.weight, torch.ones(32))
    ids = torch.randint(0, 16, (2, 7))
    out = model(ids)
    assert out.logits.shape == (2, 7, 16) and len(out.mtp_logits) == depths
    assert all(logits.shape == (2, 7, 16) for logits in out.mtp_logits)
    # the embedding and head are the LLM's: no parameter is held twice
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in llm.parameters()) + sum(
        p.numel() for p in model.mtp.parameters()
    )


def test_depth_one_follows_the_deepseek_v3_equations_embedding_first() -> None:
    """h' = eh_proj([enorm(Emb(t_{i+1})); hnorm(h_i)]), then the block at position i, then shared_head.norm."""
    model = MTPCausalLM(tiny_llm("llama"), depths=1).eval()
    ids = torch.randint(0, 16, (1, 6), generator=torch.Generator().manual_seed(1))
    out = model(ids)
    layer = model.mtp.layers[0]
    emb = model.embed(ids)
    shifted = torch.cat([emb[:, 1:], torch.zeros_like(emb[:, :1])], dim=1)
    x = layer.eh_proj(torch.cat([layer.enorm(shifted), layer.hnorm(out.hidden_states)], dim=-1))
    positions = torch.arange(6)[None]
    rope = model.llm.model.rotary_emb(x, positions)
    causal = torch.full((6, 6), float("-inf")).triu(1)[None, None]
    h = layer.block(x, attention_mask=causal, position_ids=positions, position_embeddings=rope)
    expected = model.llm.lm_head(layer.shared_head.norm(h))
    torch.testing.assert_close(out.mtp_logits[0][:, :5], expected[:, :5], rtol=1e-5, atol=1e-5)
    # and the main hidden state is the one after the final norm
    torch.testing.assert_close(model.llm.lm_head(out.hidden_states), out.logits)


def test_the_embedding_half_of_eh_proj_comes_first() -> None:
    model = MTPCausalLM(tiny_llm("llama"), depths=1).eval()
    with torch.no_grad():
        model.mtp.layers[0].eh_proj.weight[:, 32:] = 0  # keep only the first (embedding) half
    ids = torch.randint(0, 16, (1, 6))
    heads, embeds = model.mtp, model.embed(ids)
    base = heads(torch.randn(1, 6, 32), embeds)[0]
    other_hidden = heads(torch.randn(1, 6, 32), embeds)[0]
    torch.testing.assert_close(base, other_hidden)  # h does not matter once its half is zero
    assert not torch.allclose(base[:, :5], heads(torch.randn(1, 6, 32), torch.randn(1, 6, 32))[0][:, :5])


def test_blocks_run_at_the_main_models_position_ids() -> None:
    model = MTPCausalLM(tiny_llm("llama"), depths=2).eval()
    seen = []
    # the rotary embedding is the LLM's own module, shared: it sees the main model's call, then the heads'
    model.mtp.rotary_emb.register_forward_hook(
        lambda module, args, kwargs, out: seen.append(kwargs.get("position_ids", args[-1]).clone()),
        with_kwargs=True,
    )
    positions = torch.tensor([[5, 6, 7, 8, 9]])
    model(torch.randint(0, 16, (1, 5)), position_ids=positions)
    assert model.mtp.rotary_emb is model.llm.model.rotary_emb
    assert len(seen) == 2 and all(torch.equal(p, positions) for p in seen)  # position i, not i + k


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_packed_sequences_equal_separate_forwards(kind: str) -> None:
    model = MTPCausalLM(tiny_llm(kind), depths=2).eval()
    generator = torch.Generator().manual_seed(2)
    a, b = (
        torch.randint(0, 16, (1, 5), generator=generator),
        torch.randint(0, 16, (1, 4), generator=generator),
    )
    packed = model(
        torch.cat([a, b, torch.zeros(1, 2, dtype=torch.long)], dim=1), seq_lens=torch.tensor([[5, 4]])
    )
    assert packed.sequence_ids.tolist() == [[0] * 5 + [1] * 4 + [-1] * 2]
    for seq, start in ((a, 0), (b, 5)):
        alone = model(seq)
        length = seq.shape[1]
        torch.testing.assert_close(
            packed.logits[:, start : start + length], alone.logits, rtol=1e-4, atol=1e-5
        )
        for k in range(2):
            valid = length - (k + 1)  # positions whose shifted token lies inside the sequence
            torch.testing.assert_close(
                packed.mtp_logits[k][:, start : start + valid],
                alone.mtp_logits[k][:, :valid],
                rtol=1e-4,
                atol=1e-5,
            )


def test_image_input_strategies() -> None:
    embeds = torch.randn(2, 5, 8)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, 1:3] = True
    assert torch.equal(VisualImageInput(8)(embeds, mask), embeds)
    masked = MaskedImageInput(8)(embeds, mask)
    assert torch.equal(masked[0, 1:3], torch.zeros(2, 8)) and torch.equal(masked[~mask], embeds[~mask])
    learned = LearnedImageToken(8)
    filled = learned(embeds, mask)
    assert torch.equal(filled[0, 1], learned.embedding.data) and torch.equal(filled[~mask], embeds[~mask])
    filled.sum().backward()
    assert learned.embedding.grad is not None and learned.embedding.grad.abs().sum() > 0
    assert set(MTP_IMAGE_INPUTS.names()) >= {"visual", "mask", "image_token"}


def test_image_token_is_the_default_and_reaches_the_heads_only_at_image_positions() -> None:
    model = MTPCausalLM(tiny_llm("llama"), depths=1).eval()
    assert isinstance(model.mtp.image_input, LearnedImageToken)
    ids = torch.randint(0, 16, (1, 8))
    embeds = model.embed(ids).detach()
    image = torch.zeros(1, 8, dtype=torch.bool)
    image[0, 3:5] = True  # two visual tokens
    embeds[image] = torch.randn(2, 32)
    out = model(inputs_embeds=embeds, image_mask=image)
    out.mtp_logits[0].sum().backward()
    assert model.mtp.image_input.embedding.grad.abs().sum() > 0
    # positions whose shifted input is text (and whose h does not see the image) ignore the vector
    before = out.mtp_logits[0][:, :2].detach()
    with torch.no_grad():
        model.mtp.image_input.embedding.add_(1.0)
    after = model(inputs_embeds=embeds, image_mask=image).mtp_logits[0]
    torch.testing.assert_close(after[:, :2], before)
    assert not torch.allclose(after[:, 2:4], out.mtp_logits[0][:, 2:4].detach())


def test_drafting_steps_with_a_cache_equal_the_full_forward() -> None:
    from transformers import DynamicCache

    model = MTPCausalLM(tiny_llm("qwen2"), depths=1).eval()
    ids = torch.randint(0, 16, (1, 7))
    with torch.no_grad():
        full = model(ids)
        tokens = model.embed(ids)
        cache = DynamicCache()
        first = model.mtp.step(1, full.hidden_states[:, :3], tokens[:, 1:4], torch.arange(3)[None], cache)[1]
        second = model.mtp.step(
            1, full.hidden_states[:, 3:6], tokens[:, 4:7], torch.arange(3, 6)[None], cache
        )[1]
    stepped = model.head(torch.cat([first, second], dim=1))
    torch.testing.assert_close(stepped, full.mtp_logits[0][:, :6], rtol=1e-4, atol=1e-5)


def test_gradients_reach_heads_embedding_and_llm() -> None:
    model = MTPCausalLM(tiny_llm("llama"), depths=2)
    out = model(torch.randint(0, 16, (2, 6)))
    out.mtp_logits[1].sum().backward()
    assert model.mtp.layers[1].eh_proj.weight.grad is not None
    assert model.llm.model.embed_tokens.weight.grad.abs().sum() > 0
    assert model.llm.model.layers[0].mlp.up_proj.weight.grad.abs().sum() > 0


def test_registry_and_errors() -> None:
    assert MTP_HEADS.get("deepseek_v3") is MTPHeads
    llm = tiny_llm("llama")
    with pytest.raises(ValueError, match="depths .* must be an int >= 1, got 0"):
        MTPHeads(llm, depths=0)
    with pytest.raises(RegistryError, match="Did you mean 'image_token'"):
        MTPHeads(llm, image_input="image_tokn")
    with pytest.raises(ValueError, match="built for hidden_size 8, but the LLM's hidden size is 32"):
        MTPHeads(llm, image_input=LearnedImageToken(8))
    with pytest.raises(TypeError, match="cannot find its decoder layers"):
        MTPHeads(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="image_mask must be a bool tensor"):
        LearnedImageToken(4)(torch.zeros(1, 2, 4), torch.zeros(1, 2))
