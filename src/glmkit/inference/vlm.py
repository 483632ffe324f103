"""A VLM exported with its MTP heads, generating with them as a speculative draft.

:class:`SpeculativeVLM` has the ``generate`` contract of
:meth:`glmkit.models.vlm.VisionLanguageModel.generate` (a processor batch in, the prompt ids followed
by the new ones out), so :class:`~glmkit.models.vlm.VisionLanguageChat` serves it to eval's
``LocalVLMAdapter`` and to the agent's ``ChatModel`` protocol unchanged; each sample is decoded by
:func:`glmkit.inference.generate` (lossless: greedy output equals plain greedy decoding).
:func:`load_vlm` reads what ``VLMPretrain.export`` (the quickstart's ``ExportVLM``) writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from glmkit.inference.speculative import SpeculativeStats, generate
from glmkit.models.mtp.model import MTPCausalLM
from glmkit.models.vlm import VisionLanguageChat, VisionLanguageModel

#: ``generate`` keyword arguments of transformers that a greedy or sampling run may pass and that
#: mean nothing different here (``use_cache``: the draft always uses the KV cache)
_IGNORED = frozenset({"use_cache", "return_dict_in_generate", "output_scores"})


def load_vlm(directory: str | Path) -> tuple[VisionLanguageModel, MTPCausalLM, Any]:
    """``(vlm, mtp_model, processor)`` of an exported VLM directory, in eval mode.

    The LLM is loaded once, with its MTP layers (``MTPCausalLM.from_pretrained``; a checkpoint
    without them gets fresh heads and a warning), and shared by the VLM; the processor is the
    :class:`~glmkit.models.vlm_processor.VLMProcessor` saved beside it.
    """
    from glmkit.models.vlm_processor import CONFIG_NAME, VLMProcessor

    directory = Path(directory)
    if not (directory / CONFIG_NAME).is_file():
        raise FileNotFoundError(
            f"{directory / CONFIG_NAME} not found: {directory} is not a VLM export with its processor "
            "(VLMPretrain.export / the ExportVLM callback write one)"
        )
    mtp = MTPCausalLM.from_pretrained(directory)
    vlm = VisionLanguageModel.from_pretrained(directory, language_model=mtp.llm)
    return vlm.eval(), mtp.eval(), VLMProcessor.from_pretrained(directory)


class SpeculativeVLM(nn.Module):
    """A VLM and its MTP heads (sharing the LLM) with a speculative ``generate``.

    Args:
        vlm: the VLM (its ``llm_inputs`` places the visual embeddings).
        mtp: its LLM with the MTP heads (``mtp.llm`` must be ``vlm.language_model``).
        num_draft_tokens: ``k``, tokens the heads propose per round (0: plain decoding).

    ``last_stats`` holds the statistics of the last ``generate`` call, summed over its samples.
    """

    def __init__(self, vlm: VisionLanguageModel, mtp: MTPCausalLM, num_draft_tokens: int = 1) -> None:
        super().__init__()
        if mtp.llm is not vlm.language_model:
            raise ValueError("mtp.llm must be the VLM's language_model (load both with load_vlm)")
        if num_draft_tokens < 0:
            raise ValueError(f"num_draft_tokens must be >= 0 (0 = plain decoding), got {num_draft_tokens}")
        self.vlm = vlm
        self.heads = mtp.mtp  # the LLM is registered once, under vlm
        self.num_draft_tokens = int(num_draft_tokens)
        self.last_stats = SpeculativeStats(accepted_at=[0] * self.num_draft_tokens)

    @classmethod
    def from_pretrained(cls, directory: str | Path, num_draft_tokens: int = 1) -> SpeculativeVLM:
        """Load an exported VLM with its MTP heads (:func:`load_vlm`); the processor is dropped."""
        vlm, mtp, _ = load_vlm(directory)
        return cls(vlm, mtp, num_draft_tokens).eval()

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        patches: Tensor | None = None,
        coords: Tensor | None = None,
        grid_thw: Tensor | None = None,
        visual_batch_index: Tensor | None = None,
        *,
        max_new_tokens: int = 32,
        eos_token_id: int | list[int] | None = None,
        pad_token_id: int | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """``[B, T + new]``: each row's prompt ids then its new tokens, right-padded with ``pad_token_id``.

        Samples are decoded one at a time (speculative decoding runs batch size 1); padding
        positions of a left- or right-padded batch are dropped from each sample's prompt.
        """
        unknown = sorted(set(kwargs) - _IGNORED)
        if unknown:
            raise TypeError(f"SpeculativeVLM.generate got unsupported generation arguments {unknown}")
        inputs = self.vlm.llm_inputs(input_ids, attention_mask, patches, coords, grid_thw, visual_batch_index)
        keep = (
            attention_mask.bool()
            if attention_mask is not None
            else torch.ones_like(input_ids, dtype=torch.bool)
        )
        model = MTPCausalLM(self.vlm.language_model, heads=self.heads)  # a view: nothing copied
        stats = SpeculativeStats(accepted_at=[0] * self.num_draft_tokens)
        rows = []
        for b in range(input_ids.shape[0]):
            row = keep[b]
            positions = None if inputs.position_ids is None else inputs.position_ids[..., b : b + 1, row]
            out = generate(
                model,
                inputs_embeds=inputs.inputs_embeds[b : b + 1, row],
                image_mask=inputs.image_mask[b : b + 1, row],
                position_ids=positions,
                max_new_tokens=max_new_tokens,
                num_draft_tokens=self.num_draft_tokens,
                do_sample=do_sample,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                eos_token_id=eos_token_id,
                generator=generator,
            )
            rows.append(out.sequences[0])
            _add_stats(stats, out.stats)
        self.last_stats = stats
        pad = 0 if pad_token_id is None else int(pad_token_id)
        width = max(r.numel() for r in rows)
        new = torch.full((len(rows), width), pad, dtype=input_ids.dtype, device=input_ids.device)
        for b, row in enumerate(rows):
            new[b, : row.numel()] = row
        return torch.cat([input_ids, new], dim=1)


def _add_stats(total: SpeculativeStats, one: SpeculativeStats) -> None:
    total.new_tokens += one.new_tokens
    total.main_forwards += one.main_forwards
    total.rounds += one.rounds
    total.drafted += one.drafted
    total.accepted += one.accepted
    total.accepted_at = [a + b for a, b in zip(total.accepted_at, one.accepted_at, strict=True)]


def load_chat(directory: str | Path, num_draft_tokens: int = 1, **chat_kwargs: Any) -> VisionLanguageChat:
    """A :class:`~glmkit.models.vlm.VisionLanguageChat` over an exported VLM, drafting with its MTP heads.

    What eval's ``LocalVLMAdapter`` and the agent loop take (``chat_kwargs``: ``max_new_tokens``,
    ``tool_format``, ...).
    """
    vlm, mtp, processor = load_vlm(directory)
    return VisionLanguageChat(SpeculativeVLM(vlm, mtp, num_draft_tokens).eval(), processor, **chat_kwargs)


__all__ = ["SpeculativeVLM", "load_chat", "load_vlm"]
