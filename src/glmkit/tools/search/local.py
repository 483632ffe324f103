"""The ``local`` search provider: offline search over an on-disk index (:mod:`.index`).

What benchmarks need for reproducible runs (a frozen snapshot instead of the live web). Text is
ranked with BM25 (:mod:`.bm25`; the title counts twice), images with the cosine of
:func:`~glmkit.tools.search.embedding.image_embedding`.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from glmkit.tools.base import ToolError
from glmkit.tools.decode import read_image_file
from glmkit.tools.search.bm25 import BM25, tokenize
from glmkit.tools.search.embedding import image_embedding
from glmkit.tools.search.index import index_file, load_documents
from glmkit.tools.search.provider import SEARCH_PROVIDERS, SearchHit, SearchProvider

INDEX_ENV = "GLMKIT_SEARCH_INDEX"


def _snippet(text: str, query_tokens: list[str], width: int = 240) -> str:
    lowered = text.lower()
    positions = [lowered.find(t) for t in query_tokens if t and lowered.find(t) >= 0]
    start = max(0, min(positions) - width // 4) if positions else 0
    piece = re.sub(r"\s+", " ", text[start : start + width]).strip()
    return ("..." if start > 0 else "") + piece + ("..." if start + width < len(text) else "")


@lru_cache(maxsize=8)
def _cached_index(file: str, mtime_ns: int) -> tuple[list[dict[str, Any]], BM25, BM25, list[int]]:
    docs, _ = load_documents(file)
    tokens = [tokenize(d["title"]) * 2 + tokenize(d["text"]) for d in docs]
    with_image = [i for i, d in enumerate(docs) if d.get("image")]
    return docs, BM25(tokens), BM25([tokens[i] for i in with_image]), with_image


@SEARCH_PROVIDERS.register("local")
class LocalSearchProvider(SearchProvider):
    """Offline search over an index directory (its layout: :mod:`glmkit.tools.search.index`).

    ``index_path`` defaults to the ``GLMKIT_SEARCH_INDEX`` environment variable.
    """

    def __init__(self, index_path: str | Path | None = None) -> None:
        index_path = index_path or os.environ.get(INDEX_ENV)
        if not index_path:
            raise ToolError(
                f"no search index configured: pass index_path or set the {INDEX_ENV} environment variable"
            )
        self.file = index_file(Path(index_path)).resolve()
        self._embeddings: tuple[int, np.ndarray] | None = None  # (index mtime, embeddings)

    def _index(self) -> tuple[list[dict[str, Any]], BM25, BM25, list[int]]:
        if not self.file.is_file():
            raise ToolError(f"search index {str(self.file)!r} does not exist")
        return _cached_index(str(self.file), self.file.stat().st_mtime_ns)

    @staticmethod
    def _hit(doc: dict[str, Any], score: float, query_tokens: list[str]) -> SearchHit:
        return SearchHit(
            title=doc["title"],
            url=doc["url"],
            snippet=_snippet(doc["text"], query_tokens),
            score=round(float(score), 4),
            image=doc.get("image"),
        )

    def search_text(self, query: str, k: int = 5) -> list[SearchHit]:
        """BM25 over title and text."""
        docs, bm25, _, _ = self._index()
        tokens = tokenize(query)
        scores = bm25.scores(tokens)
        order = [i for i in np.argsort(-scores, kind="stable")[:k] if scores[i] > 0]
        return [self._hit(docs[i], scores[i], tokens) for i in order]

    def search_images(self, query: str, k: int = 5) -> list[SearchHit]:
        """BM25 over the documents that have an image."""
        docs, _, bm25_images, with_image = self._index()
        tokens = tokenize(query)
        scores = bm25_images.scores(tokens)
        order = [i for i in np.argsort(-scores, kind="stable")[:k] if scores[i] > 0]
        return [self._hit(docs[with_image[i]], scores[i], tokens) for i in order]

    def search_by_image(self, image: Image.Image, k: int = 5) -> list[SearchHit]:
        """Cosine similarity of :func:`image_embedding` against every indexed image."""
        docs, _, _, with_image = self._index()
        if not with_image:
            return []
        mtime = self.file.stat().st_mtime_ns
        if self._embeddings is None or self._embeddings[0] != mtime:
            vectors = np.stack([image_embedding(read_image_file(docs[i]["image"])) for i in with_image])
            self._embeddings = (mtime, vectors)
        sims = self._embeddings[1] @ image_embedding(image)
        order = np.argsort(-sims, kind="stable")[:k]
        return [self._hit(docs[with_image[i]], sims[i], []) for i in order]
