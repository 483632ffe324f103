"""The on-disk index of the local search provider: ``documents.jsonl`` plus the images it names.

One ``{"title", "url", "text", "image"?}`` object per line, ``image`` a path relative to the index
directory (never outside it). :func:`build_index` writes such a directory from files or ready
documents; :func:`load_documents` reads it back, checking every line.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from glmkit.tools.base import ToolError
from glmkit.tools.decode import IMAGE_SUFFIXES

INDEX_FILE = "documents.jsonl"
TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm"})


def index_file(path: Path) -> Path:
    """The ``documents.jsonl`` of an index directory (a path to the file itself is kept)."""
    path = Path(path)
    return path / INDEX_FILE if path.is_dir() else path


def load_documents(index_path: str | Path) -> tuple[list[dict[str, Any]], Path]:
    """Read and validate ``documents.jsonl``; returns the documents and the index directory."""
    file = index_file(Path(index_path))
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
