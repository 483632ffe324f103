"""Qwen2-VL-style merger: LayerNorm on each patch token, the 2x2 (x 2 frames) merge, then a GELU MLP.

Qwen2-VL's ``PatchMerger`` (arXiv 2409.12191, section 2.1) normalises each patch token, concatenates
each 2x2 block and maps it with ``Linear -> GELU -> Linear`` to the LLM width. It is the simplest
"merge then MLP" bridge, an alternative to GLM-4.xV's merger
(:class:`~glmkit.models.projectors.patch_merger.PatchMerger`) for ablations.
"""

from __future__ import annotations

from torch import Tensor, nn

from glmkit.models.projectors.base import PROJECTORS, Projector
from glmkit.nn.mlp import Mlp


@PROJECTORS.register("mlp")
class MlpMerger(Projector):
    """``LayerNorm(in_dim)`` per token, merge ``T x m x m``, then ``Linear -> GELU -> Linear``.

    Args:
        in_dim: encoder token width.
        out_dim: LLM hidden size.
        merge_size: spatial merge ``m``.
        temporal_patch_size: frames fused per token ``T``.
        hidden_features: MLP hidden width (default: the merged width ``T*m*m*in_dim``, as Qwen2-VL).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        merge_size: int = 2,
        temporal_patch_size: int = 2,
        hidden_features: int | None = None,
    ) -> None:
        super().__init__(in_dim, out_dim, merge_size, temporal_patch_size)
        self._record_init_args(locals())
        self.norm = nn.LayerNorm(in_dim)
        self.mlp = Mlp(self.merged_dim, hidden_features or self.merged_dim, out_dim)

    def merge(self, tokens: Tensor, grid_thw: Tensor) -> Tensor:
        """Normalise each patch token, then merge (see :meth:`Projector.merge`)."""
        if tokens.ndim != 2 or tokens.shape[1] != self.in_dim:
            raise ValueError(f"tokens must be [N, in_dim={self.in_dim}], got {list(tokens.shape)}")
        return super().merge(self.norm(tokens), grid_thw)

    def project(self, merged: Tensor) -> Tensor:
        """``[M, T*m*m*in_dim] -> [M, out_dim]``."""
        return self.mlp(merged)


__all__ = ["MlpMerger"]
