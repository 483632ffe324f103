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
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from glmkit.registry import RegistryError, declare
from glmkit.tools.base import IMAGE_ID_SCHEMA, TOOLS, Tool, ToolContext, ToolError, ToolResult, object_schema
from glmkit.tools.net import read_image_file

SEARCH_PROVIDERS = declare("search_providers", "back-ends of the search tools")
INDEX_ENV = "GLMKIT_SEARCH_INDEX"
INDEX_FILE = "documents.jsonl"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp"})
TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm"})

# CJK characters are single tokens (no spaces between words); other scripts split on non-letters.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")


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


def tokenize(text: str) -> list[str]:
    """Lowercased word tokens; each CJK character is a token."""
    return _TOKEN.findall(text.lower())


def image_embedding(image: Image.Image) -> np.ndarray:
    """A deterministic 128-d unit vector: colour histogram (64) + mean-free 8x8 grey thumbnail (64).

    The histogram matches colour content regardless of layout; the thumbnail matches layout.
    The halves are normalised separately so that neither dominates.
    """
    rgb = np.asarray(image.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR), dtype=np.int64)
    bins = rgb // 64  # 4 levels per channel
    hist = np.bincount((bins[..., 0] * 16 + bins[..., 1] * 4 + bins[..., 2]).ravel(), minlength=64).astype(
        np.float64
    )
    hist = np.sqrt(hist / hist.sum())  # Hellinger: cosine of square roots
    grey = np.asarray(image.convert("L").resize((8, 8), Image.Resampling.BOX), dtype=np.float64).ravel()
    grey -= grey.mean()
    parts = [hist / (np.linalg.norm(hist) or 1.0), grey / (np.linalg.norm(grey) or 1.0)]
    vec = np.concatenate(parts)
    return vec / (np.linalg.norm(vec) or 1.0)


