"""Shard lists from shell-style patterns: ``shards/train-{000000..009999}.tar``, globs, lists.

Expansion follows bash and the ``braceexpand`` package, so patterns copied from WebDataset recipes
mean the same here. Only local (or mounted) files are accepted: shards are read by offset.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence

from glmkit.data.tar_index import INDEX_SUFFIX

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
                # a bare "*" must not pick up the index sidecars TarShards writes beside the shards
                found = sorted(f for f in glob.glob(expanded) if not f.endswith(INDEX_SUFFIX))
                if not found:
                    raise FileNotFoundError(f"no tar shards match {expanded!r} (from {pattern!r})")
                paths.extend(found)
            elif not os.path.isfile(expanded):
                origin = "" if expanded == pattern else f" (from {pattern!r})"
                raise FileNotFoundError(f"tar shard {expanded!r} does not exist{origin}")
            else:
                paths.append(expanded)
    return paths
