"""Generation with the MTP heads as a speculative draft (DeepSeek-V3 section 5.4.3; GLM-5V-Turbo section 2.2).

Each round the MTP heads propose ``k`` tokens (:class:`glmkit.inference.draft.MTPDrafter`), the
main model scores the last confirmed token and the ``k`` drafts in one forward with its KV cache
(a transformers ``DynamicCache``), the longest acceptable prefix is kept plus one token from the
main model (the correction or the bonus token), and the main cache is cropped to what was kept.
Greedy decoding gives exactly the tokens of plain greedy decoding; sampling uses speculative
rejection sampling (:func:`glmkit.inference.sampling.rejection_verify`), so the output is
distributed exactly as plain sampling. ``num_draft_tokens=0`` is plain decoding with the same code.

Statistics follow vLLM's definitions (``v1/spec_decode/metrics.py``): the mean acceptance length
is ``1 + accepted / rounds`` (the bonus token included, EAGLE's tau), the acceptance rate is
``accepted / drafted``, and ``accepted_at[i]`` counts the rounds that accepted more than ``i``
drafts (a survival curve, not conditional rates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from glmkit.inference.draft import MTPDrafter, crop_cache
from glmkit.inference.sampling import greedy_verify, rejection_verify, sample_tokens, warp_logits
from glmkit.models.mtp.heads import cache_kwargs
from glmkit.models.mtp.model import MTPCausalLM


@dataclass
class SpeculativeStats:
    """Counters of one :func:`generate` call."""

    #: tokens generated (returned)
    new_tokens: int = 0
    #: forwards of the main model, the prompt's prefill included
    main_forwards: int = 0
    #: verification rounds that had at least one draft
    rounds: int = 0
    #: tokens drafted
    drafted: int = 0
    #: drafts accepted
    accepted: int = 0
    #: ``accepted_at[i]``: rounds that accepted more than ``i`` drafts
    accepted_at: list[int] = field(default_factory=list)

    @property
    def mean_acceptance_length(self) -> float:
        """Tokens emitted per verification round: ``1 + accepted / rounds`` (1.0 without drafts)."""
        return 1.0 + self.accepted / self.rounds if self.rounds else 1.0

    @property
    def acceptance_rate(self) -> float:
        """Fraction of drafted tokens accepted."""
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def forwards_per_token(self) -> float:
        """Main-model forwards per generated token (1.0 for plain decoding)."""
        return self.main_forwards / self.new_tokens if self.new_tokens else 0.0


@dataclass
class GenerationOutput:
    """Generated token ids ``[1, new_tokens]`` (the prompt not included) and the run's statistics."""

    sequences: Tensor
    stats: SpeculativeStats


