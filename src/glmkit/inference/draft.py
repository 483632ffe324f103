"""The MTP heads as a speculative draft: chained depths, one KV cache per draft step.

After the main model has processed positions ``0 .. n-1`` and chosen ``t_n``, draft step ``s``
(1-based) runs MTP depth ``min(s, D)`` at position ``n - 1`` on ``h^{s-1}_{n-1}`` and the embedding
of ``t_{n+s-1}`` (``t_n`` for ``s = 1``, the previous draft after that) and proposes ``t_{n+s}``:
exactly DeepSeek-V3's training-time computation (arXiv 2412.19437, section 2.2) read at the last
position, so depth ``k <= D`` drafts as it was trained, and steps beyond ``D`` reuse the last depth
(as vLLM's ``spec_step_idx % num_mtp_layers`` does for D = 1).

Each step keeps its own KV cache over the positions ``j`` whose inputs are known: step ``s`` at
position ``j`` reads ``t_{j+s}`` and ``h^{s-1}_j``, so its cache holds exactly the positions
``j <= n - s`` (all inputs confirmed) after each verification; the positions fed with drafted
tokens are recomputed next round (at most ``s`` per step) and the rest of the cache is cropped,
as the main model's cache is cropped after a rejection. The hidden states ``h^l`` a later step
still needs are kept for those few positions only.

At image positions of the prompt the heads read what the ``image_input`` strategy gives, as in
training (GLM-5V-Turbo section 2.2).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from glmkit.models.mtp.model import MTPCausalLM

#: chooses a draft token from logits ``[1, V]``: ``(token [1], draft probabilities [1, V] or None)``
ChooseFn = Callable[[Tensor], tuple[Tensor, Tensor | None]]
#: position ids of positions ``start .. end-1``: ``[1, t]`` or multimodal ``[A, 1, t]``
PositionsFn = Callable[[int, int], Tensor]


def _new_cache() -> object:
    from transformers import DynamicCache

    return DynamicCache()


def crop_cache(cache: object, keep: int) -> None:
    """Drop every cached position of a transformers ``Cache`` from ``keep`` on."""
    remove = cache.get_seq_length() - keep  # type: ignore[attr-defined]
    if remove > 0:
        cache.crop(-remove)  # type: ignore[attr-defined]


class MTPDrafter:
    """Draft state for one sequence (batch size 1).

    Args:
        model: the LLM with its MTP heads.
        num_draft_tokens: ``K``, the most tokens proposed per round.
        token_inputs: ``[1, P + 1, D]`` the heads' token inputs for the prompt (image positions
            filled by the strategy) and the first generated token.
        prompt_hidden: ``[1, P, D]`` the main model's output over the prompt (``h^0``).
        positions: position ids of any range of positions.
    """

    def __init__(
        self,
        model: MTPCausalLM,
        num_draft_tokens: int,
        token_inputs: Tensor,
        prompt_hidden: Tensor,
        positions: PositionsFn,
    ) -> None:
        if num_draft_tokens < 1:
            raise ValueError(f"num_draft_tokens must be >= 1 to draft, got {num_draft_tokens}")
        self.model = model
        self.positions = positions
        self.tokens = token_inputs  # 1, n+1, D: inputs t_0 .. t_n
        empty = prompt_hidden[:, :0]
        self.caches = [_new_cache() for _ in range(num_draft_tokens)]  # step s -> caches[s-1]
        self.cache_len = [0] * num_draft_tokens
        # hist[l] holds h^l over [cache_len of step l+1, exact frontier of h^l); hist[0] up to n
        self.hist: list[Tensor] = [prompt_hidden] + [empty] * (num_draft_tokens - 1)
        self._fresh: list[Tensor] = [empty] * num_draft_tokens
        self._start = [0] * num_draft_tokens
        self._last_k = num_draft_tokens

    def propose(self, n: int, k: int, choose: ChooseFn) -> tuple[Tensor, Tensor | None, Tensor]:
        """Draft ``k`` tokens after ``t_n`` (the main model has processed positions ``0 .. n-1``).

        Returns ``(tokens [k], draft probabilities [k, V] or None, token embeddings [1, k, D])``.
        """
        if not 1 <= k <= self._last_k:
            raise ValueError(f"k must be in 1..{self._last_k} (it may only shrink between rounds), got {k}")
        if self.tokens.shape[1] != n + 1:
            raise RuntimeError(f"drafter holds {self.tokens.shape[1]} token inputs, expected n + 1 = {n + 1}")
        heads = self.model.mtp
        drafts: list[Tensor] = []
        probs: list[Tensor | None] = []
        draft_embeds: list[Tensor] = []
        previous = self.hist[0][:, :0]
        for s in range(1, k + 1):
            start = self.cache_len[s - 1]
            if s == 1:
                hidden = self.hist[0]  # covers [start, n)
            else:  # kept h^{s-1} over [start, previous_start), then this round's over [previous_start, n)
                hidden = torch.cat([self.hist[s - 1], previous], dim=1)
            # token inputs t_{j+s} for j in [start, n): known up to t_n, drafted after
            known = self.tokens[:, start + s : n + 1]
            drafted = draft_embeds[max(n + 1, start + s) - (n + 1) : s - 1]
            tokens = torch.cat([known, *drafted], dim=1)
            if hidden.shape[1] != n - start or tokens.shape[1] != n - start:
                raise RuntimeError(
                    f"draft step {s}: {hidden.shape[1]} hidden states and {tokens.shape[1]} token inputs for "
                    f"positions {start}..{n - 1}"
                )
            chain, normed = heads.step(
                min(s, heads.depths), hidden, tokens, self.positions(start, n), self.caches[s - 1]
            )
            self._start[s - 1], self.cache_len[s - 1], self._fresh[s - 1] = start, n, chain
            token, prob = choose(self.model.head(normed[:, -1]))  # position n-1 proposes t_{n+s}
            drafts.append(token)
            probs.append(prob)
            draft_embeds.append(self.model.embed(token[None]))  # 1, 1, D
            previous = chain
        draft_probs = None if probs[0] is None else torch.cat(probs)  # type: ignore[arg-type]
        self._last_k = k
        return torch.cat(drafts), draft_probs, torch.cat(draft_embeds, dim=1)

    def commit(self, n: int, accepted: int, main_hidden: Tensor, new_token_inputs: Tensor) -> None:
        """Keep what the verification confirmed: ``accepted`` drafts plus one more token.

        ``main_hidden [1, accepted + 1, D]`` is ``h^0`` over positions ``n .. n + accepted``;
        ``new_token_inputs [1, accepted + 1, D]`` the embeddings of the tokens now known after ``t_n``.
        """
        k = self._last_k
        n_new = n + accepted + 1
        old_len = list(self._start)  # cache lengths before this round's proposal
        for s in range(1, k + 1):
            # step s at position j read t_{j+1..j+s}; exact while j + s <= n + accepted
            keep = max(0, min(n, n_new - s))
            crop_cache(self.caches[s - 1], keep)
            self.cache_len[s - 1] = keep
        full = torch.cat([self.hist[0], main_hidden], dim=1)  # h^0 over [old_len[0], n_new)
        self.hist[0] = full[:, self.cache_len[0] - old_len[0] :]
        for level in range(1, k):
            # h^level over [old_len[level], old_len[level-1]) kept, then this round's [old_len[level-1], n)
            full = torch.cat([self.hist[level], self._fresh[level - 1]], dim=1)
            lo, hi = self.cache_len[level] - old_len[level], self.cache_len[level - 1] - old_len[level]
            self.hist[level] = full[:, lo:hi]
        self.tokens = torch.cat([self.tokens, new_token_inputs], dim=1)


__all__ = ["ChooseFn", "MTPDrafter", "PositionsFn", "crop_cache"]
