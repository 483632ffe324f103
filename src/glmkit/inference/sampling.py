"""Token choice and the verification rules of speculative decoding.

A draft proposes ``k`` tokens ``d_1..d_k`` with probabilities ``q``; the target model scores them in
one forward, giving distributions ``p_1..p_{k+1}``. Greedy verification accepts the longest prefix
that equals the target's argmax and then emits the target's argmax at the first mismatch (or after
the last draft: the bonus token), so the output is plain greedy decoding token for token.
Sampling uses the rejection rule of Leviathan et al. 2023 (arXiv 2211.17192, Algorithm 1) and
Chen et al. 2023 (arXiv 2302.01318): accept ``d_i`` with probability ``min(1, p_i(d_i) / q_i(d_i))``;
at the first rejection emit a sample of ``norm(max(0, p_i - q_i))``; if all are accepted emit a
sample of ``p_{k+1}``. Every emitted token is then distributed exactly as under plain sampling
from ``p``. DeepSeek-V3 (arXiv 2412.19437, section 5.4.3) and GLM-5V-Turbo (section 2.2) use their
MTP modules as such a draft.
"""

from __future__ import annotations

import torch
from torch import Tensor


def warp_logits(
    logits: Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> Tensor:
    """float32 logits ``[..., V]`` divided by ``temperature``, ``-inf`` outside the top-k and the top-p nucleus.

    The nucleus keeps the smallest set of most likely tokens whose probability reaches ``top_p``
    (Holtzman et al. 2020), always at least one token.
    """
    if temperature <= 0:
        raise ValueError(
            f"temperature must be > 0 when sampling, got {temperature} (use greedy decoding instead)"
        )
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p}")
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = (
            cumulative - sorted_logits.softmax(-1) >= top_p
        )  # mass before this token already reaches top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_tokens(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One token per row of ``probs [..., V]`` (``[...]`` int64)."""
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1])


def greedy_verify(draft_tokens: Tensor, target_logits: Tensor) -> tuple[Tensor, Tensor]:
    """``(num_accepted [B], next_token [B])`` for drafts ``[B, k]`` and target logits ``[B, k + 1, V]``.

    ``num_accepted`` is the length of the longest prefix of the drafts equal to the target's argmax;
    ``next_token`` is the target's argmax right after it (the correction, or the bonus token).
    """
    batch, k = draft_tokens.shape
    if target_logits.shape[:2] != (batch, k + 1):
        raise ValueError(
            f"target_logits must be [B, k + 1, V] = [{batch}, {k + 1}, V] for {k} drafts, got {tuple(target_logits.shape)}"
        )
    target = target_logits.argmax(-1)  # B, k+1
    matches = (draft_tokens == target[:, :k]).long().cumprod(-1)
    accepted = matches.sum(-1)
    return accepted, target.gather(1, accepted[:, None]).squeeze(1)


def rejection_verify(
    draft_tokens: Tensor,
    draft_probs: Tensor,
    target_probs: Tensor,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """``(num_accepted [B], next_token [B])`` by speculative rejection sampling.

    Args:
        draft_tokens: ``[B, k]`` tokens sampled from ``draft_probs``.
        draft_probs: ``[B, k, V]`` the draft's distribution at each drafted position.
        target_probs: ``[B, k + 1, V]`` the target's distribution at each drafted position and
            after the last one.
        generator: source of the uniform and categorical draws.

    Draft ``i`` is accepted when ``u_i * q_i(d_i) <= p_i(d_i)`` with ``u_i ~ U[0, 1)``, i.e. with
    probability ``min(1, p/q)``; the emitted token after ``a`` acceptances is drawn from
    ``norm(max(0, p_{a+1} - q_{a+1}))`` (with ``q_{k+1} = 0``: plain ``p_{k+1}`` for the bonus).
    """
    batch, k = draft_tokens.shape
    vocab = target_probs.shape[-1]
    if draft_probs.shape != (batch, k, vocab):
        raise ValueError(
            f"draft_probs must be [B, k, V] = [{batch}, {k}, {vocab}], got {tuple(draft_probs.shape)}"
        )
    if target_probs.shape != (batch, k + 1, vocab):
        raise ValueError(
            f"target_probs must be [B, k + 1, V] = [{batch}, {k + 1}, {vocab}], got {tuple(target_probs.shape)}"
        )
    target_probs = target_probs.float()
    draft_probs = draft_probs.float()
    if k > 0:
        p = target_probs[:, :k].gather(-1, draft_tokens[..., None]).squeeze(-1)  # B, k
        q = draft_probs.gather(-1, draft_tokens[..., None]).squeeze(-1)
        u = torch.rand(batch, k, generator=generator, device=p.device)
        accepted = ((u * q <= p) & (q > 0)).long().cumprod(-1).sum(-1)  # B
    else:
        accepted = torch.zeros(batch, dtype=torch.long, device=target_probs.device)
    rows = torch.arange(batch, device=accepted.device)
    padded_q = torch.cat([draft_probs, draft_probs.new_zeros(batch, 1, vocab)], dim=1)  # q_{k+1} = 0
    p_next = target_probs[rows, accepted]  # B, V
    residual = (p_next - padded_q[rows, accepted]).clamp(min=0)
    total = residual.sum(-1, keepdim=True)
    # p == q up to rounding leaves no residual mass; p itself is then the right distribution
    residual = torch.where(total > 0, residual / total.clamp(min=torch.finfo(total.dtype).tiny), p_next)
    return accepted, sample_tokens(residual, generator)


__all__ = ["greedy_verify", "rejection_verify", "sample_tokens", "warp_logits"]
