"""MTPCausalLM over heads a training stage already holds: shared, not copied, and saved loadably."""

from __future__ import annotations

import pytest
import torch

from glmkit.models.mtp import MTPCausalLM, MTPHeads
from tests.models.mtp.tiny import tiny_llm


def test_existing_heads_are_used_as_they_are(tmp_path) -> None:
    llm = tiny_llm("llama", 16, seed=3)
    heads = MTPHeads(llm, depths=2, image_input="mask")
    model = MTPCausalLM(llm, heads=heads)
    assert model.mtp is heads and model.llm is llm and model.depths == 2
    assert model.training and not MTPCausalLM(llm.eval(), heads=heads).training  # the LLM's mode
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in llm.parameters()) + sum(
        p.numel() for p in heads.parameters()
    )  # nothing copied or added
    ids = torch.randint(0, 16, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        heads.layers[1].eh_proj.weight.mul_(2)  # a change to the stage's heads shows in the view
        out = model(ids)
        hidden = llm(ids, output_hidden_states=True).hidden_states[-1]
        direct = [llm.lm_head(h) for h in heads(hidden, llm.get_input_embeddings()(ids))]
    for got, expected in zip(out.mtp_logits, direct, strict=True):
        torch.testing.assert_close(got, expected)
    # the view saves a checkpoint that loads back with the same heads
    model.save_pretrained(tmp_path)
    loaded = MTPCausalLM.from_pretrained(tmp_path)
    assert loaded.depths == 2 and type(loaded.mtp.image_input) is type(heads.image_input)
    for (name, a), (_, b) in zip(heads.state_dict().items(), loaded.mtp.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_heads_that_do_not_fit_are_refused() -> None:
    llm = tiny_llm("llama", 16, seed=3)
    heads = MTPHeads(llm, depths=1)
    with pytest.raises(ValueError, match="depths=2 but the given heads have 1"):
        MTPCausalLM(llm, depths=2, heads=heads)
    with pytest.raises(ValueError, match="image_input='visual' but the given heads read 'image_token'"):
        MTPCausalLM(llm, image_input="visual", heads=heads)
    deeper = tiny_llm("llama", 16, seed=3, layers=3)
    with pytest.raises(ValueError, match="built for an LLM of 2 layers"):
        MTPCausalLM(deeper, heads=heads)
    with pytest.raises(TypeError, match="heads must be MTPHeads"):
        MTPCausalLM(llm, heads=torch.nn.Linear(2, 2))
