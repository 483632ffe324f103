"""Training the MTP heads on a tiny repetitive corpus raises the draft's acceptance above 1 (a check, not a benchmark)."""

from __future__ import annotations

import torch

from glmkit.inference import generate
from glmkit.models.mtp import MTPCausalLM
from tests.models.mtp.tiny import permutation_corpus, tiny_llm, train_on_corpus


def _mean_acceptance_length(model: MTPCausalLM, perm: torch.Tensor, vocab: int) -> float:
    generator = torch.Generator().manual_seed(123)  # held-out prompts (the training draws use seed 0)
    lengths = []
    for _ in range(6):
        prompt = permutation_corpus(1, 5, vocab, generator, perm)
        lengths.append(
            generate(model, prompt, max_new_tokens=16, num_draft_tokens=2).stats.mean_acceptance_length
        )
    return sum(lengths) / len(lengths)


def test_a_few_training_steps_raise_acceptance_above_one() -> None:
    vocab = 16
    perm = torch.randperm(vocab, generator=torch.Generator().manual_seed(7))
    model = MTPCausalLM(tiny_llm("llama", vocab), depths=2).eval()
    before = _mean_acceptance_length(model, perm, vocab)
    history = train_on_corpus(model, 30, vocab_size=vocab, perm=perm)
    after = _mean_acceptance_length(model, perm, vocab)
    assert history[-1]["mtp_1_top1"] > history[0]["mtp_1_top1"]
    assert history[-1]["mtp_loss"] < history[0]["mtp_loss"]
    assert before < 1.5 < after, (before, after)
