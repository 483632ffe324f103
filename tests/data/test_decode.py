"""decode_image's options for untrusted input: a pixel limit per call, accepted formats, alpha kept.

The training path (RGB, EXIF, 16-bit levels, errors named) is checked in tests/data/test_sources.py.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from glmkit.data.decode import BadImageError, decode_image


def encoded(image: Image.Image, fmt: str = "PNG", **save_args: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **save_args)
    return buf.getvalue()


def test_max_pixels_refuses_before_decoding_and_names_the_image():
    data = encoded(Image.new("RGB", (100, 50)))
    assert decode_image(data, "ok", max_pixels=5_000).size == (100, 50)
    with pytest.raises(BadImageError, match=r"^page.png: 100x50 = 5000 pixels, above the limit of 4999"):
        decode_image(data, "page.png", max_pixels=4_999)


def test_max_pixels_counts_the_frames_of_an_animation():
    frames = [Image.new("RGB", (20, 20), (i * 50, 0, 0)) for i in range(5)]
    gif = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    assert decode_image(gif, "anim", max_pixels=500).size == (20, 20)  # 2000 px in all <= 4 * 500
    with pytest.raises(BadImageError, match="5 frames of 20x20"):
        decode_image(gif, "anim", max_pixels=499)


def test_formats_limit_what_is_readable():
    bmp = encoded(Image.new("RGB", (4, 4)), "BMP")
    assert decode_image(bmp, "x.bmp").size == (4, 4)  # every format by default
    with pytest.raises(BadImageError, match=r"x.bmp: not a readable image \(accepted formats: PNG"):
        decode_image(bmp, "x.bmp", formats=("PNG",))


def test_keep_alpha_returns_rgba_instead_of_compositing_on_white():
    rgba = Image.new("RGBA", (2, 1), (0, 0, 255, 255))
    rgba.putpixel((1, 0), (10, 20, 30, 0))
    kept = decode_image(encoded(rgba), "x", keep_alpha=True)
    assert kept.mode == "RGBA" and kept.getpixel((1, 0)) == (10, 20, 30, 0)
    flat = decode_image(encoded(rgba), "x")
    assert flat.mode == "RGB" and flat.getpixel((1, 0)) == (255, 255, 255)
    assert decode_image(encoded(Image.new("RGB", (2, 2))), "x", keep_alpha=True).mode == "RGB"


def test_keep_alpha_still_applies_exif_orientation_and_16_bit_levels():
    wide = Image.new("RGBA", (4, 2), (255, 0, 0, 128))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    upright = decode_image(encoded(wide, exif=exif), "x", keep_alpha=True)
    assert upright.size == (2, 4) and upright.mode == "RGBA"
    ramp = Image.fromarray(np.linspace(0, 65535, 64).astype(np.uint16).reshape(8, 8))
    levels = np.asarray(decode_image(encoded(ramp), "ramp", keep_alpha=True))[..., 0]
    assert levels.min() == 0 and levels.max() == 255 and len(np.unique(levels)) > 32


def test_pillow_bomb_check_still_applies_without_max_pixels(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(
        BadImageError, match="a likely decompression bomb, not decoded.*DecompressionBombError"
    ):
        decode_image(encoded(Image.new("RGB", (64, 64))), "bomb")
