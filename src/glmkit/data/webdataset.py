"""Image-caption pairs from WebDataset tar shards, read map-style (CogViT stage 2's real data).

A WebDataset sample is the members of a shard that share a basename key: an image
(``key.jpg``/``.png``/``.webp``) and its caption as plain text (``key.txt``), as text per language
(``key.en.txt``, ``key.zh.txt``) or inside a JSON member (``key.json`` with a caption field, a
string or ``{language: caption}``), the layouts that img2dataset and webdataset's ``TarWriter``
write. Images come through :class:`~glmkit.data.sources.TarShards` (its cached header index, one
``pread`` per image, the shared decoder); the caption members are located by one header walk per
shard when the source is built and read with one ``pread`` each.

The text members of a sample are merged into one caption: ``{language: text}`` from the
``key.<language>.txt`` members, with a plain ``key.txt`` under :data:`PLAIN_LANGUAGE`; empty
languages are dropped. A sample whose only text is plain gets that string. The JSON member is read
only when the sample has no text member; its null, empty or non-string languages are dropped.

A sample whose caption is missing, empty (in every language), not UTF-8 or not valid JSON raises
:class:`~glmkit.data.sources.BadSampleError` naming ``shard:key`` and why; an undecodable image
raises :class:`~glmkit.data.decode.BadImageError`. The mixture skips, counts and names both.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Sequence
from typing import Any

from glmkit.data.sources import DATASETS, BadSampleError, Source, TarShards

TEXT_SUFFIX = "txt"
JSON_SUFFIX = "json"
#: The language a plain ``key.txt`` gets beside ``key.<language>.txt`` members (list it in
#: ``CaptionedSource(languages=...)`` or ``PickCaption(languages=...)`` to keep it).
PLAIN_LANGUAGE = "default"

#: (data offset, size) of each caption member of a sample, by member extension (``txt``, ``en.txt``, ``json``)
TextMembers = dict[str, tuple[int, int]]


def scan_text_members(path: str) -> dict[str, TextMembers]:
    """One walk of a shard's tar headers: the ``.txt`` and ``.json`` members of each sample key."""
    found: dict[str, TextMembers] = {}
    try:
        with tarfile.open(path, mode="r:") as archive:
            for member in archive:
                archive.members = []  # keep memory flat on big shards
                folder, base = os.path.split(member.name)
                if not member.isfile() or base.startswith(".") or "." not in base:
                    continue
                stem, ext = base.split(".", 1)
                ext = ext.lower()
                if ext in (JSON_SUFFIX, TEXT_SUFFIX) or ext.endswith(f".{TEXT_SUFFIX}"):
                    key = f"{folder}/{stem}" if folder else stem
                    found.setdefault(key, {})[ext] = (member.offset_data, member.size)
    except tarfile.ReadError as exc:
        raise ValueError(f"{path!r} is not an uncompressed tar archive ({exc})") from None
    return found


