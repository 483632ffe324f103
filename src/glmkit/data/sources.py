"""Map-style image sources: a folder, a JSONL manifest, WebDataset tar shards.

Every source has a length, ``load(index) -> PIL.Image`` (RGB) and ``describe(index)`` (a path or key
that error messages and skip reports name). Sources are deliberately dumb: no transforms, no
randomness, no retries. :class:`glmkit.data.mixture.ImageMixture` draws from several of them with the
quality-aware weights of GLM-5V-Turbo section 2.1 and skips what cannot be decoded.

A source that cannot decode an image raises :class:`BadImageError`; anything else that goes wrong
(a bug, a bad argument) raises as usual, so only genuinely unreadable files are skipped.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import struct
import warnings
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from glmkit.data.tar_index import TAR_IMAGE_EXTENSIONS, index_shards
from glmkit.registry import registry

DATASETS = registry("datasets", "data sources")

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")

# What PIL raises for files that are not (complete, sane) images. DecompressionBombWarning is turned
# into an error while decoding: an image that large is a waste for a 224-pixel pipeline at best.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # missing file, truncated data, UnidentifiedImageError
    ValueError,
    SyntaxError,  # PIL's PNG/GIF parsers raise it for broken chunks
    EOFError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


class BadImageError(Exception):
    """An image that could not be read or decoded; the message names it and says why."""


def decode_image(
    source: str | os.PathLike | bytes, description: str, draft_size: int | None = None
) -> Image.Image:
    """Open a path or encoded bytes as an RGB image, raising :class:`BadImageError` on failure.

    Decoding is forced here (``load``) so truncated files fail now, not later inside a transform.
    EXIF orientation is applied; transparent images are composited on white, not on black. With
    ``draft_size``, JPEGs are decoded at the smallest 1/2, 1/4 or 1/8 scale whose sides are still
    >= ``draft_size`` (several times faster on large photos); other formats decode at full size.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            fp = BytesIO(source) if isinstance(source, bytes | bytearray) else source
            with Image.open(fp) as img:
                if draft_size and img.format == "JPEG":
                    img.draft(None, (draft_size, draft_size))
                img.load()
                return _to_rgb(img)
    except _DECODE_ERRORS as exc:
        raise BadImageError(f"{description}: {type(exc).__name__}: {exc}") from exc


def _to_rgb(img: Image.Image) -> Image.Image:
    with contextlib.suppress(Exception):  # a malformed EXIF block is no reason to lose the pixels
        img = ImageOps.exif_transpose(img)
    if img.mode.startswith("I") or img.mode == "F":  # convert("RGB") would clip everything above 255
        img = _to_8bit(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB") if img.mode != "RGB" else img.copy()


def _to_8bit(img: Image.Image) -> Image.Image:
    """A 16-bit (``I;16*``), 32-bit integer (``I``) or float (``F``) image rescaled to 8-bit ``L``.

    ``I;16*`` keeps its top 8 bits (``>> 8``). ``I`` and ``F`` go by their value range: ``F`` within
    [0, 1] is scaled by 255; values within [0, 255] are kept; within [0, 65535] they are read as
    16-bit (``// 256``); any other range (negative values, larger ones) is stretched linearly from
    its minimum to its maximum. Non-finite values become 0.
    """
    values = np.asarray(img)
    if img.mode.startswith("I;16"):
        return Image.fromarray((values.astype(np.uint16) >> 8).astype(np.uint8), "L")
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    values = np.where(finite, values, 0.0)
    lo, hi = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 0.0)
    if img.mode == "F" and lo >= 0 and hi <= 1:
        scaled = np.rint(values * 255)
    elif lo >= 0 and hi <= 255:
        scaled = np.rint(values)
    elif lo >= 0 and hi <= 65535:
        scaled = np.floor(values / 256)
    else:  # hi > lo here: the range exceeds [0, 255]
        scaled = np.rint((values - lo) * (255 / (hi - lo)))
    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L")


