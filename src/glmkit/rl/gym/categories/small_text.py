"""``small_text``: a multi-step task that needs a tool: text too small to read until it is cropped and zoomed.

A serial code (``SN K7T-9ZB``) is printed on a small white label in one corner of a busy scene, in
type a few pixels high: below :data:`MIN_READABLE_PX` at the resolution the policy is given, so it
cannot be read from the image itself. The policy calls ``crop_image`` (the tool chain's, through the
agent's turn logic) on the corner with a zoom, reads the enlarged crop, and answers with the code;
exact match. ``metadata`` records the label's pixel box, the text's rendered height and the
readability threshold, so tests and scripted policies can check both sides of the claim;
:meth:`SmallText.oracle_trajectory` is the scripted solution (crop the label with enough zoom, then
answer) that the RL stage's SFT warm start teaches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from glmkit.data.fonts import load_font
from glmkit.eval.demo.common import choice, demo_scene, randint, serial_code
from glmkit.rl.gym.categories.ocr import EXACT_MATCH
from glmkit.rl.gym.category import TASK_CATEGORIES, Draft, TaskCategory, VerifierSpec, tool_call_reply
from glmkit.scoring import Sample
from glmkit.tools import get_tool
from glmkit.tools.base import Tool

if TYPE_CHECKING:
    from glmkit.agent.formats import ToolCallFormat

MIN_READABLE_PX = 10
"""Text whose ink is shorter than this many pixels counts as unreadable (a modelling assumption,
not a measurement of a model): at the default 5 pixels, capitals fill about a third of a 14-pixel
ViT patch row and look-alike glyphs (8/B, 5/S, 2/Z) blur together, while 10 pixels and more is
ordinary small print that a VLM reads."""
CROP_MARGIN_PX = 8
"""Pixels of scene kept around the label in the oracle's crop."""
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
INK = (40, 40, 40)
QUESTION = (
    "What is the serial number printed in small text in the {corner} corner of the image? It is too small "
    "to read at this resolution: zoom in with the crop_image tool first. Answer with the code only."
)


@TASK_CATEGORIES.register("small_text")
class SmallText(TaskCategory):
    """Read a serial code printed too small to read without ``crop_image`` (module docstring).

    Args:
        canvas: ``(width, height)`` of the scene.
        font_size: the label's font size in pixels (its ink must stay below ``min_readable_px``).
        min_readable_px: the readability threshold the font size is checked against.
        max_turns: policy replies per episode (a crop, then the answer, with room for a retry).
        seed / size / source / data_dir: see :class:`~glmkit.rl.gym.category.TaskCategory`.

    Raises:
        ValueError: the font is large enough to read without zooming.
    """

    name = "small_text"

    def __init__(
        self,
        canvas: Sequence[int] = (800, 600),
        font_size: int = 7,
        min_readable_px: int = MIN_READABLE_PX,
        max_turns: int = 4,
        seed: int = 0,
        size: int = 100_000,
        source: str | None = None,
        data_dir: str | None = None,
    ) -> None:
        super().__init__(seed, size, source, data_dir)
        if len(canvas) != 2 or min(canvas) < 200:
            raise ValueError(f"{self.name}: canvas must be (width, height) >= 200 pixels, got {canvas!r}")
        self.canvas = (int(canvas[0]), int(canvas[1]))
        height = text_height("SN BCD-FGH", font_size)
        if height >= min_readable_px:
            raise ValueError(
                f"{self.name}: font_size={font_size} draws text {height} px high, readable without zooming "
                f"(min_readable_px={min_readable_px}); use a smaller font"
            )
        self.font_size = int(font_size)
        self.min_readable_px = int(min_readable_px)
        if not isinstance(max_turns, int) or max_turns < 2:
            raise ValueError(
                f"{self.name}: max_turns must be an int >= 2 (a crop, then the answer), got {max_turns!r}"
            )
        self.max_turns = max_turns

    def draw(self, rng: np.random.Generator, index: int) -> Draft:
        width, height = self.canvas
        image = demo_scene(rng, self.canvas, randint(rng, 6, 10), unique_first=False).image
        code, corner = serial_code(rng), choice(rng, CORNERS)
        text = f"SN {code}"
        font = load_font(self.font_size)
        draw = ImageDraw.Draw(image)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        pad, margin = 3, 8
        label_w, label_h = right - left + 2 * pad, bottom - top + 2 * pad
        x = margin if corner.endswith("left") else width - margin - label_w
        y = margin if corner.startswith("top") else height - margin - label_h
        draw.rectangle((x, y, x + label_w - 1, y + label_h - 1), fill=(255, 255, 255))
        draw.text((x + pad - left, y + pad - top), text, font=font, fill=INK)
        metadata = {
            "corner": corner,
            "label_box": [x, y, x + label_w, y + label_h],
            "text_height_px": bottom - top,
            "min_readable_px": self.min_readable_px,
        }
        return Draft(QUESTION.format(corner=corner), code, [image], metadata)

    def verifiers(self) -> dict[str, VerifierSpec]:
        return {"exact_match": EXACT_MATCH}

    def oracle(self, sample: Sample) -> str:
        return str(sample.answer)

    def tools(self, sample: Sample) -> dict[str, Tool]:
        """The tool chain's ``crop_image``."""
        return {"crop_image": get_tool("crop_image")}

    def oracle_trajectory(
        self, sample: Sample, tool_format: str | ToolCallFormat = "hermes"
    ) -> list[str | dict[str, Any]]:
        """Crop the label (:func:`label_crop`) with ``crop_image`` in ``tool_format``, then answer."""
        arguments = {"image": "img_0", **label_crop(sample)}
        call = tool_call_reply(tool_format, "crop_image", arguments, "Let me zoom in on the label.")
        return [call, self.oracle(sample)]


def label_crop(sample: Sample) -> dict[str, Any]:
    """``crop_image`` arguments that read a ``small_text`` sample's label: its pixel box with
    :data:`CROP_MARGIN_PX` around it as a 0-1000 box (rounded outwards, so no ink is cut off), and the
    smallest zoom that brings the text to twice the readable height (at most 8, the tool's cap)."""
    width, height = sample.metadata["image_size"]
    x1, y1, x2, y2 = sample.metadata["label_box"]
    m = CROP_MARGIN_PX
    bbox = [
        math.floor(max(0, x1 - m) * 1000 / width),
        math.floor(max(0, y1 - m) * 1000 / height),
        math.ceil(min(width, x2 + m) * 1000 / width),
        math.ceil(min(height, y2 + m) * 1000 / height),
    ]
    ink = max(1, int(sample.metadata["text_height_px"]))
    zoom = min(8, math.ceil(2 * int(sample.metadata["min_readable_px"]) / ink))
    return {"bbox": bbox, "zoom": zoom}


def text_height(text: str, font_size: int) -> int:
    """The height in pixels of ``text``'s ink box at ``font_size``."""
    _, top, _, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox(
        (0, 0), text, font=load_font(font_size)
    )
    return bottom - top
