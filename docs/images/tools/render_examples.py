"""Render one example image per drawing tool into this directory.

Run from anywhere: ``python docs/images/tools/render_examples.py``. The scene is procedural (flat
colours, so the PNGs stay small); each output is written through the tool exactly as an agent
would call it, with 0-1000 coordinates.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from glmkit.tools import get_tool
from glmkit.tools.base import ToolContext

OUT = Path(__file__).resolve().parent
MAX_BYTES = 100 * 1024


def street_scene(size: tuple[int, int] = (480, 320), ball_x: int = 300) -> Image.Image:
    """Sky, road, a house, a tree, a car and a ball, in flat colours."""
    w, h = size
    img = Image.new("RGB", size, (186, 220, 245))
    d = ImageDraw.Draw(img)
    d.rectangle([0, int(h * 0.7), w, h], fill=(110, 110, 115))  # road
    d.rectangle([0, int(h * 0.62), w, int(h * 0.7)], fill=(120, 180, 90))  # verge
    d.rectangle([40, 110, 180, 200], fill=(225, 200, 160))  # house
    d.polygon([(30, 110), (110, 55), (190, 110)], fill=(170, 60, 50))  # roof
    d.rectangle([95, 150, 125, 200], fill=(100, 70, 40))  # door
    d.rectangle([330, 120, 345, 200], fill=(110, 80, 50))  # trunk
    d.ellipse([295, 60, 380, 140], fill=(60, 140, 60))  # crown
    d.rounded_rectangle([200, 215, 330, 255], radius=10, fill=(200, 40, 40))  # car body
    d.ellipse([215, 245, 240, 270], fill=(30, 30, 30))
    d.ellipse([290, 245, 315, 270], fill=(30, 30, 30))
    d.ellipse([ball_x - 12, 270, ball_x + 12, 294], fill=(250, 200, 40))  # ball
    return img


def save(image: Image.Image, name: str) -> Path:
    path = OUT / name
    image.convert("RGB").quantize(colors=64).save(path, optimize=True)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{path} is {size} bytes, above {MAX_BYTES}")
    print(f"{path.name}: {image.width}x{image.height}, {size} bytes")
    return path


def call(name: str, args: dict, ctx: ToolContext) -> Image.Image:
    result = get_tool(name)(args, ctx)
    if not result.ok:
        raise SystemExit(f"{name} failed: {result.error}")
    return result.images[0]


def main() -> int:
    ctx = ToolContext(workdir=Path(tempfile.mkdtemp(prefix="glmkit-render-")))
    ctx.add_image(street_scene())  # img_0
    save(
        call(
            "draw_image_bounding_boxes",
            {
                "image": "img_0",
                "boxes": [
                    {"bbox": [62, 170, 396, 631], "label": "house"},
                    {"bbox": [406, 665, 694, 850], "label": "car"},
                    {"bbox": [610, 180, 800, 630], "label": "tree"},
                    {"bbox": [598, 840, 652, 922], "label": "ball"},
                ],
            },
            ctx,
        ),
        "draw_image_bounding_boxes.png",
    )
    save(
        call(
            "draw_image_point_markers",
            {
                "image": "img_0",
                "points": [
                    {"point": [229, 547], "label": "door"},
                    {"point": [625, 882], "label": "ball"},
                    {"point": [469, 806], "label": "wheel"},
                    {"point": [630, 800], "label": "wheel"},
                ],
            },
            ctx,
        ),
        "draw_image_point_markers.png",
    )
    save(
        call(
            "draw_image_geometry",
            {
                "image": "img_0",
                "shapes": [
                    {
                        "type": "polygon",
                        "points": [[62, 344], [229, 172], [396, 344]],
                        "fill": True,
                        "label": "roof",
                    },
                    {"type": "arrow", "points": [[480, 930], [600, 890]], "label": "rolls"},
                    {"type": "circle", "points": [[705, 312]], "radius": 95, "label": "crown"},
                    {
                        "type": "polyline",
                        "points": [[0, 700], [250, 660], [500, 700], [750, 660], [1000, 700]],
                    },
                    {"type": "line", "points": [[20, 950], [980, 950]], "color": "white"},
                ],
            },
            ctx,
        ),
        "draw_image_geometry.png",
    )
    save(
        call(
            "draw_image_3d_bounding_boxes",
            {
                "image": "img_0",
                "boxes": [
                    {"bbox_3d": [0.62, 2.5, 10.0, 3.2, 1.3, 1.8, 0.0, 0.3, 0.0], "label": "car"},
                    {"bbox_3d": [-6.5, -0.55, 20.0, 6.6, 7.2, 5.0, 0.0, -0.35, 0.0], "label": "house"},
                ],
                "intrinsics": {"fx": 400, "fy": 400, "cx": 240, "cy": 140},
            },
            ctx,
        ),
        "draw_image_3d_bounding_boxes.png",
    )
    frames = [ctx.add_image(street_scene(ball_x=120 + 70 * t), prefix="frame") for t in range(4)]
    track = {
        "video": frames,
        "fps": 1,
        "tracks": [
            {
                "label": "ball",
                "boxes": [{"second": t, "bbox": [225 + 146 * t, 840, 275 + 146 * t, 922]} for t in range(4)],
            },
            {"label": "car", "boxes": [{"second": t, "bbox": [406, 665, 694, 850]} for t in range(4)]},
        ],
    }
    result = get_tool("draw_video_objects_tracking")(track, ctx)
    if not result.ok:
        raise SystemExit(result.error)
    thumbs = [im.resize((240, 160), Image.Resampling.LANCZOS) for im in result.images]
    sheet = Image.new("RGB", (480, 320), "white")
    for i, thumb in enumerate(thumbs):
        sheet.paste(thumb, ((i % 2) * 240, (i // 2) * 160))
    save(sheet, "draw_video_objects_tracking.png")
    save(
        get_tool("crop_image")({"image": "img_0", "bbox": [400, 640, 700, 940], "zoom": 2}, ctx).images[0],
        "crop_image.png",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
