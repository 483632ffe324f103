"""MTP speculative decoding is lossless: greedy equals plain greedy, sampling matches plain sampling."""

from __future__ import annotations

import itertools

import pytest
import torch

from glmkit.inference import generate
from glmkit.models.mtp import MTPCausalLM
from tests.inference.stats import chi_square_p_value
from tests.models.mtp.tiny import tiny_llm, train_on_corpus

VOCAB = 16
NEW_TOKENS = 20
_MODELS: dict[tuple[str, bool], MTPCausalLM] = {}


def _model(kind: str, trained: bool) -> MTPCausalLM:
    """A float64 tiny LLM with 2 MTP depths; ``trained``: 4 steps on a permutation corpus (a useful draft)."""
    if (kind, trained) not in _MODELS:
        model = MTPCausalLM(tiny_llm(kind, VOCAB, seed=1), depths=2)
        if trained:
            perm = torch.randperm(VOCAB, generator=torch.Generator().manual_seed(5))
            train_on_corpus(model, 4, vocab_size=VOCAB, perm=perm)
        _MODELS[kind, trained] = model.double().eval()
    return _MODELS[kind, trained]


def _plain_greedy(
    model: MTPCausalLM, ids: torch.Tensor | None = None, embeds: torch.Tensor | None = None
) -> torch.Tensor:
    """transformers' own greedy decoding, the independent reference."""
    kwargs = {"max_new_tokens": NEW_TOKENS, "do_sample": False, "eos_token_id": None, "pad_token_id": 0}
    if ids is not None:
        return model.llm.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)[:, ids.shape[1] :]
    mask = torch.ones(embeds.shape[:2], dtype=torch.long)
    return model.llm.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_greedy_output_equals_plain_greedy_decoding(kind: str) -> None:
    generator = torch.Generator().manual_seed(0)
    outcomes = {"none": 0, "some": 0, "all": 0}  # rounds that accepted no, some or all drafts
    for trained in (False, True):
        model = _model(kind, trained)
        for i in range(10):
            ids = torch.randint(0, VOCAB, (1, 1 + i % 8), generator=generator)
            reference = _plain_greedy(model, ids)
            assert reference.shape == (1, NEW_TOKENS)
            for k in (0, 1, 2, 3, 5):
                out = generate(model, ids, max_new_tokens=NEW_TOKENS, num_draft_tokens=k)
                assert torch.equal(out.sequences, reference), (trained, i, k)
                if k >= 2:
                    full = out.stats.accepted_at[k - 1]
                    outcomes["none"] += out.stats.rounds - out.stats.accepted_at[0]
                    outcomes["some"] += out.stats.accepted_at[0] - full
                    outcomes["all"] += full
    assert min(outcomes.values()) > 0, outcomes  # every branch of the verification ran


@pytest.mark.parametrize("image_input", ["image_token", "visual", "mask"])
def test_greedy_with_image_positions_equals_plain_greedy(image_input: str) -> None:
    model = _model("llama", True)
    model = MTPCausalLM(model.llm, depths=2, image_input=image_input).double().eval()
    generator = torch.Generator().manual_seed(1)
    for i in range(4):
        ids = torch.randint(0, VOCAB, (1, 8 + i), generator=generator)
        image = torch.zeros(1, ids.shape[1], dtype=torch.bool)
        image[0, 2 : 5 + i % 2] = True  # an image of 3 or 4 visual tokens inside the prompt
        with torch.no_grad():
            embeds = model.embed(ids)
            embeds[image] = torch.randn(int(image.sum()), 32, generator=generator, dtype=torch.float64)
        reference = _plain_greedy(model, embeds=embeds)
        for k in (1, 3):
            out = generate(
                model, inputs_embeds=embeds, image_mask=image, max_new_tokens=NEW_TOKENS, num_draft_tokens=k
            )
            assert torch.equal(out.sequences, reference), (image_input, i, k)


