"""Token-level losses: next-token prediction plus multi-token prediction (MTP).

DeepSeek-V3 (arXiv 2412.19437, section 2.2, eq. 24-25) trains D sequential MTP modules next to the
main head. At position ``i`` the main head predicts ``t_{i+1}`` and MTP depth ``k`` predicts
``t_{i+k+1}``; each depth's cross-entropy is averaged over the positions that still have a target
after its shift, and the total is

    L = L_main + (lambda / D) * sum_{k=1..D} L_MTP^k            (lambda = 0.3 by default)

GLM-5V-Turbo (section 2.2, MMTP) applies this to a vision-language model, which adds two rules
implemented here: a target that is a visual token (an ``<|image|>`` position) is never predicted,
and the first text token after an image keeps its target. Shifts never cross the boundary of a
packed sequence: a position whose target would lie in the next sequence (or in padding) has none.

Pieces, each usable alone:

- :func:`sequence_ids`: which packed sequence each position belongs to (``-1`` at padding), from
  ``seq_lens``, position ids that restart, or a padding mask;
- :func:`shift_left`: ``x[:, i + k]`` at position ``i`` where ``i + k`` is in the same sequence,
  zero elsewhere (the token inputs of MTP depth ``k``);
- :func:`shifted_targets`: the target of the logits at position ``i`` for a shift ``k + 1``, with
  every masking rule applied (``ignore_index`` where there is none).

Registry ``token_losses`` (base :class:`TokenLoss`): ``mtp`` (:class:`MTPLoss`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glmkit.nn.packed import SeqLens
from glmkit.registry import declare

IGNORE_INDEX = -100


def sequence_ids(
    batch_size: int,
    length: int,
    *,
    seq_lens: Tensor | SeqLens | None = None,
    position_ids: Tensor | None = None,
    attention_mask: Tensor | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """``[B, T]`` int64: the packed sequence of each position (comparable within a row), ``-1`` at padding.

    Boundaries come from the first source given:

    - ``seq_lens [B, S]``: glmkit's packing convention (:class:`glmkit.nn.packed.SeqLens`; positions
      after a row's last sequence are padding);
    - ``position_ids [B, T]`` (or ``[1, T]``): a new sequence starts wherever the position does not
      continue the previous one by +1, transformers' rule for packed batches
      (``masking_utils.find_packed_sequence_indices``). Multimodal RoPE ids ``[3, B, T]`` do not
      mark boundaries (image tokens do not step by 1): pass ``seq_lens`` for packed M-RoPE batches;
    - otherwise each row is one sequence.

    ``attention_mask [B, T]`` (1 = token, 0 = padding) then marks padding ``-1`` in any case.
    """
    if seq_lens is not None:
        lens = seq_lens if isinstance(seq_lens, SeqLens) else SeqLens(seq_lens)
        if lens.batch_size != batch_size:
            raise ValueError(f"seq_lens has {lens.batch_size} rows, expected the batch size {batch_size}")
        ids = lens.segment_ids(length).clone()
    elif position_ids is not None and position_ids.dim() == 2:
        if position_ids.shape[-1] != length or position_ids.shape[0] not in (1, batch_size):
            raise ValueError(
                f"position_ids must be [B, T] = [{batch_size}, {length}] (or [1, T]), got {tuple(position_ids.shape)}"
            )
        pos = position_ids.expand(batch_size, length)
        step = torch.diff(pos, prepend=pos[:, :1] - 1, dim=-1)
        ids = (step != 1).long().cumsum(-1)
    else:
        if position_ids is not None and position_ids.dim() != 3:
            raise ValueError(
                f"position_ids must be [B, T] or multimodal [A, B, T], got {tuple(position_ids.shape)}"
            )
        ids = torch.zeros(batch_size, length, dtype=torch.long, device=device)
    if device is not None:
        ids = ids.to(device)
    if attention_mask is not None:
        if attention_mask.dim() != 2 or tuple(attention_mask.shape) != (batch_size, length):
            raise ValueError(
                f"attention_mask must be a [B, T] = [{batch_size}, {length}] padding mask to mark "
                f"sequences, got {tuple(attention_mask.shape)}"
            )
        ids = torch.where(attention_mask.to(ids.device).bool(), ids, torch.full_like(ids, -1))
    return ids


def shift_valid(seq_ids: Tensor, k: int) -> Tensor:
    """``[B, T]`` bool: True where position ``i + k`` exists and lies in the same sequence as ``i``."""
    if k < 0:
        raise ValueError(f"shift must be >= 0, got {k}")
    batch, length = seq_ids.shape
    valid = torch.zeros(batch, length, dtype=torch.bool, device=seq_ids.device)
    if k < length:
        ahead = seq_ids[:, k:]
        valid[:, : length - k] = (ahead == seq_ids[:, : length - k]) & (ahead >= 0)
    return valid


def shift_left(x: Tensor, k: int, seq_ids: Tensor) -> tuple[Tensor, Tensor]:
    """``(y, valid)``: ``y[:, i] = x[:, i + k]`` where ``i + k`` is in ``i``'s sequence, else zero.

    ``x`` is ``[B, T, ...]`` (token embeddings, ids, masks); ``valid`` is :func:`shift_valid`. The
    zero fill is what Megatron's ``roll_tensor`` leaves in the vacated slots; those positions have
    no target, so nothing trained depends on it.
    """
    if x.shape[:2] != seq_ids.shape:
        raise ValueError(f"x must be [B, T, ...] with [B, T] = {tuple(seq_ids.shape)}, got {tuple(x.shape)}")
    valid = shift_valid(seq_ids, k)
    y = torch.zeros_like(x)
    length = x.shape[1]
    if k < length:
        y[:, : length - k] = x[:, k:]
    keep = valid.view(*valid.shape, *([1] * (x.dim() - 2)))
    return torch.where(keep, y, torch.zeros((), dtype=x.dtype, device=x.device)), valid


def shifted_targets(
    labels: Tensor,
    shift: int,
    seq_ids: Tensor,
    *,
    image_mask: Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """``[B, T]``: the target of the logits at position ``i`` that predict ``shift`` tokens ahead.

    ``labels [B, T]`` holds the token at each position (``ignore_index`` where no loss is wanted,
    e.g. a prompt); the main head uses ``shift = 1``, MTP depth ``k`` uses ``shift = k + 1``. The
    target is ``ignore_index`` where position ``i + shift`` is outside ``i``'s sequence, is padding,
    or is a visual token (``image_mask [B, T]`` True). A text token right after an image is not a
    visual token, so it keeps its target.
    """
    if labels.shape != seq_ids.shape:
        raise ValueError(f"labels must be [B, T] = {tuple(seq_ids.shape)}, got {tuple(labels.shape)}")
    if shift < 1:
        raise ValueError(f"a target lies at least 1 token ahead, got shift={shift}")
    targets, valid = shift_left(labels, shift, seq_ids)
    if image_mask is not None:
        if image_mask.shape != labels.shape:
            raise ValueError(
                f"image_mask must be [B, T] = {tuple(labels.shape)} like labels, got {tuple(image_mask.shape)}"
            )
        visual, _ = shift_left(image_mask.bool(), shift, seq_ids)
        valid = valid & ~visual
    return torch.where(valid, targets, torch.full_like(targets, ignore_index))


class TokenLossOutput(NamedTuple):
    """The loss to minimise and detached metrics (0-d tensors) for ``log_dict``."""

    loss: Tensor
    metrics: dict[str, Tensor]


class TokenLoss(nn.Module):
    """Base class of the ``token_losses`` registry: losses over per-position vocabulary logits.

    ``forward(logits [B, T, V], mtp_logits: list of [B, T, V], labels [B, T], *, image_mask=None,
    sequence_ids=None) -> TokenLossOutput``.
    """


TOKEN_LOSSES = declare(
    "token_losses",
    "token-level losses: (logits [B, T, V], MTP logits per depth, labels [B, T]) -> TokenLossOutput",
    base=TokenLoss,
)


def token_cross_entropy(
    logits: Tensor, targets: Tensor, ignore_index: int = IGNORE_INDEX
) -> tuple[Tensor, Tensor, Tensor]:
    """``(mean CE, number of targets, number of top-1 hits)`` over positions whose target is not ignored.

    Only the selected rows of ``logits`` are upcast to float32, so the ``[B, T, V]`` tensor is never
    copied whole. With no target at all the loss is a zero that still depends on ``logits`` (its
    gradient is zero), so every rank of a distributed step runs the same backward graph.
    """
    if logits.shape[:2] != targets.shape:
        raise ValueError(
            f"logits must be [B, T, V] with [B, T] = {tuple(targets.shape)}, got {tuple(logits.shape)}"
        )
    keep = targets != ignore_index
    count = keep.sum()
    picked = logits[keep].float()  # M, V
    picked_targets = targets[keep]
    if picked.shape[0] == 0:
        return logits.sum() * 0.0, count, count
    loss = F.cross_entropy(picked, picked_targets, reduction="mean")
    hits = (picked.detach().argmax(-1) == picked_targets).sum()
    return loss, count, hits


@TOKEN_LOSSES.register("mtp")
class MTPLoss(TokenLoss):
    """Next-token cross-entropy plus ``(mtp_weight / D) * sum_k`` MTP cross-entropies.

    DeepSeek-V3 eq. 25 with ``lambda = mtp_weight`` (0.3 there for the first 10T tokens, then 0.1;
    Megatron's ``mtp_loss_scaling_factor``); GLM-5V-Turbo section 2.2 for the visual-target rule.
    Each term is the mean over its own valid targets (see :func:`shifted_targets`).

    Metrics: ``main_loss``, ``main_top1`` (fraction of targets the head's argmax hits),
    ``main_tokens``, and per depth ``k`` (1-based) ``mtp_{k}_loss``, ``mtp_{k}_top1`` (Megatron's
    ``mtp_{k}_acceptance_rate``: a training-time proxy for draft acceptance) and ``mtp_{k}_tokens``;
    ``mtp_loss`` is the mean of the depths' losses, so ``loss = main_loss + mtp_weight * mtp_loss``.

    Args:
        mtp_weight: ``lambda``, the weight of the mean MTP loss (>= 0).
        ignore_index: label value that marks positions without a loss.
    """

    def __init__(self, mtp_weight: float = 0.3, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        if mtp_weight < 0:
            raise ValueError(f"mtp_weight (lambda) must be >= 0, got {mtp_weight}")
        self.mtp_weight = mtp_weight
        self.ignore_index = ignore_index

    def forward(
        self,
        logits: Tensor,
        mtp_logits: Sequence[Tensor],
        labels: Tensor,
        *,
        image_mask: Tensor | None = None,
        sequence_ids: Tensor | None = None,
    ) -> TokenLossOutput:
        """Loss and metrics for main logits ``[B, T, V]`` and D MTP logits ``[B, T, V]`` (depth 1 first).

        ``labels [B, T]``: the input tokens (``ignore_index`` where no position should be a target);
        ``image_mask [B, T]``: True at visual-token positions; ``sequence_ids [B, T]``: see
        :func:`sequence_ids` (default: one sequence per row).
        """
        if logits.dim() != 3:
            raise ValueError(f"logits must be [B, T, V], got shape {tuple(logits.shape)}")
        batch, length = logits.shape[:2]
        if labels.shape != (batch, length):
            raise ValueError(f"labels must be [B, T] = [{batch}, {length}], got {tuple(labels.shape)}")
        for k, depth_logits in enumerate(mtp_logits, start=1):
            if depth_logits.shape != logits.shape:
                raise ValueError(
                    f"mtp_logits[{k - 1}] (depth {k}) must have the main logits' shape "
                    f"{tuple(logits.shape)}, got {tuple(depth_logits.shape)}"
                )
        if sequence_ids is None:
            sequence_ids = torch.zeros(batch, length, dtype=torch.long, device=labels.device)

        def term(head_logits: Tensor, shift: int) -> tuple[Tensor, Tensor, Tensor]:
            targets = shifted_targets(
                labels, shift, sequence_ids, image_mask=image_mask, ignore_index=self.ignore_index
            )
            return token_cross_entropy(head_logits, targets, self.ignore_index)

        main_loss, count, hits = term(logits, 1)
        metrics: dict[str, Tensor] = {
            "main_loss": main_loss.detach(),
            "main_top1": hits.float() / count.clamp(min=1),
            "main_tokens": count,
        }
        depth_losses = []
        for k, depth_logits in enumerate(mtp_logits, start=1):
            loss_k, count_k, hits_k = term(depth_logits, k + 1)
            depth_losses.append(loss_k)
            metrics[f"mtp_{k}_loss"] = loss_k.detach()
            metrics[f"mtp_{k}_top1"] = hits_k.float() / count_k.clamp(min=1)
            metrics[f"mtp_{k}_tokens"] = count_k
        if not depth_losses:
            return TokenLossOutput(main_loss, metrics)
        mtp_loss = torch.stack(depth_losses).mean()
        metrics["mtp_loss"] = mtp_loss.detach()
        return TokenLossOutput(main_loss + self.mtp_weight * mtp_loss, metrics)


__all__ = [
    "IGNORE_INDEX",
    "MTPLoss",
    "TOKEN_LOSSES",
    "TokenLoss",
    "TokenLossOutput",
    "sequence_ids",
    "shift_left",
    "shift_valid",
    "shifted_targets",
    "token_cross_entropy",
]
