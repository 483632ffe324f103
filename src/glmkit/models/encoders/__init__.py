"""Vision encoders; importing this package registers them in ``registry("encoders")``."""

from glmkit.models.encoders.cogvit import (
    ENCODERS,
    PRESETS,
    CogViT,
    CogViTConfig,
    EncoderOutput,
)

__all__ = ["ENCODERS", "PRESETS", "CogViT", "CogViTConfig", "EncoderOutput"]