def test_stops_after_the_eos_token_and_reports_statistics() -> None:
    model = _model("llama", True)
    ids = torch.tensor([[3, 7, 1]])
    reference = _plain_greedy(model, ids)[0].tolist()
    eos = reference[5]
    stop = reference.index(eos)
    out = generate(model, ids, max_new_tokens=NEW_TOKENS, num_draft_tokens=3, eos_token_id=[eos, VOCAB + 1])
    assert out.sequences[0].tolist() == reference[: stop + 1]

    plain = generate(model, ids, max_new_tokens=NEW_TOKENS, num_draft_tokens=0).stats
    assert (plain.main_forwards, plain.rounds, plain.new_tokens) == (NEW_TOKENS, 0, NEW_TOKENS)
    assert plain.forwards_per_token == 1.0 and plain.mean_acceptance_length == 1.0

    stats = generate(model, ids, max_new_tokens=NEW_TOKENS, num_draft_tokens=3).stats
    assert stats.new_tokens == NEW_TOKENS
    assert stats.mean_acceptance_length == pytest.approx(1 + stats.accepted / stats.rounds)
    assert stats.accepted == sum(stats.accepted_at) and stats.accepted_at == sorted(
        stats.accepted_at, reverse=True
    )
    assert stats.forwards_per_token < 1.0  # the draft saves main-model forwards
    assert stats.main_forwards == 1 + stats.rounds + (stats.new_tokens - 1 - stats.accepted - stats.rounds)


def test_sampling_matches_the_distribution_of_plain_sampling() -> None:
    """Four tokens from a 3-token vocabulary: 81 outcomes, their exact probabilities from the main model.

    With these seeds, accepting every draft gives p = 0 and resampling from p instead of the
    residual gives p ~ 1e-55: the test has the power to see a broken verification.
    """
    vocab, new_tokens, samples = 3, 4, 800
    llm = tiny_llm("llama", vocab, seed=3)
    with torch.no_grad():
        llm.lm_head.weight.mul_(40)  # a peaked, far-from-uniform target
    model = MTPCausalLM(llm, depths=1).eval()
    prompt = torch.tensor([[1, 2, 0, 1]])
    outcomes = torch.tensor(list(itertools.product(range(vocab), repeat=new_tokens)))  # 81, 4
    with torch.no_grad():
        full = torch.cat([prompt.expand(len(outcomes), -1), outcomes], dim=1)
        logprobs = llm(full).logits.double().log_softmax(-1)[:, prompt.shape[1] - 1 : -1]
    exact = logprobs.gather(-1, outcomes[..., None]).squeeze(-1).sum(-1).exp()

    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(len(outcomes))
    weights = vocab ** torch.arange(new_tokens - 1, -1, -1)
    accepted = rounds = 0
    for _ in range(samples):
        out = generate(
            model, prompt, max_new_tokens=new_tokens, num_draft_tokens=2, do_sample=True, generator=generator
        )
        counts[int((out.sequences[0] * weights).sum())] += 1
        accepted, rounds = accepted + out.stats.accepted, rounds + out.stats.rounds
    assert 0 < accepted < 2 * rounds  # drafts were both accepted and rejected
    assert chi_square_p_value(counts, exact) > 1e-3
    assert 0.5 * (counts / samples - exact).abs().sum() < 0.08  # total variation


def test_errors_name_the_bad_value() -> None:
    model = _model("llama", False)
    with pytest.raises(ValueError, match=r"batch size 1.*got \(2, 3, 32\)"):
        generate(model, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1, got 0"):
        generate(model, torch.zeros(1, 3, dtype=torch.long), max_new_tokens=0)
    with pytest.raises(ValueError, match="num_draft_tokens must be >= 0"):
        generate(model, torch.zeros(1, 3, dtype=torch.long), num_draft_tokens=-1)
    with pytest.raises(ValueError, match=r"image_mask must be \[1, P\] = \[1, 3\]"):
        generate(model, torch.zeros(1, 3, dtype=torch.long), image_mask=torch.zeros(1, 4, dtype=torch.bool))
