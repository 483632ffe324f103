"""Vision encoders; importing this package registers them in ``registry("encoders")``.

The contract every encoder follows is :class:`VisionEncoder` (``base.py``).
"""

from glmkit.models.encoders.base import ENCODERS, EncoderOutput, VisionEncoder
from glmkit.models.encoders.cogvit import PRESETS, CogViT

__all__ = ["ENCODERS", "PRESETS", "CogViT", "EncoderOutput", "VisionEncoder"]
