"""What the MTP head reads as the token embedding at image positions (GLM-5V-Turbo section 2.2).

MTP depth ``k`` at position ``i`` reads the embedding of token ``t_{i+k}`` (DeepSeek-V3, arXiv
2412.19437, section 2.2). In a vision-language model that token may be an ``<|image|>`` placeholder
whose LLM input is a projected visual embedding. GLM-5V-Turbo compares three ways to fill those
positions for the MTP head and adopts the third:

1. ``visual``: the projected visual embeddings themselves (as the main model sees them);
2. ``mask``: zeros, the positions kept (values masked, not tokens dropped, so positions and
   sequence sharding stay intact);
3. ``image_token`` (the default): one shared learnable ``<|image|>`` vector at every image position.

A strategy maps ``(token_embeds [B, T, D], image_mask [B, T]) -> [B, T, D]``. ``token_embeds`` is
the LLM's input, i.e. the token embeddings with the visual embeddings scattered in at image
positions; ``image_mask`` is True there (the VLM supplies both). Text positions pass through.
Training and speculative decoding call the same strategy, so the draft sees exactly what it was
trained on.

Registry ``mtp_image_inputs`` (base :class:`MTPImageInput`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from glmkit.registry import declare


class MTPImageInput(nn.Module):
    """Base class: ``forward(token_embeds [B, T, D], image_mask [B, T] bool) -> [B, T, D]``.

    Args:
        hidden_size: the LLM's embedding width ``D``.
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        if hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {hidden_size}")
        self.hidden_size = hidden_size

    def forward(self, token_embeds: Tensor, image_mask: Tensor) -> Tensor:
        """The MTP head's token embeddings, with image positions filled by this strategy."""
        raise NotImplementedError

    def _check(self, token_embeds: Tensor, image_mask: Tensor) -> Tensor:
        if token_embeds.dim() != 3 or token_embeds.shape[-1] != self.hidden_size:
            raise ValueError(
                f"token_embeds must be [B, T, {self.hidden_size}], got {tuple(token_embeds.shape)}"
            )
        if image_mask.shape != token_embeds.shape[:2]:
            raise ValueError(
                f"image_mask must be [B, T] = {tuple(token_embeds.shape[:2])}, got {tuple(image_mask.shape)}"
            )
        if image_mask.dtype != torch.bool:
            raise ValueError(
                f"image_mask must be a bool tensor (True at image positions), got {image_mask.dtype}"
            )
        return image_mask.unsqueeze(-1)  # B, T, 1


MTP_IMAGE_INPUTS = declare(
    "mtp_image_inputs",
    "MTP-head token embedding at image positions: (token_embeds [B, T, D], image_mask [B, T]) -> [B, T, D]",
    base=MTPImageInput,
)


@MTP_IMAGE_INPUTS.register("visual")
class VisualImageInput(MTPImageInput):
    """Option 1: the projected visual embeddings, exactly as the main model received them."""

    def forward(self, token_embeds: Tensor, image_mask: Tensor) -> Tensor:
        """``token_embeds`` unchanged (it already holds the visual embeddings at image positions)."""
        self._check(token_embeds, image_mask)
        return token_embeds


@MTP_IMAGE_INPUTS.register("mask")
class MaskedImageInput(MTPImageInput):
    """Option 2: zeros at image positions; the positions themselves are kept."""

    def forward(self, token_embeds: Tensor, image_mask: Tensor) -> Tensor:
        """``token_embeds`` with image positions zeroed."""
        mask = self._check(token_embeds, image_mask)
        return token_embeds.masked_fill(mask, 0.0)


@MTP_IMAGE_INPUTS.register("image_token")
class LearnedImageToken(MTPImageInput):
    """Option 3 (GLM-5V-Turbo's choice): one shared learnable ``<|image|>`` vector at every image position.

    The vector is a dedicated parameter, not the embedding row of the placeholder id: that row can
    be an output row too (tied ``lm_head``), and the main model never reads it anyway.

    Args:
        hidden_size: the LLM's embedding width ``D``.
        init_std: standard deviation of its normal initialisation (transformers' usual
            ``initializer_range``).
    """

    def __init__(self, hidden_size: int, init_std: float = 0.02) -> None:
        super().__init__(hidden_size)
        if init_std < 0:
            raise ValueError(f"init_std must be >= 0, got {init_std}")
        self.init_std = init_std
        self.embedding = nn.Parameter(torch.empty(hidden_size))
        nn.init.normal_(self.embedding, std=init_std)

    def forward(self, token_embeds: Tensor, image_mask: Tensor) -> Tensor:
        """``token_embeds`` with the learned vector at image positions."""
        mask = self._check(token_embeds, image_mask)
        return torch.where(mask, self.embedding.to(token_embeds.dtype), token_embeds)


def build_image_input(spec: str | MTPImageInput, hidden_size: int) -> MTPImageInput:
    """A strategy from its registered name (built for ``hidden_size``) or an instance (checked)."""
    if isinstance(spec, MTPImageInput):
        if spec.hidden_size != hidden_size:
            raise ValueError(
                f"image_input {type(spec).__name__} was built for hidden_size {spec.hidden_size}, "
                f"but the LLM's hidden size is {hidden_size}"
            )
        return spec
    if not isinstance(spec, str):
        raise TypeError(
            f"image_input must be a registered name ({', '.join(MTP_IMAGE_INPUTS.names())}) or an "
            f"MTPImageInput, got {type(spec).__name__}"
        )
    return MTP_IMAGE_INPUTS.get(spec)(hidden_size)


def image_input_name(strategy: MTPImageInput) -> str | None:
    """The registered name of ``strategy``'s class (what a checkpoint's config records), or None."""
    for name, cls in MTP_IMAGE_INPUTS.items():
        if type(strategy) is cls:
            return name
    return None


__all__ = [
    "MTP_IMAGE_INPUTS",
    "LearnedImageToken",
    "MTPImageInput",
    "MaskedImageInput",
    "VisualImageInput",
    "build_image_input",
    "image_input_name",
]