@torch.no_grad()
def generate(
    model: MTPCausalLM,
    input_ids: Tensor | None = None,
    *,
    inputs_embeds: Tensor | None = None,
    image_mask: Tensor | None = None,
    position_ids: Tensor | None = None,
    max_new_tokens: int = 32,
    num_draft_tokens: int = 1,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    generator: torch.Generator | None = None,
) -> GenerationOutput:
    """Generate up to ``max_new_tokens`` tokens after one prompt, drafting with the MTP heads.

    Args:
        model: the LLM with its MTP heads (run in eval mode here; its mode is restored after).
        input_ids: ``[1, P]`` prompt ids, or give ``inputs_embeds``.
        inputs_embeds: ``[1, P, D]`` prompt LLM input (a VLM's, visual embeddings scattered in).
        image_mask: ``[1, P]`` True at image positions of the prompt; the draft reads them through
            the heads' ``image_input`` strategy, as in training.
        position_ids: ``[1, P]`` or multimodal ``[A, 1, P]`` prompt position ids (default
            ``0..P-1``); generated tokens continue at ``max(position_ids) + 1``, ``+ 2``, ... on
            every axis (the M-RoPE rule for text after the prompt).
        max_new_tokens: most tokens to generate (>= 1).
        num_draft_tokens: ``k``, tokens proposed per round (0 = plain decoding). Depths beyond
            the heads' ``D`` reuse the last depth.
        do_sample: sample (with ``temperature``, ``top_k``, ``top_p``) instead of greedy decoding.
        eos_token_id: generation stops after any of these tokens (it is returned).
        generator: random source of sampling.

    Only one sequence is decoded at a time (batch size 1), as in transformers' assisted decoding.
    """
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids [1, P] or inputs_embeds [1, P, D]")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if num_draft_tokens < 0:
        raise ValueError(f"num_draft_tokens must be >= 0 (0 = plain decoding), got {num_draft_tokens}")
    if inputs_embeds is None:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [1, P], got shape {tuple(input_ids.shape)}")
        inputs_embeds = model.embed(input_ids)
    if inputs_embeds.dim() != 3 or inputs_embeds.shape[0] != 1 or inputs_embeds.shape[1] < 1:
        raise ValueError(
            "speculative decoding runs one non-empty sequence at a time (batch size 1): expected a prompt "
            f"of shape [1, P] / [1, P, D], got {tuple(inputs_embeds.shape)}"
        )
    prompt_len = inputs_embeds.shape[1]
    device = inputs_embeds.device
    if image_mask is not None and tuple(image_mask.shape) != (1, prompt_len):
        raise ValueError(f"image_mask must be [1, P] = [1, {prompt_len}], got {tuple(image_mask.shape)}")
    if position_ids is None:
        position_ids = torch.arange(prompt_len, device=device)[None]
    if position_ids.shape[-2:] != (1, prompt_len) or position_ids.dim() not in (2, 3):
        raise ValueError(
            f"position_ids must be [1, P] or [A, 1, P] with P = {prompt_len}, got {tuple(position_ids.shape)}"
        )
    next_position = int(position_ids.max()) + 1
    eos = {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id or ())

    def positions(start: int, end: int) -> Tensor:
        prompt_part = position_ids[..., start:end]
        generated = torch.arange(max(start, prompt_len), end, device=device) - prompt_len + next_position
        generated = generated.expand(*position_ids.shape[:-1], -1)
        return torch.cat([prompt_part, generated], dim=-1)

    def target_probs(logits: Tensor) -> Tensor:
        return warp_logits(logits, temperature, top_k, top_p).softmax(-1)

    def choose(logits: Tensor) -> tuple[Tensor, Tensor | None]:
        if not do_sample:
            return logits.argmax(-1), None
        probs = target_probs(logits)
        return sample_tokens(probs, generator), probs

    llm = model.llm
    was_training = model.training
    if was_training:
        model.eval()
    try:
        from transformers import DynamicCache

        cache = DynamicCache(config=llm.config)
        cache_kw = cache_kwargs(llm.forward, cache)

        def main_forward(embeds: Tensor, start: int) -> tuple[Tensor, Tensor]:
            out = llm(
                inputs_embeds=embeds,
                position_ids=positions(start, start + embeds.shape[1]),
                use_cache=True,
                output_hidden_states=True,
                **cache_kw,
            )
            return out.logits[0], out.hidden_states[-1]  # t, V and 1, t, D (after the final norm)

        stats = SpeculativeStats(accepted_at=[0] * num_draft_tokens)
        logits, prompt_hidden = main_forward(inputs_embeds, 0)
        stats.main_forwards = 1
        first, _ = choose(logits[-1:])
        generated = [int(first)]
        drafter = None
        if num_draft_tokens > 0 and max_new_tokens > 1:
            token_inputs = torch.cat(
                [model.mtp.token_inputs(inputs_embeds, image_mask), model.embed(first[None])], 1
            )
            drafter = MTPDrafter(model, num_draft_tokens, token_inputs, prompt_hidden, positions)
        n = prompt_len  # positions the main model has processed; t_n = generated[-1] is next
        while len(generated) < max_new_tokens and generated[-1] not in eos:
            k = min(num_draft_tokens, max_new_tokens - len(generated) - 1)
            last = model.embed(torch.tensor([[generated[-1]]], device=device))  # 1, 1, D
            if k > 0 and drafter is not None:
                drafts, draft_probs, draft_embeds = drafter.propose(n, k, choose)
            else:
                drafts = torch.zeros(0, dtype=torch.long, device=device)
                draft_probs, draft_embeds = None, last[:, :0]
            logits, hidden = main_forward(torch.cat([last, draft_embeds], dim=1), n)  # k+1 positions
            stats.main_forwards += 1
            if do_sample:
                empty = torch.zeros(0, logits.shape[-1], device=device)
                q = draft_probs if draft_probs is not None else empty
                accepted, following = rejection_verify(
                    drafts[None], q[None], target_probs(logits)[None], generator
                )
            else:
                accepted, following = greedy_verify(drafts[None], logits[None])
            a = int(accepted)
            new = [*drafts[:a].tolist(), int(following)]
            crop_cache(cache, n + a + 1)
            if k > 0:
                stats.rounds += 1
                stats.drafted += k
                stats.accepted += a
                for i in range(a):
                    stats.accepted_at[i] += 1
            if drafter is not None and k > 0:
                new_inputs = torch.cat([draft_embeds[:, :a], model.embed(following.view(1, 1))], dim=1)
                drafter.commit(n, a, hidden[:, : a + 1], new_inputs)
            n += a + 1
            for token in new:
                generated.append(token)
                if token in eos or len(generated) == max_new_tokens:
                    break
    finally:
        if was_training:
            model.train()
    stats.new_tokens = len(generated)
    return GenerationOutput(torch.tensor([generated], dtype=torch.long, device=device), stats)


__all__ = ["GenerationOutput", "SpeculativeStats", "generate"]
