"""The hooks a VLM uses: MTP heads on a transformers VLM's language model, inputs_embeds, image mask, M-RoPE ids."""

from __future__ import annotations

import torch

from glmkit.inference import generate
from glmkit.models.mtp import MTPCausalLM


def _tiny_glm4v():
    from transformers import Glm4vConfig, Glm4vForConditionalGeneration

    torch.manual_seed(0)
    rope = {
        "rope_type": "default",
        "rope_theta": 10000.0,
        "mrope_section": [1, 1, 0],
        "partial_rotary_factor": 0.5,
    }
    text = {
        "vocab_size": 64,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
    }
    vision = {"depth": 1, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "out_hidden_size": 32}
    config = Glm4vConfig(
        text_config={**text, "num_key_value_heads": 2, "rope_parameters": rope}, vision_config=vision
    )
    return Glm4vForConditionalGeneration(config).double().eval()


def _prompt(model: MTPCausalLM) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two text tokens, a 2x2 image (4 visual tokens), four text tokens; GLM-V's 3-D M-RoPE ids."""
    ids = torch.randint(0, 64, (1, 10), generator=torch.Generator().manual_seed(0))
    image = torch.zeros(1, 10, dtype=torch.bool)
    image[0, 2:6] = True
    with torch.no_grad():
        embeds = model.embed(ids)
        embeds[image] = torch.randn(4, 32, dtype=torch.float64)  # stands in for the projector's output
    t = torch.tensor([0, 1, 2, 2, 2, 2, 4, 5, 6, 7])
    h = torch.tensor([0, 1, 2, 2, 3, 3, 4, 5, 6, 7])
    w = torch.tensor([0, 1, 2, 3, 2, 3, 4, 5, 6, 7])
    return embeds, image, torch.stack([t, h, w])[:, None]  # 3, 1, T


def test_mtp_on_a_transformers_vlm_with_mrope_ids(tmp_path) -> None:
    vlm = _tiny_glm4v()
    model = MTPCausalLM(vlm, depths=2)
    assert model.layer_prefix == "model.language_model.layers."
    assert type(model.mtp.layers[0].block).__name__ == "Glm4vTextDecoderLayer"
    embeds, image, positions = _prompt(model)
    out = model(inputs_embeds=embeds, image_mask=image, position_ids=positions)
    assert out.logits.shape == (1, 10, 64) and len(out.mtp_logits) == 2

    # speculative greedy decoding equals greedy decoding by full forwards without a cache
    spec = generate(
        model,
        inputs_embeds=embeds,
        image_mask=image,
        position_ids=positions,
        max_new_tokens=10,
        num_draft_tokens=2,
    )
    tokens, current, current_pos = [], embeds, positions
    with torch.no_grad():
        for _ in range(10):
            tokens.append(int(vlm(inputs_embeds=current, position_ids=current_pos).logits[0, -1].argmax()))
            current = torch.cat([current, model.embed(torch.tensor([[tokens[-1]]]))], dim=1)
            current_pos = torch.cat([current_pos, torch.full((3, 1, 1), int(current_pos.max()) + 1)], dim=-1)
    assert spec.sequences[0].tolist() == tokens

    model.save_pretrained(tmp_path)
    from transformers import AutoModelForImageTextToText

    loaded = MTPCausalLM.from_pretrained(tmp_path, auto_class=AutoModelForImageTextToText)
    assert loaded.mtp_load_report.fresh_depths == [] and loaded.mtp_load_report.missing == []
