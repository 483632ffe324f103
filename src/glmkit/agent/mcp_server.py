"""Serve glmkit tools over the Model Context Protocol (report section 3.2), with the ``mcp`` 2.x SDK.

Each glmkit tool becomes an MCP tool with the same name, description and JSON schema. The schema
is served verbatim, which is why this module builds on the SDK's low-level ``mcp.server.Server``
(``on_list_tools`` / ``on_call_tool``) rather than ``MCPServer``, whose ``@tool`` derives schemas
from Python type hints. A tool's text result becomes MCP text content, its images MCP image
content (PNG, base64), its error an ``is_error`` result, never a protocol error; ``data`` goes
into ``structured_content``.

Images go in through one extra optional argument on every tool, ``input_images``: an object
mapping an image id to a file path, a ``data:`` URL or bare base64. They are decoded (with the
decompression-bomb checks of :mod:`glmkit.tools.decode`) into the server's tool context before the
call, so ``{"input_images": {"img_0": "/tmp/a.png"}, "image": "img_0", "bbox": [...]}`` crops
``/tmp/a.png``. Images a tool returns stay in the context under the ids it reports, so later
calls can chain on them; the context keeps the newest ``max_images``. Ids are never reused: a
call naming an image that was dropped gets an error saying so (send it again via ``input_images``).

Run ``python -m glmkit.agent.mcp_server --tools crop_image,draw_image_bounding_boxes`` (or
``glmkit tools serve``) to serve on stdio; all logging goes to stderr.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import importlib
import io
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glmkit.cli_imports import add_import_option, import_modules
from glmkit.tools.base import Tool, ToolContext, ToolError, ToolResult

if TYPE_CHECKING:
    from mcp.server import Server
    from PIL import Image

INPUT_IMAGES_ARG = "input_images"
INPUT_IMAGES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {"type": "string"},
    "description": (
        "Images to load before the call, as image id -> file path, data: URL or base64 PNG/JPEG/WEBP. "
        "Refer to them by id in the other arguments."
    ),
}

log = logging.getLogger("glmkit.mcp")


def _require_mcp() -> None:
    try:
        import mcp  # noqa: F401
    except ImportError:
        raise ImportError(
            "the MCP server needs the 'mcp' package (version 2): pip install 'glmkit[mcp]'"
        ) from None


def mcp_input_schema(tool: Tool) -> dict[str, Any]:
    """The tool's parameters schema plus the optional ``input_images`` argument."""
    schema = dict(tool.parameters or {"type": "object", "properties": {}})
    properties = dict(schema.get("properties") or {})
    if INPUT_IMAGES_ARG in properties:
        raise ValueError(
            f"tool {tool.name!r} has its own {INPUT_IMAGES_ARG!r} argument, which MCP serving reserves"
        )
    properties[INPUT_IMAGES_ARG] = INPUT_IMAGES_SCHEMA
    schema["properties"] = properties
    return schema


def load_image_source(source: str, max_pixels: int = 50_000_000) -> Image.Image:
    """Decode an image given as a file path, a ``data:`` URL or bare base64 (bomb-checked)."""
    from glmkit.tools.decode import decode_tool_image, read_image_file

    text = source.strip()
    if text.startswith("data:"):
        header, _, payload = text.partition(",")
        if ";base64" not in header:
            raise ToolError(f"data URL must be base64-encoded, got header {header[:40]!r}")
        return decode_tool_image(_b64decode(payload, "data URL"), max_pixels, source="data URL")
    if len(text) < 4096 and Path(text).expanduser().is_file():
        return read_image_file(Path(text).expanduser(), max_pixels)
    try:
        data = _b64decode(text, "base64 image")
    except ToolError:
        if len(text) < 1024:
            raise ToolError(f"{text!r} is neither an existing image file nor base64 image data") from None
        raise
    return decode_tool_image(data, max_pixels, source="base64 image")


def _b64decode(payload: str, what: str) -> bytes:
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ToolError(f"{what} is not valid base64") from None


