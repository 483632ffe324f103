"""A transformers causal LM with DeepSeek-V3-style MTP heads: main and per-depth logits from one forward.

The main model runs once on ``inputs_embeds`` (token embeddings, or a VLM's input with visual
embeddings scattered in); its output after the final norm feeds the D MTP depths, whose outputs go
through the LLM's ``lm_head`` (DeepSeek-V3, arXiv 2412.19437, section 2.2; GLM-5V-Turbo section 2.2
for image positions). :class:`glmkit.losses.mtp.MTPLoss` turns the result into the training loss;
:func:`glmkit.inference.generate` uses the heads as a speculative draft.

Checkpoints use the transformers layout: the LLM's own weights under their usual names, the MTP
depths as the extra decoder layers GLM and DeepSeek publish (:mod:`glmkit.models.mtp.checkpoint`),
so the directory loads in plain transformers (the MTP keys are reported as unused; glmkit's loaders,
:func:`~glmkit.models.mtp.checkpoint.load_language_model`, expect them) and in serving stacks that
map ``model.layers.{num_hidden_layers}``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from glmkit.losses.mtp import sequence_ids as make_sequence_ids
from glmkit.models.mtp.checkpoint import (
    CONFIG_DEPTHS_KEY,
    CONFIG_IMAGE_INPUT_KEY,
    MTPLoadReport,
    export_mtp_state_dict,
    from_checkpoint_key,
    load_language_model,
    load_mtp_state_dict,
    read_checkpoint_tensors,
)
from glmkit.models.mtp.heads import MTPHeads, decoder_parts
from glmkit.models.mtp.image_inputs import MTPImageInput, image_input_name
from glmkit.nn.packed import SeqLens


class MTPOutput(NamedTuple):
    """Result of :meth:`MTPCausalLM.forward`."""

    #: main-head logits ``[B, T, V]``; position ``i`` predicts ``t_{i+1}``
    logits: Tensor
    #: per-depth logits ``[B, T, V]``, depth 1 first; depth ``k`` at ``i`` predicts ``t_{i+k+1}``
    mtp_logits: list[Tensor]
    #: the main model's output after its final norm ``[B, T, D]`` (``h^0``)
    hidden_states: Tensor
    #: packed-sequence id of every position ``[B, T]`` (-1 at padding), for the loss's shifts
    sequence_ids: Tensor


def packed_position_ids(seq_lens: Tensor | SeqLens, length: int) -> Tensor:
    """``[B, T]`` position ids restarting at 0 for each packed sequence (0 at padding).

    transformers' causal-mask builder reads restarting position ids as packed sequences and keeps
    attention inside each one.
    """
    lens = seq_lens if isinstance(seq_lens, SeqLens) else SeqLens(seq_lens)
    seg = lens.segment_ids(length)  # B, T
    index = torch.arange(length, device=seg.device).expand_as(seg)
    previous = torch.cat([seg.new_full((seg.shape[0], 1), -2), seg[:, :-1]], dim=1)
    start = torch.cummax(torch.where(seg != previous, index, torch.zeros_like(index)), dim=1).values
    return torch.where(seg >= 0, index - start, torch.zeros_like(index))


def _check_heads(heads: MTPHeads, llm: nn.Module, depths: int | None, image_input: Any) -> None:
    """``heads`` must fit ``llm`` (layer count, width) and the ``depths`` / ``image_input`` asked for."""
    if not isinstance(heads, MTPHeads):
        raise TypeError(f"heads must be MTPHeads, got {type(heads).__name__}")
    config = decoder_parts(llm).config
    fits = (heads.num_hidden_layers, heads.hidden_size) == (
        int(config.num_hidden_layers),
        int(config.hidden_size),
    )
    if not fits:
        raise ValueError(
            f"heads were built for an LLM of {heads.num_hidden_layers} layers and hidden size {heads.hidden_size}, "
            f"but {type(llm).__name__} has {config.num_hidden_layers} layers and hidden size {config.hidden_size}"
        )
    if depths is not None and depths != heads.depths:
        raise ValueError(f"depths={depths} but the given heads have {heads.depths} depths; leave depths out")
    if image_input is not None:
        name = image_input_name(image_input) if not isinstance(image_input, str) else image_input
        if name != image_input_name(heads.image_input):
            raise ValueError(
                f"image_input={name!r} but the given heads read {image_input_name(heads.image_input)!r} at image "
                "positions; leave image_input out"
            )


class MTPCausalLM(nn.Module):
    """A causal LM (``llm``) and its MTP heads (``mtp``); ``forward`` returns main and MTP logits.

    Args:
        llm: a transformers causal LM (``AutoModelForCausalLM``), or a VLM whose language model
            has decoder ``layers``.
        depths: ``D``, the number of sequential MTP modules (default 1; with ``heads``: theirs).
        image_input: what the heads read at image positions (``visual``, ``mask``,
            ``image_token``; see :mod:`glmkit.models.mtp.image_inputs`; default ``image_token``;
            with ``heads``: theirs).
        heads: MTP heads already built for ``llm`` (a training stage's), used as they are, not
            copied: the model is then a view of the stage's LLM and heads, for speculative
            decoding and export. ``depths`` and ``image_input``, if given, must agree with them.
    """

    def __init__(
        self,
        llm: nn.Module,
        depths: int | None = None,
        image_input: str | MTPImageInput | None = None,
        *,
        heads: MTPHeads | None = None,
    ) -> None:
        super().__init__()
        self.llm = llm
        if heads is None:
            heads = MTPHeads(
                llm, depths=1 if depths is None else depths, image_input=image_input or "image_token"
            )
        else:
            _check_heads(heads, llm, depths, image_input)
            self.training = llm.training  # a view of modules in use keeps their mode (eval stays eval)
        self.mtp = heads

    @property
    def depths(self) -> int:
        """``D``."""
        return self.mtp.depths

    def embed(self, input_ids: Tensor) -> Tensor:
        """The LLM's input embeddings of ``input_ids`` ``[B, T] -> [B, T, D]``."""
        return self.llm.get_input_embeddings()(input_ids)

    def head(self, hidden: Tensor) -> Tensor:
        """The LLM's output head (``lm_head``) on normed hidden states ``[..., D] -> [..., V]``."""
        return self.llm.get_output_embeddings()(hidden)

    def forward(
        self,
        input_ids: Tensor | None = None,
        *,
        inputs_embeds: Tensor | None = None,
        image_mask: Tensor | None = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        seq_lens: Tensor | SeqLens | None = None,
    ) -> MTPOutput:
        """Main and MTP logits for one batch.

        Args:
            input_ids: ``[B, T]`` token ids (or give ``inputs_embeds``).
            inputs_embeds: ``[B, T, D]`` LLM input; a VLM passes its token embeddings with the
                projected visual embeddings at image positions.
            image_mask: ``[B, T]`` True at image positions (the MTP heads' ``image_input``
                strategy fills them; the loss masks them as targets).
            attention_mask: ``[B, T]`` padding mask (1 = token) or a prepared 4-D mask.
            position_ids: ``[B, T]`` or multimodal ``[A, B, T]``; default ``0..T-1`` per row, or
                restarting per sequence when ``seq_lens`` is given.
            seq_lens: ``[B, S]`` lengths of the sequences packed in each row
                (:class:`glmkit.nn.packed.SeqLens`); attention and shifts stay inside each.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids [B, T] or inputs_embeds [B, T, D]")
        if inputs_embeds is None:
            inputs_embeds = self.embed(input_ids)
        batch, length = inputs_embeds.shape[:2]
        if seq_lens is not None and position_ids is None:
            position_ids = packed_position_ids(seq_lens, length).to(inputs_embeds.device)
        out = self.llm(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
            output_hidden_states=True,
        )
        hidden = out.hidden_states[-1]  # B, T, D after the final norm (transformers' last entry)
        padding = attention_mask if attention_mask is not None and attention_mask.dim() == 2 else None
        seq_ids = make_sequence_ids(
            batch,
            length,
            seq_lens=seq_lens,
            position_ids=position_ids,
            attention_mask=padding,
            device=inputs_embeds.device,
        )
        mtp_hidden = self.mtp(
            hidden,
            inputs_embeds,
            image_mask=image_mask,
            position_ids=position_ids,
            attention_mask=attention_mask,
            sequence_ids=seq_ids,
        )
        return MTPOutput(out.logits, [self.head(h) for h in mtp_hidden], hidden, seq_ids)

    # ----------------------------------------------------------------------------- checkpoints

    @property
    def layer_prefix(self) -> str:
        """Checkpoint prefix of the decoder layers (``"model.layers."``)."""
        return f"{decoder_parts(self.llm).path}.layers."

    def checkpoint_state_dict(self, include_shared: bool = True) -> dict[str, Tensor]:
        """The LLM's state dict plus the MTP weights under their published names.

        ``include_shared`` also writes the copies of the embedding and ``lm_head`` that DeepSeek-V3
        and GLM checkpoints carry in each MTP layer (serving stacks may read them from there).
        """
        state = dict(self.llm.state_dict())
        embed = self.llm.get_input_embeddings().weight if include_shared else None
        head = self.llm.get_output_embeddings().weight if include_shared else None
        state.update(export_mtp_state_dict(self.mtp, self.layer_prefix, embed_weight=embed, head_weight=head))
        return state

    def save_pretrained(self, directory: str | Path, include_shared: bool = True, **kwargs: Any) -> None:
        """Write a transformers checkpoint directory with the MTP layers (``kwargs`` go to ``llm.save_pretrained``).

        The config records ``num_nextn_predict_layers`` (D) and ``mtp_image_input`` (the strategy's
        registered name).
        """
        config = decoder_parts(self.llm).config
        name = image_input_name(self.mtp.image_input)
        previous = {key: getattr(config, key, None) for key in (CONFIG_DEPTHS_KEY, CONFIG_IMAGE_INPUT_KEY)}
        setattr(config, CONFIG_DEPTHS_KEY, self.depths)
        setattr(config, CONFIG_IMAGE_INPUT_KEY, name)
        try:
            self.llm.save_pretrained(
                str(directory), state_dict=self.checkpoint_state_dict(include_shared), **kwargs
            )
        finally:
            for key, value in previous.items():
                if value is None:
                    delattr(config, key)
                else:
                    setattr(config, key, value)

    def load_mtp(self, path: str | Path) -> MTPLoadReport:
        """Load the MTP weights of a checkpoint (a local directory or a hub id); warn about fresh weights.

        A hub id resolves to its cached snapshot (the files ``from_pretrained`` fetched already).
        """
        directory = Path(path)
        if not directory.is_dir():
            from huggingface_hub import snapshot_download

            directory = Path(
                snapshot_download(str(path), allow_patterns=["*.safetensors", "*.safetensors.index.json"])
            )
        prefix, layers = self.layer_prefix, self.mtp.num_hidden_layers

        def is_mtp(key: str) -> bool:
            return from_checkpoint_key(key, layers, prefix)[1] == "mtp"

        tensors = read_checkpoint_tensors(directory, is_mtp)
        report = load_mtp_state_dict(self.mtp, tensors, prefix, source=str(path))
        if report.missing or report.unexpected:
            warnings.warn(report.summary(), stacklevel=2)
        return report

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        depths: int | None = None,
        image_input: str | MTPImageInput | None = None,
        *,
        auto_class: Any = None,
        **kwargs: Any,
    ) -> MTPCausalLM:
        """Load the LLM (``auto_class.from_pretrained``, default ``AutoModelForCausalLM``) and its MTP heads.

        ``depths`` and ``image_input`` default to what the checkpoint's config records
        (``num_nextn_predict_layers``, ``mtp_image_input``), else 1 and ``image_token``. A
        checkpoint without MTP weights loads too: the heads are freshly initialised and a warning
        says so; the :class:`MTPLoadReport` is kept as ``model.mtp_load_report``.
        """
        llm = load_language_model(path, auto_class, **kwargs)
        config = decoder_parts(llm).config
        depths = depths if depths is not None else (getattr(config, CONFIG_DEPTHS_KEY, None) or 1)
        image_input = image_input or getattr(config, CONFIG_IMAGE_INPUT_KEY, None) or "image_token"
        model = cls(llm, depths=depths, image_input=image_input)
        model.mtp_load_report = model.load_mtp(path)
        return model


__all__ = ["MTPCausalLM", "MTPOutput", "packed_position_ids"]
