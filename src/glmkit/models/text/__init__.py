"""Text towers: caption encoders for image-text contrastive training (CogViT stage 2)."""

from glmkit.models.text.base import TEXT_TOWERS, TextTower, Tokens
from glmkit.models.text.hf import HFTextTower, resolve_model_path

__all__ = ["TEXT_TOWERS", "HFTextTower", "TextTower", "Tokens", "resolve_model_path"]
