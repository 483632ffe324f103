"""The vision-encoder contract: :class:`VisionEncoder`, its output :class:`EncoderOutput`, and ``ENCODERS``.

Every stage talks to its encoder through this contract only, so CogViT, a plugin encoder or a
future one are interchangeable in a recipe (GLM-5V-Turbo section 2.1: stage 1 feeds fixed 224x224
crops with masked patches, stage 2 native-aspect-ratio NaFlex sequences, the VLM packed images).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from torch import Tensor

from glmkit.registry import declare


@dataclass
class EncoderOutput:
    """What a vision encoder returns (see :class:`VisionEncoder` for the input forms).

    Attributes:
        patch_tokens: ``[B, N, D]`` patch tokens after the encoder's final norm, in the order of
            the input patches (row-major over the grid for an image batch); zero at padding
            (``valid`` False). For packed input ``B`` is the number of packed rows and the layout
            is that of ``patches``: each image's tokens where its patches were.
        prefix_tokens: ``[I, T, D]`` class token then register tokens of each image (``T`` may be
            0). ``I = B`` for image and NaFlex batches; for packed input ``I`` is the number of
            images, in row-major order of ``seq_lens``' non-empty slots.
        grid_size: the ``(H / patch_size, W / patch_size)`` patch grid for an image batch; None for
            NaFlex and packed input (each image has its own grid there).
        valid: ``[B, N]`` bool, False at padding: the ``valid`` given with NaFlex input, or derived
            from ``seq_lens`` for packed input; None when every patch token is valid.
        seq_lens: ``[B, S]`` patches per packed image (0 = empty slot) as given; None unless packed.
    """

    patch_tokens: Tensor
    prefix_tokens: Tensor
    grid_size: tuple[int, int] | None
    valid: Tensor | None
    seq_lens: Tensor | None = None

    @property
    def class_token(self) -> Tensor | None:
        """``[I, D]`` class token (first prefix token) of each image, or None without prefix tokens."""
        return self.prefix_tokens[:, 0] if self.prefix_tokens.shape[1] else None

    def patch_tokens_per_image(self) -> list[Tensor]:
        """The valid patch tokens of each image, ``[n_i, D]`` each, in the order of ``prefix_tokens``."""
        if self.seq_lens is not None:
            out: list[Tensor] = []
            for row, lengths in zip(self.patch_tokens, self.seq_lens.tolist(), strict=True):
                lengths = [n for n in lengths if n > 0]
                used = sum(lengths)
                out.extend(row[:used].split(lengths))
            return out
        if self.valid is None:
            return list(self.patch_tokens.unbind(0))
        return [row[keep] for row, keep in zip(self.patch_tokens, self.valid, strict=True)]


@runtime_checkable
class VisionEncoder(Protocol):
    """What a vision encoder must be to serve glmkit's stages (register it in ``ENCODERS``).

    **Attributes** (instance attributes, so not checked by ``isinstance``/``issubclass``):

    * ``embed_dim: int``: width ``D`` of the output tokens;
    * ``patch_size: int``: side ``P`` of a square patch in pixels;
    * ``num_prefix_tokens: int``: class + register tokens per image (``T``; 0 if none).

    **Input forms** of ``forward`` (an encoder must accept the first; the others where it
    supports NaFlex and packing, as CogViT does):

    1. *Image batch*: ``x [B, C, H, W]``. H and W must be multiples of ``patch_size``; the patch
       grid is ``(H / P, W / P)`` and the ``N = (H / P) * (W / P)`` patches are taken row-major.
    2. *NaFlex batch* (SigLIP2, arXiv 2502.14786): ``patches [B, N, P*P*C]`` flattened in
       (ph, pw, C) order (:func:`glmkit.nn.patch_embed.patchify`), ``coords [B, N, 2]`` the
       integer ``(y, x)`` patch index of each patch in its image's grid (row, column; any order),
       and optionally ``valid [B, N]`` bool, False at padding. Padding never changes a valid
       token's output.
    3. *Packed*: the NaFlex tensors of several images concatenated along ``N`` in one row, with
       ``seq_lens [B, S]`` integer: row ``b`` holds images of ``seq_lens[b, 0], seq_lens[b, 1],
       ...`` patches back to back from position 0 (0 = empty slot); positions after the last
       image are padding (``valid`` may be omitted; if given it must agree). Each image gets its
       own prefix tokens and attends only to itself: the outputs equal encoding each image alone.

    **Masking** (masked image modelling, GLM-5V-Turbo section 2.1 stage 1): ``mask [B, N]`` bool
    over patch tokens, in the layout of the input patches; True = that patch's embedding is
    replaced by ``mask_token`` before the first block (its position encoding stays). Prefix tokens
    are never masked. ``mask_token [D]`` is owned by the training *stage* (a parameter of the
    LightningModule, trained and checkpointed with it, not part of an encoder export); the encoder
    only substitutes it. ``mask`` and ``mask_token`` are passed together or not at all.

    **Output**: an :class:`EncoderOutput` (every field is described there).

    **Export** (optional, needed by ``glmkit.stages.ExportEncoder``): ``init_args`` (the
    JSON-serialisable keyword arguments that rebuild the module, every one resolved) and
    ``save_pretrained(directory)``, usually through :func:`glmkit.models.zoo.save_pretrained`.
    """

    def forward(
        self, x: Tensor, *, mask: Tensor | None = None, mask_token: Tensor | None = None
    ) -> EncoderOutput:
        """Encode an image batch (and, where supported, NaFlex or packed input by keyword)."""
        ...


ENCODERS = declare("encoders", "vision encoders", base=VisionEncoder)

__all__ = ["ENCODERS", "EncoderOutput", "VisionEncoder"]
