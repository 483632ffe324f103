"""Small tools for the agent tests (not registered, so the global tool registry stays clean)."""

from __future__ import annotations

from typing import Any

from PIL import Image

from glmkit.tools.base import Tool, ToolContext, ToolError, ToolResult


class EchoTool(Tool):
    """Repeat a text."""

    name = "echo"
    description = "Repeat a text a number of times."
    parameters = {
        "type": "object",
        "properties": {
            "text": {"type": "string", "description": "what to repeat"},
            "times": {"type": "integer", "minimum": 1, "default": 1, "description": "how often"},
        },
        "required": ["text"],
        "additionalProperties": False,
    }

    def run(self, context: ToolContext, text: str, times: int = 1, **_: Any) -> ToolResult:
        return ToolResult(text=" ".join([text] * times), data={"length": len(text) * times})


class MakeImageTool(Tool):
    """Produce a solid-colour image."""

    name = "make_image"
    description = "Draw a solid-colour image of the given size."
    parameters = {
        "type": "object",
        "properties": {
            "width": {"type": "integer", "minimum": 1, "default": 32},
            "height": {"type": "integer", "minimum": 1, "default": 24},
            "color": {"type": "string", "default": "red"},
        },
        "additionalProperties": False,
    }

    def run(
        self, context: ToolContext, width: int = 32, height: int = 24, color: str = "red", **_: Any
    ) -> ToolResult:
        return ToolResult(
            text=f"made a {width}x{height} {color} image", images=[Image.new("RGB", (width, height), color)]
        )


class ImageSizeTool(Tool):
    """Report the size of an image in the context (reads images by id)."""

    name = "image_size"
    description = "Report the width and height of an image."
    parameters = {
        "type": "object",
        "properties": {"image": {"type": "string", "description": 'Id of an image, e.g. "img_0".'}},
        "required": ["image"],
        "additionalProperties": False,
    }

    def run(self, context: ToolContext, image: str, **_: Any) -> ToolResult:
        width, height = context.get_image(image).size
        if width > 10_000:
            raise ToolError("image too wide")
        return ToolResult(text=f"{width}x{height}")


def toy_tools() -> list[Tool]:
    """One instance of each toy tool."""
    return [EchoTool(), MakeImageTool(), ImageSizeTool()]
