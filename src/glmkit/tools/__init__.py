"""The multimodal tool chain (GLM-5V report section 3.1).

Importing this package registers every built-in tool in ``TOOLS``:

- perception: ``crop_image``, ``draw_image_bounding_boxes``, ``draw_image_point_markers``,
  ``draw_image_geometry``, ``draw_image_3d_bounding_boxes``, ``draw_video_objects_tracking``;
- browsing: ``load_image_from_url``, ``read_webpage`` (SSRF-checked, see :mod:`glmkit.tools.net`);
- code: ``python`` (a limited child process, see :mod:`glmkit.tools.sandbox`);
- search: ``search_web_text``, ``search_web_by_image``, ``search_images`` over a provider
  (:mod:`glmkit.tools.search`).

Images from bytes and files are decoded by :mod:`glmkit.tools.decode` (glmkit's one decoder with
the tools' limits).

Nothing here imports Lightning or the training stages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from glmkit.registry import RegistryError
from glmkit.tools import (
    browser,
    coords,
    decode,
    draw3d,
    drawing,
    image,
    net,
    sandbox,
    search,
    video,
    webpage,
)
from glmkit.tools.base import TOOLS, Tool, ToolContext, ToolError, ToolResult

__all__ = [
    "TOOLS",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolResult",
    "browser",
    "coords",
    "decode",
    "default_tools",
    "draw3d",
    "drawing",
    "get_tool",
    "image",
    "net",
    "resolve_tools",
    "sandbox",
    "search",
    "tool_schemas",
    "video",
    "webpage",
]


def get_tool(name: str, **kwargs: Any) -> Tool:
    """Build the tool registered as ``name`` with constructor ``kwargs``; a typo suggests close names."""
    tool = TOOLS.build(name, **kwargs)
    if tool.name != name:  # the registered name is the name the model calls
        raise RegistryError(
            f"tool registered as {name!r} calls itself {tool.name!r}; register it under its name"
        )
    return tool


def default_tools(names: list[str] | None = None) -> list[Tool]:
    """Instances of the given tools (default: every registered tool, in name order)."""
    return [get_tool(name) for name in (names if names is not None else TOOLS.names())]


def resolve_tools(tools: Sequence[Tool | str] | Mapping[str, Tool]) -> dict[str, Tool]:
    """Tool instances by name; a string is built by :func:`get_tool`. Two tools may not share a name."""
    items = list(tools.values()) if isinstance(tools, Mapping) else list(tools)
    out: dict[str, Tool] = {}
    for item in items:
        tool = get_tool(item) if isinstance(item, str) else item
        if tool.name in out:
            raise ValueError(f"two tools are named {tool.name!r}")
        out[tool.name] = tool
    return out


def tool_schemas(tools: list[Tool]) -> list[dict[str, Any]]:
    """The OpenAI ``tools`` list for ``tools``."""
    return [tool.schema() for tool in tools]
