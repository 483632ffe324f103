"""The projector contract: vision tokens of each image or video -> LLM input embeddings; ``PROJECTORS``.

GLM-4.5V and GLM-5V-Turbo (arXiv 2604.26752, section 2.1) join the vision encoder to the LLM
with a patch merger: each ``2 x 2`` block of neighbouring patch tokens (``spatial_merge_size``)
becomes one LLM token, and for video each pair of consecutive frames is fused as well
(``temporal_patch_size = 2``; GLM-4.xV does it with a ``[2, 14, 14]`` Conv3d patch embedding, and
a still image is repeated to fill the temporal patch). An image of ``h x w`` patches therefore
costs ``h * w / 4`` LLM tokens and a video of ``t`` frames ``t / 2 * h * w / 4``.

Here the merge happens after the encoder, on its output tokens, so one CogViT serves images and
video frames alike (it is a 2-D encoder): :meth:`Projector.merge` gathers the ``T x m x m``
neighbours of every output token, *per visual item on its own grid* (NaFlex grids differ per image),
and a subclass maps the concatenation to the LLM width (:meth:`Projector.project`). Repeating a
still image's tokens along time is what GLM-4.xV's repeated frame is, moved after the encoder.

Input layout of :meth:`Projector.forward`: ``tokens [N, D]`` holds the patch tokens of every item
back to back, each item ``(t, h, w)`` of ``grid_thw [I, 3]`` as ``t`` frames of ``h * w`` tokens
in row-major ``(frame, y, x)`` order. The output ``[M, out_dim]`` holds each item's merged tokens
back to back in row-major ``(frame pair, y / m, x / m)`` order, the order of the ``<|image|>``
placeholders of the text (:mod:`glmkit.models.vlm_processor`).

Registry ``projectors`` (base :class:`Projector`): ``glm4v_merger``
(:class:`~glmkit.models.projectors.patch_merger.PatchMerger`) and ``mlp``
(:class:`~glmkit.models.projectors.mlp.MlpMerger`).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from glmkit.models.zoo import load_pretrained, save_pretrained
from glmkit.registry import declare


class Projector(nn.Module):
    """Base class: merge ``temporal_patch_size x merge_size x merge_size`` neighbours, then project.

    Subclasses build their layers after ``super().__init__`` and implement :meth:`project`
    (``[M, merged_dim] -> [M, out_dim]``); ``init_args`` must hold every argument of their
    ``__init__`` (:meth:`_record_init_args`) so :meth:`save_pretrained` can rebuild them.

    Args:
        in_dim: width of the encoder's patch tokens.
        out_dim: the LLM's hidden size.
        merge_size: side ``m`` of the square block of patch tokens merged into one LLM token.
        temporal_patch_size: consecutive video frames ``T`` fused into one LLM token (1: none).
    """

    def __init__(self, in_dim: int, out_dim: int, merge_size: int = 2, temporal_patch_size: int = 2) -> None:
        super().__init__()
        for name, value in (
            ("in_dim", in_dim),
            ("out_dim", out_dim),
            ("merge_size", merge_size),
            ("temporal_patch_size", temporal_patch_size),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive integer, got {value!r}")
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.merge_size = merge_size
        self.temporal_patch_size = temporal_patch_size
        self.init_args: dict[str, Any] = {}

    @property
    def merged_dim(self) -> int:
        """Width of one merged token before projection: ``T * m * m * in_dim``."""
        return self.temporal_patch_size * self.merge_size**2 * self.in_dim

    def _record_init_args(self, local_vars: dict[str, Any]) -> None:
        """Keep the subclass's ``__init__`` arguments (call with ``locals()``) for export."""
        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self"]
        self.init_args = {name: local_vars[name] for name in names}

    # ------------------------------------------------------------------ merge
    def check_grids(self, grid_thw: Tensor) -> None:
        """Raise unless every item's grid fits the merge: ``h``, ``w`` multiples of ``m``; ``t`` 1 or a multiple of ``T``."""
        if grid_thw.ndim != 2 or grid_thw.shape[1] != 3 or grid_thw.is_floating_point():
            raise ValueError(
                f"grid_thw must be an integer tensor [I, 3] of (t, h, w), got {list(grid_thw.shape)}"
            )
        m, tp = self.merge_size, self.temporal_patch_size
        for i, (t, h, w) in enumerate(grid_thw.tolist()):
            if t < 1 or h < 1 or w < 1 or h % m or w % m:
                raise ValueError(
                    f"visual item {i}: grid (t={t}, h={h}, w={w}) does not fit the {m}x{m} merge; the "
                    f"processor must resize every image to even multiples of {m} patches per side"
                )
            if t > 1 and t % tp:
                raise ValueError(
                    f"visual item {i}: a video of {t} frames is not a multiple of temporal_patch_size={tp}; "
                    "pad it by repeating its last frame (the processor does)"
                )

    def num_tokens(self, grid_thw: Tensor) -> Tensor:
        """``[I]`` LLM tokens of each item: ``ceil(t / T) * (h / m) * (w / m)``."""
        t, h, w = grid_thw.long().unbind(-1)
        frames = torch.div(t + self.temporal_patch_size - 1, self.temporal_patch_size, rounding_mode="floor")
        return frames * (h // self.merge_size) * (w // self.merge_size)

    def merge_index(self, grid_thw: Tensor) -> Tensor:
        """``[M, T*m*m]`` indices into ``tokens`` of the neighbours of every merged token.

        Row ``j`` lists, in ``(dt, dy, dx)`` order, the source tokens of merged token ``j``. A still
        image (``t = 1``) uses its one frame for every ``dt``.
        """
        self.check_grids(grid_thw)
        m, tp = self.merge_size, self.temporal_patch_size
        device = grid_thw.device
        rows, offset = [], 0
        for t, h, w in grid_thw.tolist():
            if t == 1:
                frames = torch.zeros(1, tp, dtype=torch.long, device=device)  # repeat the still frame
            else:
                frames = torch.arange(t, device=device).view(t // tp, tp)  # t/T, T
            y = torch.arange(h, device=device).view(h // m, m)
            x = torch.arange(w, device=device).view(w // m, m)
            # t/T, h/m, w/m, T, m, m
            index = (
                frames[:, None, None, :, None, None] * (h * w)
                + y[None, :, None, None, :, None] * w
                + x[None, None, :, None, None, :]
            )
            rows.append(offset + index.reshape(-1, tp * m * m))
            offset += t * h * w
        if not rows:
            return torch.zeros(0, tp * m * m, dtype=torch.long, device=device)
        return torch.cat(rows)

    def merge(self, tokens: Tensor, grid_thw: Tensor) -> Tensor:
        """``tokens [N, in_dim]`` -> ``[M, T*m*m*in_dim]``: each merged token's neighbours concatenated."""
        if tokens.ndim != 2 or tokens.shape[1] != self.in_dim:
            raise ValueError(f"tokens must be [N, in_dim={self.in_dim}], got {list(tokens.shape)}")
        expected = int((grid_thw[:, 0] * grid_thw[:, 1] * grid_thw[:, 2]).sum()) if grid_thw.numel() else 0
        if tokens.shape[0] != expected:
            raise ValueError(
                f"got {tokens.shape[0]} patch tokens but grid_thw {grid_thw.tolist()} describes {expected} "
                "(sum of t*h*w over the items)"
            )
        index = self.merge_index(grid_thw.to(tokens.device))  # M, T*m*m
        return tokens[index].reshape(index.shape[0], self.merged_dim)  # M, T*m*m*D

    def project(self, merged: Tensor) -> Tensor:
        """``[M, merged_dim] -> [M, out_dim]``; implemented by subclasses."""
        raise NotImplementedError

    def forward(self, tokens: Tensor, grid_thw: Tensor) -> Tensor:
        """``tokens [N, in_dim]`` of the items of ``grid_thw [I, 3]`` -> LLM embeddings ``[M, out_dim]``."""
        return self.project(self.merge(tokens, grid_thw))

    # ------------------------------------------------------------------ export
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (see :mod:`glmkit.models.zoo`)."""
        return save_pretrained(self, directory, self.init_args)

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | Path, **overrides: Any) -> Projector:
        """Load an export written by :meth:`save_pretrained`."""
        return load_pretrained(path_or_hub_id, expected_class=cls, **overrides)


PROJECTORS = declare("projectors", "vision-to-language projectors (patch mergers)", base=Projector)

__all__ = ["PROJECTORS", "Projector"]