@DATASETS.register("caption_shards")
class CaptionShards(Source):
    """WebDataset shards of image-caption pairs: records ``{"image": PIL image, key: caption}``.

    Args:
        urls: shard path, brace pattern (``pairs-{000000..000099}.tar``), glob, or a list of them.
        key: the record field the caption goes to, and the field read from a ``.json`` member.
        draft_size: decode JPEGs at a reduced scale keeping both sides >= this (``None``: full size).
        index_cache: where the image index of each shard is cached (see :class:`TarShards`).

    The caption is ``{language: text}`` when the sample has per-language text members
    (``key.en.txt``; a plain ``key.txt`` beside them is under :data:`PLAIN_LANGUAGE`) or a JSON
    caption object, else a string. Languages with an empty caption are left out. Wrap the source in
    :class:`~glmkit.data.captions.CaptionedSource` to keep only chosen languages.
    """

    def __init__(
        self,
        urls: str | list[str],
        key: str = "caption",
        draft_size: int | None = None,
        index_cache: bool | str = True,
    ) -> None:
        self.images = TarShards(urls, draft_size=draft_size, index_cache=index_cache)
        self.key = key
        texts = [scan_text_members(shard) for shard in self.images.shards]
        self._texts: list[TextMembers] = [
            texts[shard].get(sample, {})
            for shard, sample in zip(self.images._shard.tolist(), self.images.keys, strict=True)
        ]

    def __len__(self) -> int:
        return len(self.images)

    def describe(self, index: int) -> str:
        return self.images.describe(index)

    def read(self, index: int) -> dict[str, Any]:
        """The image and its caption; :class:`BadSampleError` naming the sample if the caption is
        missing, empty or unreadable."""
        index = self._check_index(index)
        caption = self.caption(index)
        return {"image": self.images.load(index), self.key: caption}

    def caption(self, index: int) -> str | dict[str, str]:
        """The caption of sample ``index`` (without decoding its image)."""
        members = self._texts[self._check_index(index)]
        where = self.describe(index)
        if not members:
            raise BadSampleError(f"{where}: no caption member (.txt, .<language>.txt or .json)")
        texts = {  # language: member extension (``en.txt``; the plain ``txt`` under PLAIN_LANGUAGE)
            ext[: -len(TEXT_SUFFIX) - 1] if ext != TEXT_SUFFIX else PLAIN_LANGUAGE: ext
            for ext in sorted(members)
            if ext == TEXT_SUFFIX or ext.endswith(f".{TEXT_SUFFIX}")
        }
        if texts:
            value: str | dict[str, str] = {
                k: self._text(index, members[ext], ext) for k, ext in texts.items()
            }
        else:
            value = self._json_caption(index, members[JSON_SUFFIX])
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if v}  # texts are stripped
            if texts and set(value) == {PLAIN_LANGUAGE}:
                value = value[PLAIN_LANGUAGE]  # only plain text: a string, as without language members
        if not value:
            raise BadSampleError(f"{where}: the caption is empty (members: {', '.join(sorted(members))})")
        return value

    def _text(self, index: int, span: tuple[int, int], ext: str) -> str:
        data = self._pread(index, span, ext)
        try:
            return data.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise BadSampleError(f"{self.describe(index)}.{ext}: not UTF-8 text ({exc.reason})") from None

    def _json_caption(self, index: int, span: tuple[int, int]) -> str | dict[str, str]:
        where = f"{self.describe(index)}.{JSON_SUFFIX}"
        try:
            record = json.loads(self._pread(index, span, JSON_SUFFIX))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadSampleError(f"{where}: not valid JSON ({exc})") from None
        value = record.get(self.key) if isinstance(record, dict) else None
        if isinstance(value, str):
            return value.strip()
        if isinstance(value, dict) and value:  # null or non-string languages are dropped by the caller
            return {str(k): v.strip() if isinstance(v, str) else "" for k, v in value.items()}
        keys = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise BadSampleError(f"{where}: no string or {{language: string}} field {self.key!r} (has {keys})")

    def _pread(self, index: int, span: tuple[int, int], ext: str) -> bytes:
        offset, size = span
        try:
            data = os.pread(self.images._fd(int(self.images._shard[index])), size, offset)
        except OSError as exc:
            raise BadSampleError(f"{self.describe(index)}.{ext}: {type(exc).__name__}: {exc}") from exc
        if len(data) != size:
            raise BadSampleError(f"{self.describe(index)}.{ext}: shard is shorter than its index says")
        return data

    def __repr__(self) -> str:
        return f"CaptionShards(shards={len(self.images.shards)}, samples={len(self)}, key={self.key!r})"


def write_caption_shard(path: str, samples: Sequence[tuple[str, dict[str, bytes]]]) -> str:
    """Write ``[(key, {extension: bytes})]`` as an uncompressed WebDataset shard (tests, small
    exports); members of a sample are written in extension order, as webdataset's writer does."""
    import io

    with tarfile.open(path, mode="w") as archive:
        for key, members in samples:
            for ext, data in sorted(members.items()):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return path


__all__ = ["CaptionShards", "scan_text_members", "write_caption_shard"]
