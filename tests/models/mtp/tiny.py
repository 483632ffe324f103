"""Tiny random causal LMs and a repetitive corpus for MTP tests (built in the test, nothing downloaded)."""

from __future__ import annotations

import torch
from torch import Tensor

from glmkit.losses.mtp import MTPLoss
from glmkit.models.mtp import MTPCausalLM


def tiny_llm(kind: str = "llama", vocab_size: int = 16, *, seed: int = 0, tie: bool = False, layers: int = 2):
    """A random ``LlamaForCausalLM`` or ``Qwen2ForCausalLM`` of hidden size 32."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    common = {
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "tie_word_embeddings": tie,
    }
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(**common))
    if kind == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**common))
    raise ValueError(f"unknown tiny LLM kind {kind!r}")


def permutation_corpus(
    batch: int, length: int, vocab_size: int, generator: torch.Generator, perm: Tensor
) -> Tensor:
    """``[batch, length]`` sequences following ``t_{i+1} = perm[t_i]`` from a random first token."""
    x = torch.empty(batch, length, dtype=torch.long)
    x[:, 0] = torch.randint(0, vocab_size, (batch,), generator=generator)
    for t in range(1, length):
        x[:, t] = perm[x[:, t - 1]]
    return x


def train_on_corpus(
    model: MTPCausalLM, steps: int, *, vocab_size: int, perm: Tensor, seed: int = 0
) -> list[dict]:
    """A few AdamW steps of main + MTP loss on the permutation corpus; returns each step's metrics."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss_fn = MTPLoss()
    history = []
    model.train()
    for _ in range(steps):
        x = permutation_corpus(16, 16, vocab_size, generator, perm)
        out = model(x)
        result = loss_fn(out.logits, out.mtp_logits, x, sequence_ids=out.sequence_ids)
        optimizer.zero_grad()
        result.loss.backward()
        optimizer.step()
        history.append({key: float(value) for key, value in result.metrics.items()})
    model.eval()
    return history
