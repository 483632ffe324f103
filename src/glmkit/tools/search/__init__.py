"""Search tools over a pluggable provider (GLM-5V report section 3.1: text, image-to-web and image search).

A :class:`SearchProvider` answers three questions: documents for a text query, documents whose
image looks like a given image, and images for a text query. Providers live in the
``search_providers`` registry; the tools ``search_web_text``, ``search_web_by_image`` and
``search_images`` delegate to one chosen by name (``"local"`` by default).

:class:`LocalSearchProvider` works offline over an on-disk index, which is what benchmarks need for
reproducible runs (a frozen snapshot instead of the live web): a directory with
``documents.jsonl`` (one ``{"title", "url", "text", "image"?}`` object per line, ``image`` a path
relative to the directory) and the image files. Text is ranked with BM25 (Robertson & Zaragoza,
k1 = 1.5, b = 0.75; the title counts twice); images with the cosine of a small deterministic
embedding (a 4x4x4 RGB colour histogram and an 8x8 grey thumbnail). :func:`build_index` makes
such a directory from files.

The package, one idea per module: :mod:`.provider` (the interface and its registry), :mod:`.bm25`
(text ranking), :mod:`.embedding` (image similarity), :mod:`.index` (the on-disk index),
:mod:`.local` (the offline provider) and :mod:`.tools` (the three registered tools).
"""

from glmkit.tools.search.bm25 import BM25, tokenize
from glmkit.tools.search.embedding import image_embedding
from glmkit.tools.search.index import (
    HTML_SUFFIXES,
    IMAGE_SUFFIXES,
    INDEX_FILE,
    TEXT_SUFFIXES,
    build_index,
    load_documents,
)
from glmkit.tools.search.local import INDEX_ENV, LocalSearchProvider
from glmkit.tools.search.provider import SEARCH_PROVIDERS, SearchHit, SearchProvider
from glmkit.tools.search.tools import (
    K_SCHEMA,
    QUERY_SCHEMA,
    SearchImagesTool,
    SearchWebByImageTool,
    SearchWebTextTool,
)

__all__ = [
    "BM25",
    "HTML_SUFFIXES",
    "IMAGE_SUFFIXES",
    "INDEX_ENV",
    "INDEX_FILE",
    "K_SCHEMA",
    "QUERY_SCHEMA",
    "SEARCH_PROVIDERS",
    "LocalSearchProvider",
    "SearchHit",
    "SearchImagesTool",
    "SearchProvider",
    "SearchWebByImageTool",
    "SearchWebTextTool",
    "TEXT_SUFFIXES",
    "build_index",
    "image_embedding",
    "load_documents",
    "tokenize",
]
