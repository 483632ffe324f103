"""The one image decoder of glmkit: RGB out, bad files named, nothing decoded that is too large.

A source that cannot decode an image raises :class:`BadImageError`, which the mixture counts and
skips (GLM-5V-Turbo section 2.1's data is web-scale: some files are always broken); any other error
is a bug and raises as usual. The tool chain decodes untrusted images through the same function,
with a pixel limit per call, a list of accepted formats and alpha kept
(:mod:`glmkit.tools.decode` turns the error into the tools' own).
"""

from __future__ import annotations

import contextlib
import os
import struct
import warnings
import zlib
from collections.abc import Sequence
from io import BytesIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# What PIL raises for files that are not (complete, sane) images. DecompressionBombWarning is turned
# into an error while decoding: an image that large is a waste for a 224-pixel pipeline at best.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # missing file, truncated data, UnidentifiedImageError
    ValueError,
    SyntaxError,  # PIL's PNG/GIF parsers raise it for broken chunks
    EOFError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


class BadImageError(Exception):
    """An image that could not be read or decoded; the message names it and says why."""


def decode_image(
    source: str | os.PathLike | bytes,
    description: str,
    draft_size: int | None = None,
    *,
    max_pixels: int | None = None,
    formats: Sequence[str] | None = None,
    keep_alpha: bool = False,
) -> Image.Image:
    """Open a path or encoded bytes as an RGB image, raising :class:`BadImageError` on failure.

    Decoding is forced here (``load``) so truncated files fail now, not later inside a transform.
    EXIF orientation is applied; transparent images are composited on white, not on black. With
    ``draft_size``, JPEGs are decoded at the smallest 1/2, 1/4 or 1/8 scale whose sides are still
    >= ``draft_size`` (several times faster on large photos); other formats decode at full size.

    Untrusted input (the tool chain: images from the web, from a model's code) needs more:

    - ``max_pixels``: refuse an image whose header claims more pixels, before decoding it (a
      decompression bomb is a few bytes claiming billions of pixels), and an animation whose frames
      hold more than ``4 * max_pixels`` in all. Pillow's own limit (``Image.MAX_IMAGE_PIXELS``)
      applies in any case;
    - ``formats``: the Pillow format names accepted (``("PNG", "JPEG")``); others are not readable;
    - ``keep_alpha``: return an image with transparency as RGBA instead of compositing it.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            fp = BytesIO(source) if isinstance(source, bytes | bytearray) else source
            with Image.open(fp, formats=list(formats) if formats is not None else None) as img:
                if max_pixels is not None:
                    _check_pixels(img, max_pixels, description)  # header only: nothing decoded yet
                if draft_size and img.format == "JPEG":
                    img.draft(None, (draft_size, draft_size))
                img.load()
                return _to_rgb(img, keep_alpha=keep_alpha)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImageError(
            f"{description}: a likely decompression bomb, not decoded ({type(exc).__name__}: {exc})"
        ) from exc
    except UnidentifiedImageError as exc:
        accepted = f"accepted formats: {', '.join(formats)}; " if formats is not None else ""
        raise BadImageError(
            f"{description}: not a readable image ({accepted}{type(exc).__name__}: {exc})"
        ) from exc
    except _DECODE_ERRORS as exc:
        raise BadImageError(f"{description}: {type(exc).__name__}: {exc}") from exc


def _check_pixels(img: Image.Image, max_pixels: int, description: str) -> None:
    """Refuse an opened (not yet decoded) image above ``max_pixels``, every frame counted."""
    width, height = img.size
    if width * height > max_pixels:
        raise BadImageError(
            f"{description}: {width}x{height} = {width * height} pixels, above the limit of "
            f"{max_pixels}; a likely decompression bomb, not decoded"
        )
    # Animated images decode frame after frame; bound the total, with room for short animations.
    frames = getattr(img, "n_frames", 1)
    if width * height * frames > 4 * max_pixels:
        raise BadImageError(
            f"{description}: {frames} frames of {width}x{height}, more than {4 * max_pixels} pixels "
            "in all; not decoded"
        )


def _to_rgb(img: Image.Image, keep_alpha: bool = False) -> Image.Image:
    """An RGB copy of ``img`` upright (EXIF), 8-bit, transparency on white (or kept, as RGBA)."""
    with contextlib.suppress(Exception):  # a malformed EXIF block is no reason to lose the pixels
        # in place: without an orientation tag exif_transpose would return a full copy, and the
        # copy below is the one an image leaving ``Image.open``'s context needs (12 MP: ~40 ms each)
        ImageOps.exif_transpose(img, in_place=True)
    if img.mode.startswith("I") or img.mode == "F":  # convert("RGB") would clip everything above 255
        img = _to_8bit(img)
    if keep_alpha and (img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info):
        return img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB") if img.mode != "RGB" else img.copy()


def _to_8bit(img: Image.Image) -> Image.Image:
    """A 16-bit (``I;16*``), 32-bit integer (``I``) or float (``F``) image rescaled to 8-bit ``L``.

    ``I;16*`` keeps its top 8 bits (``>> 8``). ``I`` and ``F`` go by their value range: ``F`` within
    [0, 1] is scaled by 255; values within [0, 255] are kept; within [0, 65535] they are read as
    16-bit (``// 256``); any other range (negative values, larger ones) is stretched linearly from
    its minimum to its maximum. Non-finite values become 0.
    """
    values = np.asarray(img)
    if img.mode.startswith("I;16"):
        return Image.fromarray((values.astype(np.uint16) >> 8).astype(np.uint8), "L")
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    values = np.where(finite, values, 0.0)
    lo, hi = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 0.0)
    if img.mode == "F" and lo >= 0 and hi <= 1:
        scaled = np.rint(values * 255)
    elif lo >= 0 and hi <= 255:
        scaled = np.rint(values)
    elif lo >= 0 and hi <= 65535:
        scaled = np.floor(values / 256)
    else:  # hi > lo here: the range exceeds [0, 255]
        scaled = np.rint((values - lo) * (255 / (hi - lo)))
    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L")
