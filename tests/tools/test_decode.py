"""Images for the tools: glmkit's one decoder with the tools' limits, failures as ToolError."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageFile

from glmkit.tools.base import ToolError
from glmkit.tools.decode import IMAGE_FORMATS, decode_tool_image, read_image_file

from .conftest import png_header_only


def encoded(image: Image.Image, fmt: str = "PNG", **save_args: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **save_args)
    return buf.getvalue()


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if any pixel data is decoded (headers may still be read)."""

    def load(self):
        raise AssertionError(f"{self.format} pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


def test_decompression_bomb_is_refused_from_the_header(no_decoding):
    bomb = png_header_only(8_000, 8_000)  # 64 M pixels claimed in a 100-byte file
    assert len(bomb) < 200
    with pytest.raises(
        ToolError, match=r"8000x8000 = 64000000 pixels, above the limit of 50000000.*not decoded"
    ):
        decode_tool_image(bomb, max_pixels=50_000_000)
    # far beyond Pillow's own limit, Pillow's check fires first; the verdict is the same
    with pytest.raises(ToolError, match="a likely decompression bomb, not decoded"):
        decode_tool_image(png_header_only(100_000, 100_000), max_pixels=50_000_000)


def test_pixel_limit_is_configurable():
    data = encoded(Image.new("RGB", (100, 100), "red"))
    assert decode_tool_image(data, max_pixels=10_000).size == (100, 100)
    with pytest.raises(ToolError, match="above the limit of 9999"):
        decode_tool_image(data, max_pixels=9_999)


def test_animations_count_every_frame(no_decoding):
    frames = [Image.new("RGB", (50, 50), (i * 40, 0, 0)) for i in range(5)]
    gif = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    with pytest.raises(ToolError, match="5 frames of 50x50"):
        decode_tool_image(gif, max_pixels=3_000)  # one frame fits, five exceed four times the limit


def test_non_images_and_unlisted_formats_are_refused():
    with pytest.raises(ToolError, match="not a readable image"):
        decode_tool_image(b"<html>not an image</html>")
    ppm = encoded(Image.new("RGB", (4, 4)), "PPM")  # a format Pillow reads but the tools do not accept
    with pytest.raises(ToolError, match=r"not a readable image \(accepted formats: PNG, JPEG"):
        decode_tool_image(ppm, source="upload.ppm")
    assert "PPM" not in IMAGE_FORMATS


def test_truncated_images_are_tool_errors_naming_the_source():
    data = encoded(Image.new("RGB", (64, 64), "blue"), "JPEG")
    with pytest.raises(ToolError, match=r"^https://x.test/a.jpg: "):
        decode_tool_image(data[: len(data) // 2], source="https://x.test/a.jpg")


def test_transparency_is_kept_and_opaque_images_are_rgb():
    assert decode_tool_image(encoded(Image.new("RGBA", (4, 4), (1, 2, 3, 4)))).getpixel((0, 0)) == (
        1,
        2,
        3,
        4,
    )
    assert decode_tool_image(encoded(Image.new("LA", (4, 4)))).mode == "RGBA"
    palette = Image.new("P", (4, 4))
    assert decode_tool_image(encoded(palette, transparency=0)).mode == "RGBA"
    assert decode_tool_image(encoded(Image.new("L", (4, 4), 9))).mode == "RGB"


def test_read_image_file_refuses_large_files_before_reading(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(encoded(Image.new("RGB", (32, 32))))
    assert read_image_file(path).size == (32, 32)
    with pytest.raises(ToolError, match=r"is \d+ bytes, above the limit of 10"):
        read_image_file(path, max_bytes=10)
    with pytest.raises(ToolError, match="above the limit of 100"):
        read_image_file(path, max_pixels=100)


def test_net_has_no_decoder_of_its_own():
    """One decode_image in glmkit (glmkit.data.decode); the tools call it through glmkit.tools.decode."""
    import glmkit.tools.net as net

    assert not hasattr(net, "decode_image") and not hasattr(net, "read_image_file")
