"""Where each sample's image lives inside a WebDataset tar shard, cached in a small JSON sidecar.

Reading a shard map-style needs the byte offset of every sample's image member. Finding them means
walking the tar headers of the whole shard; at 10k shards, on every rank of every run, that walk is
the start-up time. The walk's result is therefore written once, beside the shard
(``shard-000123.tar.idx.json``) or in a cache folder, and reused while the shard's size and
modification time are unchanged.

Samples without a supported image member (a caption alone, a ``.gif``) are left out of the index;
the index records how many and the first few keys, and :func:`index_shards` warns with them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tarfile
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

# WebDataset members that hold the image of a sample, in order of preference.
TAR_IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp")
INDEX_SUFFIX = ".idx.json"
INDEX_VERSION = 2  # 2: records the samples left out
LEFT_OUT_SHOWN = 5  # keys kept per shard, and shards named in the warning, for the samples left out

ShardIndex = list[tuple[str, int, int]]  # (sample key, data offset, size) per sample, in shard order


class LeftOut(NamedTuple):
    """The samples of a shard without a supported image member: how many, and the first few keys."""

    count: int = 0
    keys: tuple[str, ...] = ()


def scan_shard(path: str) -> tuple[ShardIndex, LeftOut]:
    """Walk one shard's tar headers: (key, data offset, size) of the preferred image of each sample,
    and the samples left out because they have no image member (of :data:`TAR_IMAGE_EXTENSIONS`).

    Members are grouped into samples by basename key (``dir/key.ext``); hidden files and names
    without an extension belong to no sample.
    """
    samples: dict[str, dict[str, tuple[int, int]]] = {}
    try:
        with tarfile.open(path, mode="r:") as archive:
            for member in archive:
                archive.members = []  # headers are not needed again; keep memory flat on big shards
                if not member.isfile():
                    continue
                folder, base = os.path.split(member.name)
                if base.startswith(".") or "." not in base:
                    continue
                stem, ext = base.split(".", 1)
                key = f"{folder}/{stem}" if folder else stem
                samples.setdefault(key, {})[ext.lower()] = (member.offset_data, member.size)
    except tarfile.ReadError as exc:
        raise ValueError(
            f"{path!r} is not an uncompressed tar archive ({exc}); TarShards reads members by offset, "
            "so shards must be plain .tar files"
        ) from None
    out = []
    left_out = []
    for key, members in samples.items():
        ext = next((e for e in TAR_IMAGE_EXTENSIONS if e in members), None)
        if ext is None:
            left_out.append(key)
        else:
            out.append((key, *members[ext]))
    return out, LeftOut(len(left_out), tuple(left_out[:LEFT_OUT_SHOWN]))


def index_file(shard: str, cache_dir: str | None = None) -> Path:
    """Where the index of ``shard`` is cached: beside it, or in ``cache_dir`` under a name unique to
    the shard's absolute path (two folders may both hold a ``shard-000000.tar``)."""
    if cache_dir is None:
        return Path(shard + INDEX_SUFFIX)
    digest = hashlib.sha1(os.path.abspath(shard).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{Path(shard).name}.{digest}{INDEX_SUFFIX}"


def _signature(shard: str) -> dict[str, int]:
    stat = os.stat(shard)
    return {"version": INDEX_VERSION, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _read_cached(path: Path, signature: dict[str, int]) -> tuple[ShardIndex, LeftOut] | None:
    """The cached scan, or None when it is absent, stale (the shard changed) or unreadable."""
    try:
        record = json.loads(path.read_text())
        if any(record.get(k) != v for k, v in signature.items()):
            return None
        keys, offsets, sizes = record["keys"], record["offsets"], record["sizes"]
        if not len(keys) == len(offsets) == len(sizes):
            return None
        left_out = LeftOut(int(record["left_out"]), tuple(str(k) for k in record["left_out_keys"]))
        return [(str(k), int(o), int(s)) for k, o, s in zip(keys, offsets, sizes, strict=True)], left_out
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # a torn or foreign file: rescan and overwrite it


def _write_cached(path: Path, signature: dict[str, int], index: ShardIndex, left_out: LeftOut) -> str | None:
    """Write the index atomically (ranks racing on one shard each rename a whole file); the error
    text when the location is not writable, which only costs a rescan next time."""
    keys, offsets, sizes = zip(*index, strict=True) if index else ((), (), ())
    record = {**signature, "keys": list(keys), "offsets": list(offsets), "sizes": list(sizes)}
    record.update(left_out=left_out.count, left_out_keys=list(left_out.keys))
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # unique across hosts and threads
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(record, separators=(",", ":")))
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        return f"{path}: {exc.strerror or exc}"
    return None


def shard_index(shard: str, cache: bool | str = True) -> tuple[ShardIndex, LeftOut, str | None]:
    """The index of one shard, from its cache when it is current, else scanned (and cached).

    Args:
        shard: path of an uncompressed tar shard.
        cache: ``True`` caches beside the shard, a folder path caches there, ``False`` always scans.

    Returns:
        The index, the samples left out of it and, when the cache could not be written, why (so the
        caller can say it once).
    """
    if cache is False:
        return *scan_shard(shard), None
    signature = _signature(shard)
    path = index_file(shard, None if cache is True else str(cache))
    cached = _read_cached(path, signature)
    if cached is not None:
        return *cached, None
    index, left_out = scan_shard(shard)
    return index, left_out, _write_cached(path, signature, index, left_out)


def index_shards(shards: list[str], cache: bool | str = True, workers: int = 8) -> list[ShardIndex]:
    """Indexes of many shards in order, read or scanned by a few threads (the work is I/O: header
    walks and small files, often on a network filesystem). Warns once if the cache is not writable,
    and once if samples were left out for want of an image member, with their count and keys."""
    workers = max(1, min(workers, len(shards)))
    if workers == 1:
        results = [shard_index(s, cache) for s in shards]
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="tar-index") as pool:
            results = list(pool.map(lambda s: shard_index(s, cache), shards))
    failures = [why for _, _, why in results if why]
    if failures:
        warnings.warn(
            f"could not cache the index of {len(failures)} of {len(shards)} shard(s) ({failures[0]}); "
            "they will be scanned again next time. Pass index_cache=<a writable folder> to TarShards, "
            "or index_cache=False to stop trying",
            stacklevel=3,
        )
    left = [
        (shard, left_out) for shard, (_, left_out, _) in zip(shards, results, strict=True) if left_out.count
    ]
    if left:
        named = "; ".join(
            f"{shard}: {n} ({', '.join(keys)}{', ...' if n > len(keys) else ''})"
            for shard, (n, keys) in left[:LEFT_OUT_SHOWN]
        )
        warnings.warn(
            f"left out {sum(n for _, (n, _) in left)} sample(s) of {len(left)} of {len(shards)} shard(s) "
            f"that have no image member (.{', .'.join(TAR_IMAGE_EXTENSIONS)}): "
            f"{named}{'; ...' if len(left) > LEFT_OUT_SHOWN else ''}",
            stacklevel=3,
        )
    return [index for index, _, _ in results]
