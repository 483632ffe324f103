"""Map-style record sources: a folder, a JSONL manifest, WebDataset tar shards.

Every source has a length, ``read(index) -> dict`` (a *record*: ``{"image": PIL.Image, ...}`` for
image sources, plus whatever fields the source carries, such as captions or messages) and
``describe(index)`` (a path or key that error messages and skip reports name). Sources are
deliberately dumb: no transforms, no randomness, no retries. :class:`glmkit.data.mixture.Mixture`
draws from several of them with the quality-aware weights of GLM-5V-Turbo section 2.1 and skips
what cannot be read.

A source that cannot read a record raises :class:`BadSampleError` (:class:`BadImageError` for an
image that does not decode); anything else that goes wrong (a bug, a bad argument) raises as usual,
so only genuinely unreadable samples are skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from glmkit.data.decode import BadImageError, decode_image
from glmkit.data.shard_paths import expand_urls
from glmkit.data.tar_index import TAR_IMAGE_EXTENSIONS, index_shards
from glmkit.registry import declare

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class BadSampleError(Exception):
    """A sample that cannot be read (a missing caption, a broken line); the message names it.

    The mixture skips it, counts it and names it, as it does for an undecodable image.
    """


class Source(ABC):
    """A finite, indexable collection of records (map-style)."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of records."""

    @abstractmethod
    def read(self, index: int) -> dict[str, Any]:
        """The record at ``index``; raises :class:`BadSampleError` / :class:`BadImageError` if unreadable."""

    @abstractmethod
    def describe(self, index: int) -> str:
        """A path or key naming record ``index`` in error messages."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.read(index)

    def _check_index(self, index: int) -> int:
        n = len(self)
        if not 0 <= index < n:
            raise IndexError(f"{type(self).__name__}: index {index} out of range [0, {n})")
        return int(index)


DATASETS = declare("datasets", "data sources (map-style record sources)", base=Source)


class ImageSource(Source):
    """A source of images: ``load(index)`` gives the RGB image, ``read(index)`` the record
    ``{"image": image}`` (subclasses that carry more fields add them in :meth:`read`)."""

    @abstractmethod
    def load(self, index: int) -> Image.Image:
        """The image at ``index`` as RGB; raises :class:`BadImageError` if it cannot be decoded."""

    def read(self, index: int) -> dict[str, Any]:
        """``{"image": load(index)}``."""
        return {"image": self.load(index)}


def _require_dir(root: str | os.PathLike) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"image folder {str(path)!r} does not exist")
    if not path.is_dir():
        raise NotADirectoryError(f"image folder {str(path)!r} is not a directory")
    return path


def _walk_once(root: Path) -> Iterator[tuple[str, list[str]]]:
    """``(dirpath, filenames)`` of ``os.walk(root, followlinks=True)``, each real folder once.

    Folders are identified by ``(st_dev, st_ino)``; a child already seen is pruned, which breaks
    link cycles. Real folders are checked before the links beside them, so of a folder and a link
    to it in the same parent, the folder's own path is kept.
    """
    root_stat = os.stat(root)
    seen = {(root_stat.st_dev, root_stat.st_ino)}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        keep = []
        for name in sorted(dirnames, key=lambda d: (os.path.islink(os.path.join(dirpath, d)), d)):
            try:
                st = os.stat(os.path.join(dirpath, name))
            except OSError:  # vanished since listing
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                keep.append(name)
        dirnames[:] = sorted(keep)
        yield dirpath, filenames


@DATASETS.register("image_folder")
class ImageFolder(ImageSource):
    """Every image file under ``root`` (recursively by default), in sorted path order.

    Symbolic links to folders are followed, but each real folder is listed once, under the first
    path the walk reaches it by, so a link loop (``sub/up -> ..``) or a second link to the same
    folder adds no images.

    Args:
        root: the folder.
        extensions: file name endings counted as images (case-insensitive).
        recursive: also look in sub-folders.
        draft_size: decode JPEGs at a reduced scale that keeps both sides >= this many pixels
            (``None``: full size); see :func:`decode_image`.
    """

    def __init__(
        self,
        root: str,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        recursive: bool = True,
        draft_size: int | None = None,
    ) -> None:
        self.root = _require_dir(root)
        self.draft_size = draft_size
        self.extensions = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
        files: list[str] = []
        if recursive:
            for dirpath, filenames in _walk_once(self.root):
                rel = os.path.relpath(dirpath, self.root)
                files.extend(os.path.normpath(os.path.join(rel, f)) for f in filenames if self._wanted(f))
        else:
            files = [e.name for e in os.scandir(self.root) if e.is_file() and self._wanted(e.name)]
        if not files:
            raise FileNotFoundError(
                f"no images under {str(self.root)!r} (extensions {', '.join(self.extensions)}, "
                f"recursive={recursive})"
            )
        self.files = sorted(files)

    def _wanted(self, name: str) -> bool:
        return not name.startswith(".") and name.lower().endswith(self.extensions)

    def __len__(self) -> int:
        return len(self.files)

    def describe(self, index: int) -> str:
        return str(self.root / self.files[self._check_index(index)])

    def load(self, index: int) -> Image.Image:
        path = self.describe(index)
        return decode_image(path, path, self.draft_size)

    def __repr__(self) -> str:
        return f"ImageFolder(root={str(self.root)!r}, images={len(self)})"


@DATASETS.register("jsonl_manifest")
class JsonlManifest(ImageSource):
    """Records listed in a JSON-lines manifest, one object per line (``{"image": "a/b.jpg", ...}``).

    Relative image paths are resolved against ``root``, or against the manifest's folder when
    ``root`` is not given. Blank lines are ignored; any other bad line fails construction with the
    manifest's path and the line number. ``fields`` names the other keys a record carries (a
    caption, messages, a task tag); a line where one is missing or empty is a bad sample: the
    mixture skips, counts and names it (``path:line``), as it does for an undecodable image.

    Args:
        path: the manifest file.
        image_key: the field holding the image path.
        root: folder that relative image paths start from.
        draft_size: decode JPEGs at a reduced scale that keeps both sides >= this many pixels
            (``None``: full size); see :func:`decode_image`.
        fields: other keys of each line copied into its record.
    """

    def __init__(
        self,
        path: str,
        image_key: str = "image",
        root: str | None = None,
        draft_size: int | None = None,
        fields: Sequence[str] = (),
    ) -> None:
        self.path = Path(path).expanduser()
        self.draft_size = draft_size
        if not self.path.is_file():
            raise FileNotFoundError(f"JSONL manifest {str(self.path)!r} does not exist or is not a file")
        self.image_key = image_key
        base = _require_dir(root) if root is not None else self.path.parent
        self.root = base
        self.fields = tuple(fields)
        self.images: list[str] = []
        self.lines: list[int] = []
        self.extras: list[dict[str, Any]] = []
        with self.path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                image, record = self._parse(line, lineno, base)
                self.images.append(image)
                self.lines.append(lineno)
                if self.fields:
                    self.extras.append({k: record[k] for k in self.fields if k in record})
        if not self.images:
            raise ValueError(f"JSONL manifest {str(self.path)!r} lists no images")

    def _parse(self, line: str, lineno: int, base: Path) -> tuple[str, dict[str, Any]]:
        where = f"{self.path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        if self.image_key not in record:
            keys = ", ".join(map(repr, record)) or "(none)"
            raise ValueError(f"{where}: no {self.image_key!r} field; the record has keys {keys}")
        value = record[self.image_key]
        if not isinstance(value, str) or not value:
            raise ValueError(f"{where}: {self.image_key!r} must be a non-empty path string, got {value!r}")
        image = Path(value).expanduser()
        return str(image if image.is_absolute() else base / image), record

    def __len__(self) -> int:
        return len(self.images)

    def describe(self, index: int) -> str:
        index = self._check_index(index)
        return f"{self.images[index]} ({self.path}:{self.lines[index]})"

    def load(self, index: int) -> Image.Image:
        index = self._check_index(index)
        return decode_image(self.images[index], self.describe(index), self.draft_size)

    def read(self, index: int) -> dict[str, Any]:
        """``{"image": ..., **fields}``; a missing or empty field raises :class:`BadSampleError`."""
        index = self._check_index(index)
        extras = self.extras[index] if self.fields else {}
        for key in self.fields:
            if extras.get(key) in (None, "", [], {}):
                raise BadSampleError(f"{self.path}:{self.lines[index]}: field {key!r} is missing or empty")
        return {"image": self.load(index), **extras}

    def __repr__(self) -> str:
        return f"JsonlManifest(path={str(self.path)!r}, images={len(self)})"


@DATASETS.register("tar_shards")
class TarShards(ImageSource):
    """WebDataset-format tar shards read map-style, like ``wids``.

    Construction reads each shard's index, a cached or fresh walk of its tar headers that records, per
    sample (members grouped by basename key, ``dir/key.ext``), the offset and size of its image member
    (``.jpg``/``.jpeg``/``.png``/``.webp``). ``load`` then reads those bytes with one ``pread``, so
    any index can be read in any order; that is what makes exact mid-epoch resume possible.

    Args:
        urls: a shard path, a brace pattern (``shards/train-{000..009}.tar``), a glob, or a list
            of them. Shards must be uncompressed tar files on a local or mounted filesystem.
        draft_size: decode JPEGs at a reduced scale that keeps both sides >= this many pixels
            (``None``: full size); see :func:`decode_image`.
        index_cache: where the header scan of each shard is cached (see :mod:`glmkit.data.tar_index`):
            ``True`` beside the shard as ``<shard>.idx.json``, a folder path there, ``False`` nowhere.
            A cached index is used while the shard's size and modification time are unchanged.
    """

    _MAX_OPEN_FILES = 256  # an LRU of open shard descriptors per process

    def __init__(
        self, urls: str | list[str], draft_size: int | None = None, index_cache: bool | str = True
    ) -> None:
        self.shards = expand_urls(urls)
        self.draft_size = draft_size
        shard_ids: list[int] = []
        offsets: list[int] = []
        sizes: list[int] = []
        self.keys: list[str] = []
        for shard_id, index in enumerate(index_shards(self.shards, index_cache)):
            for key, offset, size in index:
                shard_ids.append(shard_id)
                offsets.append(offset)
                sizes.append(size)
                self.keys.append(key)
        if not self.keys:
            raise ValueError(
                f"no samples with an image member (.{', .'.join(TAR_IMAGE_EXTENSIONS)}) in "
                f"{len(self.shards)} shard(s): {', '.join(self.shards[:3])}{' ...' if len(self.shards) > 3 else ''}"
            )
        self._shard = np.asarray(shard_ids, dtype=np.int32)
        self._offset = np.asarray(offsets, dtype=np.int64)
        self._size = np.asarray(sizes, dtype=np.int64)
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.keys)

    def describe(self, index: int) -> str:
        index = self._check_index(index)
        return f"{self.shards[self._shard[index]]}:{self.keys[index]}"

    def load(self, index: int) -> Image.Image:
        index = self._check_index(index)
        description = self.describe(index)
        try:
            fd = self._fd(int(self._shard[index]))
            data = os.pread(fd, int(self._size[index]), int(self._offset[index]))
        except OSError as exc:
            raise BadImageError(f"{description}: {type(exc).__name__}: {exc}") from exc
        if len(data) != self._size[index]:
            raise BadImageError(f"{description}: shard is shorter than its index says (truncated?)")
        return decode_image(data, description, self.draft_size)

    def _fd(self, shard_id: int) -> int:
        # Descriptors are per process: a forked DataLoader worker must not share its parent's.
        if os.getpid() != self._pid:
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.pop(shard_id, None)
        if fd is None:
            if len(self._fds) >= self._MAX_OPEN_FILES:  # least recently used goes first
                os.close(self._fds.pop(next(iter(self._fds))))
            fd = os.open(self.shards[shard_id], os.O_RDONLY)
        self._fds[shard_id] = fd  # (re)insert as the most recently used
        return fd

    def close(self) -> None:
        """Close the shard files this process opened."""
        if os.getpid() == self._pid:
            for fd in self._fds.values():
                os.close(fd)
        self._fds = {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fds"] = {}
        return state

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        return f"TarShards(shards={len(self.shards)}, samples={len(self)})"
