"""Browser tools: ``load_image_from_url`` and ``read_webpage`` (GLM-5V report section 3.1).

Both fetch through :func:`glmkit.tools.net.fetch`, so every SSRF, size and time check applies,
and neither runs page scripts: images are decoded by :mod:`glmkit.tools.decode` after a
pixel-count check, pages are parsed into markdown by :mod:`glmkit.tools.webpage`.
"""

from __future__ import annotations

from typing import Any

from glmkit.tools.base import TOOLS, Tool, ToolContext, ToolError, ToolResult, object_schema
from glmkit.tools.decode import decode_tool_image
from glmkit.tools.net import NetworkPolicy, fetch, policy_for
from glmkit.tools.webpage import html_to_markdown

URL_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 8,
    "maxLength": 4096,
    "description": "An http:// or https:// URL.",
}
_TEXT_TYPES = ("text/plain", "text/markdown", "text/csv", "application/json", "application/xml", "text/xml")
_HTML_TYPES = ("text/html", "application/xhtml+xml", "")


def _decode_text(content: bytes, charset: str | None) -> str:
    """``content`` in its declared charset; an unknown or non-text one reads as UTF-8, like HTML pages."""
    try:
        return content.decode(charset or "utf-8", errors="replace")
    except (LookupError, ValueError):  # "x-unknown", "rot13", a label with a NUL byte
        return content.decode("utf-8", errors="replace")


@TOOLS.register("load_image_from_url")
class LoadImageFromUrlTool(Tool):
    """Download an image from the web and add it to the conversation."""

    name = "load_image_from_url"
    description = (
        "Download an image from an http(s) URL and add it to the conversation as a new image id, e.g. "
        "an image found by read_webpage or search. Private and local addresses are refused."
    )
    parameters = object_schema({"url": URL_SCHEMA}, required=("url",))

    def __init__(self, policy: NetworkPolicy | None = None) -> None:
        self.policy = policy

    def run(self, context: ToolContext, url: str, **_: Any) -> ToolResult:
        """Fetch ``url`` and decode it as an image after the bomb check."""
        policy = policy_for(context, self.policy)
        response = fetch(url, policy, accept="image/*")
        if response.content_type.startswith("text/html"):
            raise ToolError(f"{response.url} is a web page (text/html), not an image; use read_webpage on it")
        image = decode_tool_image(response.content, policy.max_image_pixels, source=response.url)
        redirected = f" (redirected to {response.url})" if response.url != response.hops[0] else ""
        return ToolResult(
            text=f"Loaded image {image.width}x{image.height} from {url}{redirected}",
            images=[image],
            data={
                "url": response.url,
                "size": [image.width, image.height],
                "content_type": response.content_type,
            },
        )


@TOOLS.register("read_webpage")
class ReadWebpageTool(Tool):
    """Fetch a web page and return it as markdown (scripts are dropped, never run)."""

    name = "read_webpage"
    description = (
        "Read a web page at an http(s) URL and return its text as markdown with headings, lists and "
        "links; image URLs on the page are listed at the end (load them with load_image_from_url). "
        "Long pages are returned in parts: pass start to continue."
    )
    parameters = object_schema(
        {
            "url": URL_SCHEMA,
            "start": {
                "type": "integer",
                "minimum": 0,
                "default": 0,
                "description": "Character offset to continue a long page from.",
            },
            "max_chars": {"type": "integer", "minimum": 200, "maximum": 100_000, "default": 20_000},
        },
        required=("url",),
    )

    def __init__(self, policy: NetworkPolicy | None = None) -> None:
        self.policy = policy

    def run(
        self, context: ToolContext, url: str, start: int = 0, max_chars: int = 20_000, **_: Any
    ) -> ToolResult:
        """Fetch ``url``, render it as markdown and return the window ``[start, start + max_chars)``."""
        policy = policy_for(context, self.policy)
        response = fetch(url, policy, accept="text/html,application/xhtml+xml,text/plain;q=0.8,*/*;q=0.5")
        kind = response.content_type
        if kind in _HTML_TYPES:
            page = html_to_markdown(response.content, response.url, encoding=response.charset)
            full = page.render()
            links, images = page.links, page.images
            title = page.title
        elif kind.startswith("text/") or kind in _TEXT_TYPES:
            full = _decode_text(response.content, response.charset)
            links, images, title = [], [], ""
        else:
            hint = " use load_image_from_url for images;" if kind.startswith("image/") else ""
            raise ToolError(f"{response.url} is {kind}, not a web page;{hint} only HTML and text are read")
        start, max_chars = int(start), int(max_chars)
        if start and start >= len(full):
            raise ToolError(f"start={start} is past the end of the page ({len(full)} characters)")
        window = full[start : start + max_chars]
        end = start + len(window)
        if end < len(full):
            window += (
                f"\n\n[... truncated: characters {start}-{end} of {len(full)}; call again with start={end}]"
            )
        return ToolResult(
            text=window,
            data={
                "url": response.url,
                "title": title,
                "links": [list(link) for link in links],
                "images": [src for _alt, src in images],
                "total_chars": len(full),
            },
        )
