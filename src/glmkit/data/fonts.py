"""The one font lookup of glmkit: Pillow's bundled scalable font, with fallbacks.

Procedural data, demo benchmarks and the drawing tools all render text; they share this lookup so
that text looks the same everywhere and a machine without FreeType degrades the same way.
"""

from __future__ import annotations

from functools import lru_cache

from PIL import ImageFont

Font = ImageFont.ImageFont | ImageFont.FreeTypeFont


@lru_cache(maxsize=64)
def load_font(size: int) -> Font:
    """A font of ``size`` pixels: Pillow's bundled scalable font (Pillow >= 10.1 with FreeType),
    else DejaVu Sans from the system, else Pillow's fixed-size bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ValueError, ImportError):
        try:
            return ImageFont.truetype("DejaVuSans.ttf", size)
        except OSError:
            return ImageFont.load_default()