class ToolServer:
    """glmkit tools behind an MCP low-level ``Server``.

    Args:
        tools: the tools to serve, by name.
        name: the server name reported to clients.
        context: the tool context shared by the calls (images, scratch directory, network policy).
        max_images: images kept in the context; the oldest are dropped beyond it.
    """

    def __init__(
        self,
        tools: Sequence[Tool],
        *,
        name: str = "glmkit-tools",
        context: ToolContext | None = None,
        max_images: int = 256,
    ) -> None:
        _require_mcp()
        self.tools = {t.name: t for t in tools}
        self.schemas = {t.name: mcp_input_schema(t) for t in tools}
        self.context = context if context is not None else ToolContext()
        self.max_images = max_images
        self.name = name
        self.server = self._build()

    def _build(self) -> Server:
        import mcp.types as types
        from mcp.server import Server

        async def on_list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
            return types.ListToolsResult(
                tools=[
                    types.Tool(name=n, description=t.description, input_schema=self.schemas[n])
                    for n, t in self.tools.items()
                ]
            )

        async def on_call_tool(ctx: Any, params: Any) -> types.CallToolResult:
            import anyio

            # Tools are synchronous and may be slow (web fetches, the Python sandbox), so each call
            # runs in its own worker thread and others go on meanwhile. A cancelled call returns at
            # once; its thread finishes on its own (every tool has a hard time limit).
            return await anyio.to_thread.run_sync(
                self.call, params.name, dict(params.arguments or {}), abandon_on_cancel=True
            )

        return Server(
            self.name,
            on_list_tools=on_list_tools,
            on_call_tool=on_call_tool,
            get_tool_input_schema=lambda n: self.schemas.get(n),
        )

    def call(self, name: str, arguments: dict[str, Any]) -> Any:
        """Run one tool call and return an MCP ``CallToolResult``; failures become ``is_error`` results.

        Calls may run at once (one slow fetch never holds up a crop): they share one tool context,
        whose image store is thread-safe.
        """
        tool = self.tools.get(name)
        if tool is None:
            known = ", ".join(sorted(self.tools)) or "none"
            return _error_result(f"unknown tool {name!r}; this server has: {known}")
        return self._run(tool, dict(arguments))

    def _run(self, tool: Tool, arguments: dict[str, Any]) -> Any:
        import mcp.types as types

        sources = arguments.pop(INPUT_IMAGES_ARG, None) or {}
        if not isinstance(sources, Mapping):
            return _error_result(f"{INPUT_IMAGES_ARG} must be an object of image id -> path or base64")
        try:
            for image_id, source in sources.items():
                if not isinstance(source, str):
                    raise ToolError(
                        f"{INPUT_IMAGES_ARG}.{image_id} must be a string (path, data URL or base64)"
                    )
                self.context.set_image(str(image_id), load_image_source(source))
        except ToolError as exc:
            return _error_result(f"{INPUT_IMAGES_ARG}: {exc}")
        result = tool(arguments, self.context)
        self._trim_images()
        content: list[Any] = [types.TextContent(type="text", text=result.to_text() or "(no output)")]
        for image in result.images:
            content.append(types.ImageContent(type="image", data=_png_base64(image), mime_type="image/png"))
        structured = _structured(result)
        return types.CallToolResult(content=content, structured_content=structured, is_error=not result.ok)

    def _trim_images(self) -> None:
        # drop_image retires the id: a client holding it gets a clear error, never another image.
        self.context.drop_oldest_images(self.max_images)


def _structured(result: ToolResult) -> dict[str, Any] | None:
    if result.error is not None or not (result.data or result.image_ids):
        return None
    return {"image_ids": list(result.image_ids), **result.data}


def _error_result(text: str) -> Any:
    import mcp.types as types

    return types.CallToolResult(
        content=[types.TextContent(type="text", text=f"Error: {text}")], is_error=True
    )


def _png_base64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def build_server(
    tools: Sequence[Tool | str] | None = None,
    *,
    name: str = "glmkit-tools",
    context: ToolContext | None = None,
) -> ToolServer:
    """A :class:`ToolServer` for ``tools`` (instances or registered names; ``None``: every registered tool).

    ``tool_server.server`` is the MCP ``Server``; pass it to ``mcp.Client`` for in-process use.
    """
    from glmkit.tools import resolve_tools

    if tools is None:
        tools = registered_tool_names()
    return ToolServer(list(resolve_tools(tools).values()), name=name, context=context)


def registered_tool_names() -> list[str]:
    """Names of every tool registered after importing :mod:`glmkit.tools`."""
    importlib.import_module("glmkit.tools")
    from glmkit.tools.base import TOOLS

    return TOOLS.names()


async def serve_stdio(tool_server: ToolServer) -> None:
    """Serve until stdin closes."""
    from mcp.server.stdio import stdio_server

    server = tool_server.server
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``glmkit tools serve``."""
    parser = argparse.ArgumentParser(
        prog="glmkit tools serve", description="Serve glmkit tools over MCP (stdio transport)."
    )
    parser.add_argument(
        "--tools", default=None, help="comma-separated tool names (default: every registered tool)"
    )
    add_import_option(parser, "tools")
    parser.add_argument("--name", default="glmkit-tools", help="server name reported to clients")
    parser.add_argument("--workdir", default=None, help="scratch directory for tools that write files")
    parser.add_argument(
        "--allow-private-network",
        action="store_true",
        help="let web tools reach loopback/private addresses (for local testing only)",
    )
    parser.add_argument("--list", action="store_true", help="print the tool names and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``glmkit tools serve`` and ``python -m glmkit.agent.mcp_server``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s: %(message)s")
    from glmkit.registry import load_plugins

    for name, failure in load_plugins().failed.items():  # plugins may register tools (once per process)
        print(f"glmkit: could not import {name}: {failure}", file=sys.stderr)
    try:
        _require_mcp()
        error = import_modules(args.imports)
        if error:
            raise ImportError(error)
        names = [n.strip() for n in args.tools.split(",") if n.strip()] if args.tools else None
        context = ToolContext(
            workdir=Path(args.workdir) if args.workdir else None,
            allow_private_network=args.allow_private_network,
        )
        tool_server = build_server(names, name=args.name, context=context)
    except (ImportError, KeyError, ValueError) as exc:
        print(f"glmkit tools serve: {exc}", file=sys.stderr)
        return 2
    if args.list:
        print("\n".join(tool_server.tools))
        return 0
    import anyio

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve_stdio, tool_server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
