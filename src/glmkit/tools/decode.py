"""Images from untrusted bytes and files for the tools, decoded by :func:`glmkit.data.decode.decode_image`.

The tools read images a model pointed at (a URL, a file its code wrote, an MCP client's upload), so
every call checks the header's pixel count before decoding (a decompression bomb is a few bytes
claiming billions of pixels), accepts only common raster formats, keeps transparency, and reports a
bad image as a :class:`~glmkit.tools.base.ToolError` that the model reads.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from glmkit.tools.base import ToolError

if TYPE_CHECKING:
    from PIL import Image

IMAGE_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")
# File names the tools treat as images (what a sandbox run wrote, what an index holds).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp"})
MAX_PIXELS = 50_000_000
MAX_FILE_BYTES = 64 * 1024 * 1024


def decode_tool_image(data: bytes, max_pixels: int = MAX_PIXELS, *, source: str = "image") -> Image.Image:
    """Decode image bytes (first frame, RGB or RGBA) after checking the header against ``max_pixels``.

    ``source`` names the image in the error (a URL, a path). Animated images count every frame.
    """
    # Imported here, not at the top: glmkit.data's package imports torch, which the tool chain must
    # not load just to be imported (tests/agent/test_imports.py).
    from glmkit.data.decode import BadImageError, decode_image

    try:
        return decode_image(data, source, max_pixels=max_pixels, formats=IMAGE_FORMATS, keep_alpha=True)
    except BadImageError as exc:
        raise ToolError(str(exc)) from None


def read_image_file(
    path: str | os.PathLike[str], max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES
) -> Image.Image:
    """:func:`decode_tool_image` on a file's bytes, refusing files over ``max_bytes``."""
    size = os.path.getsize(path)
    if size > max_bytes:
        raise ToolError(f"image file {str(path)!r} is {size} bytes, above the limit of {max_bytes}")
    with open(path, "rb") as handle:
        data = handle.read()
    return decode_tool_image(data, max_pixels, source=str(path))