class BM25:
    """Okapi BM25 over pre-tokenised documents."""

    def __init__(self, documents: list[list[str]], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.tf = [Counter(doc) for doc in documents]
        self.lengths = np.array([len(doc) for doc in documents], dtype=np.float64)
        self.avgdl = float(self.lengths.mean()) if len(documents) else 0.0
        df: Counter[str] = Counter()
        for counts in self.tf:
            df.update(counts.keys())
        n = len(documents)
        # The "+1" form keeps every idf positive, so a term in most documents still counts a little.
        self.idf = {term: math.log((n - f + 0.5) / (f + 0.5) + 1.0) for term, f in df.items()}

    def scores(self, query: list[str]) -> np.ndarray:
        """BM25 score of every document for the query tokens."""
        out = np.zeros(len(self.tf))
        if not len(self.tf):
            return out
        norm = self.k1 * (1.0 - self.b + self.b * self.lengths / (self.avgdl or 1.0))
        for term in set(query):
            idf = self.idf.get(term)
            if idf is None:
                continue
            tf = np.array([counts.get(term, 0) for counts in self.tf], dtype=np.float64)
            out += idf * tf * (self.k1 + 1.0) / (tf + norm)
        return out


def _snippet(text: str, query_tokens: list[str], width: int = 240) -> str:
    lowered = text.lower()
    positions = [lowered.find(t) for t in query_tokens if t and lowered.find(t) >= 0]
    start = max(0, min(positions) - width // 4) if positions else 0
    piece = re.sub(r"\s+", " ", text[start : start + width]).strip()
    return ("..." if start > 0 else "") + piece + ("..." if start + width < len(text) else "")


def _index_file(path: Path) -> Path:
    path = Path(path)
    return path / INDEX_FILE if path.is_dir() else path


def load_documents(index_path: str | Path) -> tuple[list[dict[str, Any]], Path]:
    """Read and validate ``documents.jsonl``; returns the documents and the index directory."""
    file = _index_file(Path(index_path))
    if not file.is_file():
        raise ToolError(
            f"search index {str(file)!r} does not exist; build one with glmkit.tools.search.build_index"
        )
    root = file.parent.resolve()
    docs = []
    with open(file, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ToolError(f"{file}:{line_no}: not valid JSON ({exc.msg})") from None
            if not isinstance(doc, dict):
                raise ToolError(f"{file}:{line_no}: each line must be a JSON object")
            for key in ("title", "url", "text"):
                if not isinstance(doc.get(key), str):
                    raise ToolError(
                        f"{file}:{line_no}: key {key!r} must be a string (documents need title, url, text)"
                    )
            image = doc.get("image")
            if image is not None:
                resolved = (root / str(image)).resolve()
                if not resolved.is_relative_to(root):
                    raise ToolError(f"{file}:{line_no}: image {image!r} points outside the index directory")
                if not resolved.is_file():
                    raise ToolError(f"{file}:{line_no}: image file {str(resolved)!r} does not exist")
                doc["image"] = str(resolved)
            docs.append(doc)
    return docs, root


@lru_cache(maxsize=8)
def _cached_index(file: str, mtime_ns: int) -> tuple[list[dict[str, Any]], BM25, BM25, list[int]]:
    docs, _ = load_documents(file)
    tokens = [tokenize(d["title"]) * 2 + tokenize(d["text"]) for d in docs]
    with_image = [i for i, d in enumerate(docs) if d.get("image")]
    return docs, BM25(tokens), BM25([tokens[i] for i in with_image]), with_image


@SEARCH_PROVIDERS.register("local")
class LocalSearchProvider(SearchProvider):
    """Offline search over an index directory (see the module docstring for its layout).

    ``index_path`` defaults to the ``GLMKIT_SEARCH_INDEX`` environment variable.
    """

    def __init__(self, index_path: str | Path | None = None) -> None:
        index_path = index_path or os.environ.get(INDEX_ENV)
        if not index_path:
            raise ToolError(
                f"no search index configured: pass index_path or set the {INDEX_ENV} environment variable"
            )
        self.file = _index_file(Path(index_path)).resolve()
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


def _title_from_name(path: Path) -> str:
    return re.sub(r"[_\-]+", " ", path.stem).strip()


def build_index(
    out_dir: str | Path, files: Iterable[str | Path] = (), documents: Iterable[Mapping[str, Any]] = ()
) -> Path:
    """Write a local search index to ``out_dir`` and return the directory.

    ``files``: ``.txt``/``.md`` (title: first line), ``.html`` (rendered to markdown) and images
    (title from the file name, text from a sibling ``<name>.txt`` if present); their URL is the
    file URI. ``documents``: ready ``{"title", "url", "text", "image"?}`` mappings whose ``image`` is
    a path to an existing file. Images are copied into ``out_dir/images``.
    """
    from glmkit.tools.webpage import html_to_markdown

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []

    def copy_image(src: Path) -> str:
        if not src.is_file():
            raise ToolError(f"image {str(src)!r} does not exist")
        name = f"{len(rows):05d}_{src.name}"
        shutil.copyfile(src, out / "images" / name)
        return f"images/{name}"

    for raw in files:
        path = Path(raw)
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            sidecar = path.with_suffix(".txt")
            text = sidecar.read_text(encoding="utf-8") if sidecar.is_file() else _title_from_name(path)
            rows.append(
                {
                    "title": _title_from_name(path),
                    "url": path.resolve().as_uri(),
                    "text": text,
                    "image": copy_image(path),
                }
            )
        elif suffix in TEXT_SUFFIXES:
            content = path.read_text(encoding="utf-8")
            first = next((ln.strip().lstrip("#").strip() for ln in content.splitlines() if ln.strip()), "")
            rows.append(
                {"title": first or _title_from_name(path), "url": path.resolve().as_uri(), "text": content}
            )
        elif suffix in HTML_SUFFIXES:
            page = html_to_markdown(path.read_bytes(), path.resolve().as_uri())
            rows.append(
                {
                    "title": page.title or _title_from_name(path),
                    "url": path.resolve().as_uri(),
                    "text": page.markdown,
                }
            )
        else:
            raise ToolError(
                f"cannot index {str(path)!r}: use text ({', '.join(sorted(TEXT_SUFFIXES))}), HTML or image files"
            )
    for i, doc in enumerate(documents):
        missing = [key for key in ("title", "url", "text") if not isinstance(doc.get(key), str)]
        if missing:
            raise ToolError(f"documents[{i}]: missing string field(s) {', '.join(missing)}")
        row = {key: doc[key] for key in ("title", "url", "text")}
        if doc.get("image"):
            row["image"] = copy_image(Path(doc["image"]))
        rows.append(row)
    with open(out / INDEX_FILE, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return out


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
