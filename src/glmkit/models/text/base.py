"""The text-tower kind: a module that maps captions to embeddings in the shared image-text space.

CogViT stage 2 (GLM-5V-Turbo section 2.1) pairs the vision encoder with a text encoder under a
sigmoid contrastive loss. A text tower tokenizes a list of captions (:meth:`TextTower.tokenize`,
which also counts the captions cut at the tokenizer's limit) and encodes the tokens to ``[B, D]``
embeddings (``forward``), where ``D`` (``embed_dim``) is the shared width of both towers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from torch import Tensor, nn

from glmkit.registry import declare


@dataclass
class Tokens:
    """Tokenized captions: ``input_ids`` and ``attention_mask`` ``[B, L]``, how many of the ``B``
    captions were longer than the tower's ``max_length`` and cut (``truncated``), and which the
    tokenizer cannot read (``unreadable``: at least half their tokens are its unknown token, e.g.
    Chinese to an English WordPiece vocabulary)."""

    input_ids: Tensor
    attention_mask: Tensor
    truncated: int = 0
    unreadable: tuple[int, ...] = ()

    def to(self, device: object) -> Tokens:
        """The same tokens on ``device``."""
        return replace(
            self, input_ids=self.input_ids.to(device), attention_mask=self.attention_mask.to(device)
        )


class TextTower(nn.Module):
    """Base class of text towers.

    Members have ``embed_dim`` (the output width), :meth:`tokenize` (``list[str] -> Tokens``),
    ``forward(tokens) -> [B, embed_dim]`` (not normalised), and ``save_pretrained`` /
    ``from_pretrained`` for a directory that loads back alone.
    """

    embed_dim: int

    def tokenize(self, texts: list[str]) -> Tokens:
        """Tokenize ``texts``, cutting each at the tower's length limit."""
        raise NotImplementedError

    def forward(self, tokens: Tokens) -> Tensor:
        """``[B, embed_dim]`` caption embeddings."""
        raise NotImplementedError

    def encode(self, texts: list[str]) -> Tensor:
        """Tokenize and encode ``texts`` on the tower's device."""
        device = next(self.parameters()).device
        return self(self.tokenize(list(texts)).to(device))

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the tower to ``directory`` so that ``from_pretrained(directory)`` rebuilds it alone."""
        raise NotImplementedError


TEXT_TOWERS = declare(
    "text_towers", "caption encoders of the contrastive stage: list[str] -> [B, D]", base=TextTower
)

__all__ = ["TEXT_TOWERS", "TextTower", "Tokens"]
