"""Browser tools: ``load_image_from_url`` and ``read_webpage`` (GLM-5V report section 3.1).

Both fetch through :func:`glmkit.tools.net.fetch`, so every SSRF, size and time check applies,
and neither runs page scripts: images are decoded by :mod:`glmkit.tools.decode` after a
pixel-count check, pages are parsed into markdown by :mod:`glmkit.tools.webpage`. A converted
page is kept per URL for the life of the tool context (:class:`PageCache`), so reading a long page
window by window fetches and converts it once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
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


@dataclass
class ReadPage:
    """A page as ``read_webpage`` shows it: the full text and what the tool reports about it."""

    url: str
    text: str
    title: str = ""
    links: list[tuple[str, str]] = field(default_factory=list)
    images: list[str] = field(default_factory=list)


class PageCache:
    """Converted pages by requested URL, the least recently used dropped beyond ``max_chars`` of text
    in all (or ``max_pages`` pages). Thread-safe; one lives in each tool context."""

    def __init__(self, max_chars: int = 16_000_000, max_pages: int = 64) -> None:
        self.max_chars, self.max_pages = max_chars, max_pages
        self._pages: OrderedDict[str, ReadPage] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        """Picklable and deep-copyable with its tool context: the lock is not state."""
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def get(self, url: str) -> ReadPage | None:
        """The page read from ``url`` earlier in this context, if it is still kept."""
        with self._lock:
            page = self._pages.get(url)
            if page is not None:
                self._pages.move_to_end(url)
            return page

    def put(self, url: str, page: ReadPage) -> None:
        """Keep ``page`` (not kept when it alone is larger than ``max_chars``)."""
        size = len(page.text)
        if size > self.max_chars:
            return
        with self._lock:
            old = self._pages.pop(url, None)
            self._chars += size - (len(old.text) if old else 0)
            self._pages[url] = page
            while self._pages and (self._chars > self.max_chars or len(self._pages) > self.max_pages):
                _, dropped = self._pages.popitem(last=False)
                self._chars -= len(dropped.text)

    def __len__(self) -> int:
        return len(self._pages)


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

    def __init__(
        self,
        policy: NetworkPolicy | None = None,
        convert_seconds: float = 20.0,
        cache_chars: int = 16_000_000,
    ) -> None:
        self.policy = policy
        self.convert_seconds = convert_seconds
        self.cache_chars = cache_chars

    def cache(self, context: ToolContext) -> PageCache:
        """This context's page cache (created on first use)."""
        cache = context.caches.get(self.name)
        if not isinstance(cache, PageCache):
            cache = context.caches.setdefault(self.name, PageCache(self.cache_chars))
        return cache

    def read(self, context: ToolContext, url: str) -> ReadPage:
        """Fetch and convert ``url``, or take it from this context's cache."""
        cache = self.cache(context)
        page = cache.get(url)
        if page is not None:
            return page
        policy = policy_for(context, self.policy)
        response = fetch(url, policy, accept="text/html,application/xhtml+xml,text/plain;q=0.8,*/*;q=0.5")
        kind = response.content_type
        if kind in _HTML_TYPES:
            converted = html_to_markdown(
                response.content, response.url, encoding=response.charset, time_limit=self.convert_seconds
            )
            page = ReadPage(
                response.url,
                converted.render(),
                converted.title,
                converted.links,
                [src for _alt, src in converted.images],
            )
        elif kind.startswith("text/") or kind in _TEXT_TYPES:
            page = ReadPage(response.url, _decode_text(response.content, response.charset))
        else:
            hint = " use load_image_from_url for images;" if kind.startswith("image/") else ""
            raise ToolError(f"{response.url} is {kind}, not a web page;{hint} only HTML and text are read")
        cache.put(url, page)
        return page

    def run(
        self, context: ToolContext, url: str, start: int = 0, max_chars: int = 20_000, **_: Any
    ) -> ToolResult:
        """Read ``url`` (fetched and converted once per context) and return the window
        ``[start, start + max_chars)``."""
        page = self.read(context, url)
        full = page.text
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
                "url": page.url,
                "title": page.title,
                "links": [list(link) for link in page.links],
                "images": list(page.images),
                "total_chars": len(full),
            },
        )