class ImageSource(ABC):
    """A finite, indexable collection of images (map-style)."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of images."""

    @abstractmethod
    def load(self, index: int) -> Image.Image:
        """The image at ``index`` as RGB; raises :class:`BadImageError` if it cannot be decoded."""

    @abstractmethod
    def describe(self, index: int) -> str:
        """A path or key naming image ``index`` in error messages."""

    def __getitem__(self, index: int) -> Image.Image:
        return self.load(index)

    def _check_index(self, index: int) -> int:
        n = len(self)
        if not 0 <= index < n:
            raise IndexError(f"{type(self).__name__}: index {index} out of range [0, {n})")
        return int(index)


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
    """Images listed in a JSON-lines manifest, one object per line (``{"image": "a/b.jpg", ...}``).

    Relative image paths are resolved against ``root``, or against the manifest's folder when
    ``root`` is not given. Blank lines are ignored; any other bad line fails construction with the
    manifest's path and the line number.

    Args:
        path: the manifest file.
        image_key: the field holding the image path.
        root: folder that relative image paths start from.
        draft_size: decode JPEGs at a reduced scale that keeps both sides >= this many pixels
            (``None``: full size); see :func:`decode_image`.
    """

    def __init__(
        self, path: str, image_key: str = "image", root: str | None = None, draft_size: int | None = None
    ) -> None:
        self.path = Path(path).expanduser()
        self.draft_size = draft_size
        if not self.path.is_file():
            raise FileNotFoundError(f"JSONL manifest {str(self.path)!r} does not exist or is not a file")
        self.image_key = image_key
        base = _require_dir(root) if root is not None else self.path.parent
        self.root = base
        self.images: list[str] = []
        self.lines: list[int] = []
        with self.path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                self.images.append(self._image_path(line, lineno, base))
                self.lines.append(lineno)
        if not self.images:
            raise ValueError(f"JSONL manifest {str(self.path)!r} lists no images")

    def _image_path(self, line: str, lineno: int, base: Path) -> str:
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
        return str(image if image.is_absolute() else base / image)

    def __len__(self) -> int:
        return len(self.images)

    def describe(self, index: int) -> str:
        index = self._check_index(index)
        return f"{self.images[index]} ({self.path}:{self.lines[index]})"

    def load(self, index: int) -> Image.Image:
        index = self._check_index(index)
        return decode_image(self.images[index], self.describe(index), self.draft_size)

    def __repr__(self) -> str:
        return f"JsonlManifest(path={str(self.path)!r}, images={len(self)})"


_BRACE_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")


def expand_braces(pattern: str) -> list[str]:
    """Expand shell-style braces: ``a-{000..002}.tar`` and ``{x,y}.tar`` (nesting allowed).

    A numeric range keeps the zero padding of its bounds, as ``braceexpand`` and bash do: padded to
    the longer bound when a bound of two or more digits starts with 0 (``{00..10}``), unpadded
    otherwise (``{0..10}`` gives ``0 1 ... 10``).
    """
    start = pattern.find("{")
    if start < 0:
        return [pattern]
    depth = 0
    for end in range(start, len(pattern)):
        depth += {"{": 1, "}": -1}.get(pattern[end], 0)
        if depth == 0:
            break
    else:
        raise ValueError(f"unbalanced '{{' in shard pattern {pattern!r}")
    head, body, tail = pattern[:start], pattern[start + 1 : end], pattern[end + 1 :]
    match = _BRACE_RANGE.match(body)
    if match:
        lo, hi = match.groups()
        # As in bash: pad to the longer bound (sign included) only when a bound of two or more
        # digits starts with 0; a bare "0" or "-0" is not padding, so {0..10} gives 0 1 ... 10.
        padded = any(len(d) > 1 and d.startswith("0") for d in (lo.lstrip("-"), hi.lstrip("-")))
        width = max(len(lo), len(hi)) if padded else 0
        a, b = int(lo), int(hi)
        step = 1 if b >= a else -1
        options = [str(v).zfill(width) for v in range(a, b + step, step)]
    else:
        options = _split_top_level(body)
        if len(options) == 1:  # "{abc}" is literal, as in bash
            return [f"{head}{{{b}}}{t}" for b in expand_braces(body) for t in expand_braces(tail)]
    return [out for opt in options for out in expand_braces(head + opt + tail)]


def _split_top_level(body: str) -> list[str]:
    parts, depth, current = [], 0, []
    for ch in body:
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        current.append(ch)
    parts.append("".join(current))
    return parts


def expand_urls(urls: str | Sequence[str]) -> list[str]:
    """Local shard paths from brace patterns and globs; every result must exist.

    Remote URLs (``http://``, ``s3://``, ``pipe:``) are refused: map-style reading seeks inside
    each shard, so shards must be local (or mounted) files.
    """
    patterns = [urls] if isinstance(urls, str) else list(urls)
    if not patterns:
        raise ValueError("no tar shards given (urls is empty)")
    paths: list[str] = []
    for pattern in patterns:
        if pattern.startswith("file://"):
            pattern = pattern[len("file://") :]
        if "://" in pattern or pattern.startswith("pipe:"):
            raise ValueError(
                f"shard {pattern!r} is not a local path; TarShards reads members by offset and needs "
                "local or mounted .tar files"
            )
        for expanded in expand_braces(os.path.expanduser(pattern)):
            if glob.has_magic(expanded):
                found = sorted(glob.glob(expanded))
                if not found:
                    raise FileNotFoundError(f"no tar shards match {expanded!r} (from {pattern!r})")
                paths.extend(found)
            elif not os.path.isfile(expanded):
                origin = "" if expanded == pattern else f" (from {pattern!r})"
                raise FileNotFoundError(f"tar shard {expanded!r} does not exist{origin}")
            else:
                paths.append(expanded)
    return paths


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
