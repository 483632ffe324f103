"""GLM-4.xV's patch merger: the 2x2 (x 2 frames) token merge, then Linear -> LayerNorm -> GELU -> SwiGLU.

GLM-4.1V / GLM-4.5V (transformers ``Glm4vVisionModel``) end the vision tower with

* ``downsample``: a ``Conv2d(hidden, out_hidden, kernel=stride=2)`` over the 2x2 blocks of patch
  tokens, i.e. one Linear on the concatenated block (here: also over the temporal patch, which
  GLM-4.xV fuses in its Conv3d patch embedding instead);
* ``Glm4vVisionPatchMerger``: ``proj`` (Linear) -> ``post_projection_norm`` (LayerNorm) -> GELU ->
  SwiGLU (``down(silu(gate(x)) * up(x))``, hidden width ``context_dim`` = the vision MLP width).

GLM-5V-Turbo (arXiv 2604.26752, section 2.1) keeps this bridge between CogViT and the LLM.
"""

from __future__ import annotations

from torch import Tensor, nn

from glmkit.models.projectors.base import PROJECTORS, Projector
from glmkit.nn.mlp import SwiGLU


@PROJECTORS.register("glm4v_merger")
class PatchMerger(Projector):
    """GLM-4.xV's patch merger on merged ``T x m x m`` token blocks.

    Args:
        in_dim: encoder token width.
        out_dim: LLM hidden size.
        merge_size: spatial merge ``m`` (2 in GLM-4.xV).
        temporal_patch_size: frames fused per token ``T`` (2 in GLM-4.xV).
        hidden_features: SwiGLU hidden width (GLM-4.5V: the vision MLP width, 13696 for
            ``out_dim`` 4096); default ``4 * out_dim``.
        bias: biases on ``proj`` and the SwiGLU (GLM-4.xV: none); ``downsample`` always has one,
            as GLM's Conv2d does.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        merge_size: int = 2,
        temporal_patch_size: int = 2,
        hidden_features: int | None = None,
        bias: bool = False,
    ) -> None:
        super().__init__(in_dim, out_dim, merge_size, temporal_patch_size)
        self._record_init_args(locals())
        hidden = hidden_features or 4 * out_dim
        self.downsample = nn.Linear(self.merged_dim, out_dim)  # GLM's Conv2d(k=s=m) on a block
        self.proj = nn.Linear(out_dim, out_dim, bias=bias)
        self.norm = nn.LayerNorm(out_dim)
        self.act = nn.GELU()
        self.mlp = SwiGLU(out_dim, hidden, out_dim, bias=bias)

    def project(self, merged: Tensor) -> Tensor:
        """``[M, T*m*m*in_dim] -> [M, out_dim]``."""
        x = self.proj(self.downsample(merged))
        return self.mlp(self.act(self.norm(x)))


__all__ = ["PatchMerger"]
