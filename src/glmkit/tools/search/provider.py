"""The search back-end interface: :class:`SearchProvider`, its :class:`SearchHit` results and registry.

A provider answers three questions: documents for a text query, documents whose image looks like a
given image, and images for a text query. Providers live in ``registry("search_providers")``; the
search tools pick one by name.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass

from PIL import Image

from glmkit.registry import declare
from glmkit.tools.base import ToolError
from glmkit.tools.decode import read_image_file


@dataclass
class SearchHit:
    """One result: a document (and its image, for image results)."""

    title: str
    url: str
    snippet: str = ""
    score: float = 0.0
    image: str | None = None  # local path or URL of the document's image


class SearchProvider(ABC):
    """A search back-end: text search, reverse image search and image search."""

    @abstractmethod
    def search_text(self, query: str, k: int = 5) -> list[SearchHit]:
        """The ``k`` best documents for a text query."""

    @abstractmethod
    def search_by_image(self, image: Image.Image, k: int = 5) -> list[SearchHit]:
        """The ``k`` documents whose images look most like ``image``."""

    @abstractmethod
    def search_images(self, query: str, k: int = 5) -> list[SearchHit]:
        """The ``k`` best images (documents with an image) for a text query."""

    def load_image(self, hit: SearchHit) -> Image.Image:
        """The image of ``hit``; this default reads local files only."""
        if not hit.image or not os.path.isfile(hit.image):
            raise ToolError(f"the image of result {hit.title!r} is not available locally")
        return read_image_file(hit.image)


# Declared after SearchProvider: every member is a SearchProvider subclass.
SEARCH_PROVIDERS = declare("search_providers", "back-ends of the search tools", base=SearchProvider)
