"""Scripted policies and helpers of the gym tests: they act as a model would, through tool calls."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from glmkit.rl.gym.gui import GuiApp
from glmkit.scoring import Sample

CORNER_BOXES = {  # norm1000 crops of each corner, large enough to hold the label
    "top-left": [0, 0, 250, 100],
    "top-right": [750, 0, 1000, 100],
    "bottom-left": [0, 900, 250, 1000],
    "bottom-right": [750, 900, 1000, 1000],
}


def hermes_call(name: str, arguments: dict[str, Any]) -> str:
    """A Hermes-format tool call, as a model writes it."""
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


def ink_height(image: Image.Image) -> int:
    """Rows spanned by dark grey ink (text), in pixels; 0 when there is none.

    The scenes' shapes are saturated colours on a light background, so dark, unsaturated pixels
    are the small-text label's ink (antialiased edges and bicubic zoom included).
    """
    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
    ink = (rgb.max(axis=2) - rgb.min(axis=2) <= 24) & (rgb.mean(axis=2) <= 160)
    rows = np.nonzero(ink.any(axis=1))[0]
    return int(rows[-1] - rows[0] + 1) if rows.size else 0


def images_in(message: dict[str, Any]) -> list[Image.Image]:
    """The PIL images of a message's image parts."""
    content = message.get("content")
    if not isinstance(content, list):
        return []
    return [p["image"] for p in content if isinstance(p, dict) and p.get("type") == "image"]


class ReadingPolicy:
    """Reads the small text only from an image in which its ink is at least ``min_readable_px``
    high (a stand-in for a model's limited resolution); otherwise crops the named corner with
    ``crop_image`` (when ``use_tools``) or gives up."""

    def __init__(self, sample: Sample, use_tools: bool = True, zoom: float = 4.0) -> None:
        self.sample, self.use_tools, self.zoom = sample, use_tools, zoom
        self.seen_heights: list[int] = []

    def __call__(self, messages: Sequence[dict[str, Any]]) -> str:
        latest = images_in(messages[-1])
        self.seen_heights += [ink_height(im) for im in latest]
        if self.seen_heights and max(self.seen_heights) >= self.sample.metadata["min_readable_px"]:
            return f"<answer>{self.sample.answer}</answer>"
        if self.use_tools and len(messages) <= 2:  # only the question so far: zoom in once
            box = CORNER_BOXES[self.sample.metadata["corner"]]
            return "Let me zoom in.\n" + hermes_call(
                "crop_image", {"image": "img_0", "bbox": box, "zoom": self.zoom}
            )
        return "I cannot read the text."


class ClickingPolicy:
    """Clicks through a GUI trajectory: the tab that holds the information, then its ``Show`` button,
    then answers. It keeps its own copy of the app to know where things are, and answers only when
    the screenshot the environment returned shows the information (equal to its copy's render)."""

    def __init__(self, sample: Sample, answer_early: bool = False) -> None:
        self.sample = sample
        self.app = GuiApp.from_dict(sample.metadata["app"])
        self.answer_early = answer_early
        self.clicks = 0

    def click(self, label: str) -> str:
        element = self.app.element(label)
        x, y = element.center
        width, height = self.app.size
        self.app.click(x, y)
        self.clicks += 1
        return hermes_call("click", {"point": [round(x * 1000 / width), round(y * 1000 / height)]})

    def __call__(self, messages: Sequence[dict[str, Any]]) -> str:
        if self.answer_early:
            return "<answer>I do not know.</answer>"
        tab = self.sample.metadata["tab"]
        if self.app.active != tab:
            return self.click(tab)
        reveal = next((e.label for e in self.app.widget_elements() if e.reveals), None)
        if reveal is not None and tab not in self.app.revealed:
            return self.click(reveal)
        shown = images_in(messages[-1])
        assert shown and np.array_equal(np.asarray(shown[-1]), np.asarray(self.app.render()))
        assert self.sample.answer in " ".join(self.app.visible_text())
        return f"<answer>{self.sample.answer}</answer>"
