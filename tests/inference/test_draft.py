"""The cached, chained draft proposes exactly what the MTP heads compute without a cache (training's computation)."""

from __future__ import annotations

import pytest
import torch

from glmkit.inference import generate
from glmkit.inference.draft import MTPDrafter
from tests.inference.test_speculative import VOCAB, _model


def _reference_draft_probs(
    model, main_inputs: torch.Tensor, embeds: torch.Tensor, n: int, k: int
) -> list[torch.Tensor]:
    """Draft step s at position n-1 by full forwards: depth min(s, D) on h^{s-1} and the inputs shifted by s.

    ``main_inputs [1, n, D]``: the main model's input (visual embeddings at image positions);
    ``embeds [1, n + k, D]``: the heads' token inputs t_0 .. t_n and the drafts d_{n+1} .. d_{n+k-1}.
    """
    heads = model.mtp
    positions = torch.arange(n)[None]
    causal = torch.full((n, n), float("-inf"), dtype=torch.float64).triu(1)[None, None]
    with torch.no_grad():
        hidden = model.llm(inputs_embeds=main_inputs, output_hidden_states=True).hidden_states[-1]
        rope = heads.rotary_emb(hidden, positions)
        probs = []
        for s in range(1, k + 1):
            layer = heads.layers[min(s, heads.depths) - 1]
            tokens = embeds[:, s : s + n]  # t_{j+s} at position j
            hidden = layer(
                hidden, tokens, position_embeddings=rope, attention_mask=causal, position_ids=positions
            )
            probs.append(model.head(layer.shared_head(hidden[:, -1])).float().softmax(-1))
    return probs


@pytest.mark.parametrize("trained", [False, True])
def test_cached_chained_drafts_equal_full_forwards(trained: bool, monkeypatch) -> None:
    model = _model("llama", trained)
    rounds = []
    propose = MTPDrafter.propose

    def spy(self, n, k, choose):
        out = propose(self, n, k, choose)
        rounds.append((n, k, out))
        return out

    monkeypatch.setattr(MTPDrafter, "propose", spy)
    generator = torch.Generator().manual_seed(4)
    for _i in range(3):
        ids = torch.randint(0, VOCAB, (1, 9), generator=generator)
        image = torch.zeros(1, 9, dtype=torch.bool)
        image[0, 3:6] = True
        with torch.no_grad():
            prompt = model.embed(ids)
            prompt[image] = torch.randn(3, 32, generator=generator, dtype=torch.float64)
        rounds.clear()
        out = generate(
            model,
            inputs_embeds=prompt,
            image_mask=image,
            max_new_tokens=15,
            num_draft_tokens=4,  # steps 3 and 4 reuse depth 2
            do_sample=True,
            generator=generator,
        )
        assert len(rounds) >= 2
        # what the heads read: the image_token strategy over the prompt, then the generated tokens
        generated = model.embed(out.sequences)
        confirmed = torch.cat([model.mtp.token_inputs(prompt, image), generated], dim=1)
        main_inputs = torch.cat([prompt, generated], dim=1)  # the main model sees the visual embeddings
        for n, k, (_drafts, draft_probs, draft_embeds) in rounds:
            embeds = torch.cat([confirmed[:, : n + 1], draft_embeds[:, : k - 1]], dim=1)
            expected = _reference_draft_probs(model, main_inputs[:, :n], embeds, n, k)
            for s in range(k):
                torch.testing.assert_close(draft_probs[s : s + 1], expected[s], rtol=1e-5, atol=1e-6)
