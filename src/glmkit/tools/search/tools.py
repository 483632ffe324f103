"""The search tools ``search_web_text``, ``search_web_by_image`` and ``search_images`` over a provider
(GLM-5V report section 3.1: text, image-to-web and image search)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from PIL import Image

from glmkit.registry import RegistryError
from glmkit.tools.base import IMAGE_ID_SCHEMA, TOOLS, Tool, ToolContext, ToolError, ToolResult, object_schema
from glmkit.tools.search.bm25 import tokenize
from glmkit.tools.search.provider import SEARCH_PROVIDERS, SearchHit, SearchProvider


class _SearchTool(Tool):
    """Shared provider selection of the search tools."""

    def __init__(
        self,
        provider: SearchProvider | str = "local",
        index_path: str | Path | None = None,
        provider_args: Mapping[str, Any] | None = None,
    ) -> None:
        self._provider = provider if isinstance(provider, SearchProvider) else None
        self.provider_name = provider if isinstance(provider, str) else type(provider).__name__
        self.index_path = index_path
        self.provider_args = dict(provider_args or {})

    def provider(self) -> SearchProvider:
        """The provider, built on first use (so a missing index is reported per call, not at start-up)."""
        if self._provider is None:
            args = dict(self.provider_args)
            if self.index_path is not None:
                args.setdefault("index_path", self.index_path)
            try:
                factory = SEARCH_PROVIDERS.get(self.provider_name)
            except RegistryError as exc:
                raise ToolError(str(exc)) from None
            self._provider = factory(**args)
        return self._provider


def _format_hits(hits: list[SearchHit], what: tuple[str, str], query: str) -> str:
    """The hits as a numbered list; ``what`` is the (singular, plural) noun for one hit."""
    if not hits:
        return f"No {what[1]} found for {query}."
    lines = [f"{len(hits)} {what[0] if len(hits) == 1 else what[1]} for {query}:"]
    for i, hit in enumerate(hits, 1):
        lines.append(f"{i}. {hit.title}\n   URL: {hit.url}" + (f"\n   {hit.snippet}" if hit.snippet else ""))
    return "\n".join(lines)


K_SCHEMA: dict[str, Any] = {
    "type": "integer",
    "minimum": 1,
    "maximum": 20,
    "default": 5,
    "description": "Number of results.",
}
QUERY_SCHEMA: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 1000}


@TOOLS.register("search_web_text")
class SearchWebTextTool(_SearchTool):
    """Text web search."""

    name = "search_web_text"
    description = (
        "Search the web for a text query; returns titles, URLs and snippets (read pages with read_webpage)."
    )
    parameters = object_schema({"query": QUERY_SCHEMA, "k": K_SCHEMA}, required=("query",))

    def run(self, context: ToolContext, query: str, k: int = 5, **_: Any) -> ToolResult:
        """Search ``query`` and list the hits."""
        if not tokenize(query):
            raise ToolError(f"query {query!r} contains no searchable words")
        hits = self.provider().search_text(query, int(k))
        return ToolResult(
            text=_format_hits(hits, ("result", "results"), repr(query)),
            data={"hits": [asdict(h) for h in hits]},
        )


@TOOLS.register("search_web_by_image")
class SearchWebByImageTool(_SearchTool):
    """Reverse image search: pages whose images look like the given one."""

    name = "search_web_by_image"
    description = (
        "Reverse image search: find web pages containing images similar to an image in the conversation. "
        "Returns titles, URLs and similarity scores."
    )
    parameters = object_schema({"image": IMAGE_ID_SCHEMA, "k": K_SCHEMA}, required=("image",))

    def run(self, context: ToolContext, image: str, k: int = 5, **_: Any) -> ToolResult:
        """Search with the image ``image`` and list the hits."""
        hits = self.provider().search_by_image(context.get_image(image), int(k))
        text = _format_hits(hits, ("page with similar images", "pages with similar images"), image)
        if hits:
            text += "\n(similarity: " + ", ".join(f"{i}: {h.score:.3f}" for i, h in enumerate(hits, 1)) + ")"
        return ToolResult(text=text, data={"hits": [asdict(h) for h in hits]})


@TOOLS.register("search_images")
class SearchImagesTool(_SearchTool):
    """Image search: images for a text query, returned as images."""

    name = "search_images"
    description = (
        "Search for images matching a text query; returns the images (as new image ids) with their pages."
    )
    parameters = object_schema(
        {"query": QUERY_SCHEMA, "k": {**K_SCHEMA, "maximum": 10, "default": 4}}, required=("query",)
    )

    def __init__(self, *args: Any, max_side: int = 512, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_side = max_side

    def run(self, context: ToolContext, query: str, k: int = 4, **_: Any) -> ToolResult:
        """Search images for ``query``; each hit's image comes back (downscaled to ``max_side``)."""
        if not tokenize(query):
            raise ToolError(f"query {query!r} contains no searchable words")
        provider = self.provider()
        hits = provider.search_images(query, int(k))
        images, kept = [], []
        for hit in hits:
            try:
                img = provider.load_image(hit)
            except ToolError:
                continue
            img.thumbnail((self.max_side, self.max_side), Image.Resampling.LANCZOS)
            images.append(img)
            kept.append(hit)
        text = _format_hits(kept, ("image", "images"), repr(query))
        if kept:
            text += "\n(the new images below are in the same order)"
        return ToolResult(text=text, images=images, data={"hits": [asdict(h) for h in kept]})
