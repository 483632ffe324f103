"""``crop_image``: zoom into a region of an image (GLM-5V report section 3.1, "thinking with images").

The crop is always taken from the image the id names (never from an earlier crop unless that
crop's own id is passed), at full resolution, and optionally enlarged so that small details
become visible to the vision encoder. Boxes smaller than ``min_crop_px`` are grown about their
centre, as verl's image zoom-in tool does (28 px there), because a 3-pixel crop is useless to
the model and costs a turn.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from glmkit.tools.base import IMAGE_ID_SCHEMA, TOOLS, Tool, ToolContext, ToolResult, object_schema
from glmkit.tools.coords import BOX_SCHEMA, COORD_SPACE_SCHEMA, box_to_region, region_to_norm1000


def grow_region(
    region: tuple[int, int, int, int], size: tuple[int, int], min_side: int
) -> tuple[int, int, int, int]:
    """Grow a half-open region about its centre to at least ``min_side`` pixels per side, kept inside."""
    width, height = size
    left, top, right, bottom = region

    def grow(lo: int, hi: int, extent: int) -> tuple[int, int]:
        target = min(min_side, extent)
        if hi - lo >= target:
            return lo, hi
        centre = (lo + hi) / 2
        lo = round(centre - target / 2)
        lo = min(max(lo, 0), extent - target)  # shift back inside the image
        return lo, lo + target

    left, right = grow(left, right, width)
    top, bottom = grow(top, bottom, height)
    return left, top, right, bottom


@TOOLS.register("crop_image")
class CropImageTool(Tool):
    """Crop a box out of an image and optionally enlarge it; the crop becomes a new image."""

    name = "crop_image"
    description = (
        "Crop a rectangular region of an image to look at it more closely. Returns the crop as a new "
        "image. Coordinates are integers 0-1000 relative to the image width/height unless "
        'coord_space is "pixels".'
    )
    parameters = object_schema(
        {
            "image": IMAGE_ID_SCHEMA,
            "bbox": BOX_SCHEMA,
            "coord_space": COORD_SPACE_SCHEMA,
            "zoom": {
                "type": "number",
                "minimum": 1,
                "maximum": 8,
                "default": 1,
                "description": "Enlarge the crop by this factor (bicubic).",
            },
            "min_side": {
                "type": "integer",
                "minimum": 0,
                "maximum": 4096,
                "default": 0,
                "description": "Enlarge the crop further until its shorter side has at least this many pixels.",
            },
        },
        required=("image", "bbox"),
    )

    def __init__(self, min_crop_px: int = 28, max_output_pixels: int = 4096 * 4096) -> None:
        if min_crop_px < 1:
            raise ValueError(f"min_crop_px must be >= 1, got {min_crop_px}")
        self.min_crop_px = min_crop_px
        self.max_output_pixels = max_output_pixels

    def run(
        self,
        context: ToolContext,
        image: str,
        bbox: list[float],
        coord_space: str = "norm1000",
        zoom: float = 1.0,
        min_side: int = 0,
        **_: Any,
    ) -> ToolResult:
        """Crop ``bbox`` from ``image``; enlarge by ``zoom`` and up to ``min_side``."""
        source = context.get_image(image)
        size = source.size
        region = box_to_region(bbox, size, coord_space)  # type: ignore[arg-type]
        region = grow_region(region, size, self.min_crop_px)
        crop = source.crop(region)
        scale = max(float(zoom), int(min_side) / min(crop.size))
        notes = []
        if crop.width * crop.height * scale * scale > self.max_output_pixels:
            scale = max(1.0, (self.max_output_pixels / (crop.width * crop.height)) ** 0.5)
            notes.append(f"enlargement capped at x{scale:.2f} to stay under {self.max_output_pixels} pixels")
        if scale > 1.0:
            new_size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
            crop = crop.resize(new_size, Image.Resampling.BICUBIC)
        if crop.mode not in ("RGB", "RGBA", "L"):
            crop = crop.convert("RGB")
        norm = region_to_norm1000(region, size)
        text = (
            f"Cropped {image} ({size[0]}x{size[1]}) to pixel box {list(region)} "
            f"(norm1000 {norm}); result {crop.width}x{crop.height}"
            + (f", enlarged x{scale:.2f}" if scale > 1.0 else "")
        )
        if notes:
            text += " (" + "; ".join(notes) + ")"
        return ToolResult(
            text=text,
            images=[crop],
            data={"source": image, "pixel_box": list(region), "norm1000_box": norm, "scale": scale},
        )
