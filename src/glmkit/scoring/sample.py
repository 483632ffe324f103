"""One scored item (:class:`Sample`) and the reading of sample JSONL files.

A :class:`Sample` is what a verifier scores a response against: the question, the reference
answer, the images, and two tags, ``category`` (the task type) and ``source`` (the data source it
came from; GLM-5V-Turbo section 2.4 reports reward and pass@k per source). Evaluation benchmarks and
RL prompt sets share the file format, JSON Lines, one object per line::

    {"id": "ocr-0003", "question": "What does the sign say?", "images": ["img/0003.png"],
     "answer": "EXIT", "category": "word", "source": "signs-v2", "metadata": {"image_size": [320, 96]}}

``id``, ``question`` and ``answer`` are required; ``images`` (paths relative to the JSONL file),
``category`` and ``source`` (both default ``"default"``) and ``metadata`` (an object) are optional.
Every problem is reported as a :class:`DataError` naming the file, the line and the field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

REQUIRED_FIELDS = ("id", "question", "answer")
KNOWN_FIELDS = frozenset({"id", "question", "images", "answer", "category", "source", "metadata"})
DEFAULT_TAG = "default"
"""The ``category`` and ``source`` of a sample whose file names none."""


class DataError(ValueError):
    """A sample file is missing, malformed or points at missing files; the message says where."""


@dataclass
class Sample:
    """One item to score a response against.

    Args:
        id: unique within its file.
        question: the text the model was asked.
        answer: the reference; its shape is the verifier's business (a string, a list of
            alternatives, ``{"box": [...]}``, ...).
        images: image paths (absolute, or resolved against the JSONL file when read).
        category: the task type (summaries and RL mixtures group by it).
        metadata: anything else a verifier reads (``image_size``, ``answer_zh``, ...).
        root: the directory that relative paths named in the sample are resolved against.
        source: the data source the sample came from (summaries and RL metrics group by it).
    """

    id: str
    question: str
    answer: Any
    images: list[Path] = field(default_factory=list)
    category: str = DEFAULT_TAG
    metadata: dict[str, Any] = field(default_factory=dict)
    root: Path | None = None
    source: str = DEFAULT_TAG

    def to_row(self) -> dict[str, Any]:
        """The sample as a JSONL row that :func:`parse_sample` reads back into an equal sample
        (image paths relative to ``root`` where they lie under it)."""
        images = []
        for path in self.images:
            try:
                images.append(str(path.relative_to(self.root)) if self.root is not None else str(path))
            except ValueError:  # not under root: keep it absolute
                images.append(str(path))
        row: dict[str, Any] = {"id": self.id, "question": self.question, "answer": self.answer}
        if images:
            row["images"] = images
        row["category"] = self.category
        row["source"] = self.source
        if self.metadata:
            row["metadata"] = self.metadata
        return row

    def resolve(self, relative: str | Path) -> Path:
        """A path named in the sample (a mask, a reference page) resolved against ``root``."""
        path = Path(relative)
        if path.is_absolute() or self.root is None:
            return path
        return self.root / path

    def metadata_text(self, key: str) -> str:
        """A text field of ``metadata``, stripped; ``""`` when it is missing, null or blank (a blank
        alternative answer must count as none: ``""`` is a substring of every answer)."""
        return str(self.metadata.get(key) or "").strip()

    def load_images(self) -> list[Image.Image]:
        """The sample's images as RGB PIL images."""
        from PIL import Image

        out = []
        for path in self.images:
            with Image.open(path) as img:
                out.append(img.convert("RGB"))
        return out

    def image_size(self, index: int = 0) -> tuple[int, int]:
        """(width, height) of image ``index``: ``metadata["image_size"]`` if given, else read lazily."""
        size = self.metadata.get("image_size")
        if size is not None and index == 0:
            return int(size[0]), int(size[1])
        if not self.images:
            raise DataError(
                f"sample {self.id!r}: needs an image (or metadata.image_size) to convert coordinates"
            )
        from PIL import Image

        with Image.open(self.images[index]) as img:  # lazy: reads the header only
            return img.size


def parse_sample(row: Any, *, path: Path, line: int, check_images: bool = True) -> Sample:
    """Validate one decoded JSONL row and build a :class:`Sample`."""
    where = f"{path}:{line}"
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for key in REQUIRED_FIELDS:
        if key not in row:
            raise DataError(f"{where}: missing field {key!r} (required fields: {', '.join(REQUIRED_FIELDS)})")
    sample_id = row["id"]
    if not isinstance(sample_id, (str, int)) or isinstance(sample_id, bool) or str(sample_id) == "":
        raise DataError(f"{where}: field 'id' must be a non-empty string or integer, got {sample_id!r}")
    question = row["question"]
    if not isinstance(question, str):
        raise DataError(f"{where}: field 'question' must be a string, got {type(question).__name__}")
    images_raw = row.get("images", [])
    if isinstance(images_raw, str):
        images_raw = [images_raw]
    if not isinstance(images_raw, list) or not all(isinstance(p, str) for p in images_raw):
        raise DataError(f"{where}: field 'images' must be a list of paths (strings), got {images_raw!r}")
    images = []
    for rel in images_raw:
        img_path = Path(rel) if Path(rel).is_absolute() else path.parent / rel
        if check_images and not img_path.is_file():
            raise DataError(f"{where}: field 'images': image not found: {img_path}")
        images.append(img_path)
    category = row.get("category", DEFAULT_TAG)
    if not isinstance(category, str) or not category:
        raise DataError(f"{where}: field 'category' must be a non-empty string, got {category!r}")
    source = row.get("source", DEFAULT_TAG)
    if not isinstance(source, str) or not source:
        raise DataError(f"{where}: field 'source' must be a non-empty string, got {source!r}")
    metadata = row.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise DataError(f"{where}: field 'metadata' must be an object, got {type(metadata).__name__}")
    return Sample(
        id=str(sample_id),
        question=question,
        answer=row["answer"],
        images=images,
        category=category,
        metadata=metadata,
        root=path.parent,
        source=source,
    )


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, decoded object) for each non-blank line; bad JSON raises naming the line."""
    if not path.is_file():
        raise DataError(f"sample file not found: {path}")
    with path.open(encoding="utf-8") as fh:
        for lineno, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                yield lineno, json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None


RowParser = Callable[..., Sample]


def load_samples(
    path: str | Path,
    *,
    parse_row: RowParser = parse_sample,
    check_answer: Callable[[Sample], None] | None = None,
    check_images: bool = True,
) -> list[Sample]:
    """Read a sample JSONL file; ids must be unique; ``check_answer`` validates each answer.

    ``check_answer`` raises ``ValueError`` for an answer its metrics cannot score; the message is
    re-raised as a :class:`DataError` naming the file, line and field ``answer``.
    """
    path = Path(path)
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    for lineno, row in iter_jsonl(path):
        sample = parse_row(row, path=path, line=lineno, check_images=check_images)
        if sample.id in seen:
            raise DataError(f"{path}:{lineno}: duplicate id {sample.id!r} (first on line {seen[sample.id]})")
        seen[sample.id] = lineno
        if check_answer is not None:
            try:
                check_answer(sample)
            except DataError:
                raise
            except ValueError as exc:
                raise DataError(f"{path}:{lineno}: field 'answer': {exc}") from None
        samples.append(sample)
    if not samples:
        raise DataError(f"{path}: no samples (the file is empty)")
    return samples
