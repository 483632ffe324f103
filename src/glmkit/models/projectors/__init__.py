"""Projectors from vision tokens to LLM embeddings; importing this package registers them in ``registry("projectors")``.

The contract every projector follows is :class:`Projector` (``base.py``).
"""

from glmkit.models.projectors.base import PROJECTORS, Projector
from glmkit.models.projectors.mlp import MlpMerger
from glmkit.models.projectors.patch_merger import PatchMerger

__all__ = ["PROJECTORS", "MlpMerger", "PatchMerger", "Projector"]
