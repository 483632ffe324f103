"""Which files a sandbox run created or changed: a bounded snapshot of its working directory."""

from __future__ import annotations

from pathlib import Path

MAX_SNAPSHOT_ENTRIES = 20_000  # the walk runs outside the wall-clock limit: bound it


def snapshot(root: Path) -> tuple[dict[Path, tuple[int, int]], bool]:
    """(mtime, size) of every regular file under ``root``, and whether the walk saw every entry."""
    state = {}
    for count, path in enumerate(root.rglob("*")):
        if count >= MAX_SNAPSHOT_ENTRIES:
            return state, False
        try:
            info = path.lstat()
        except OSError:
            continue
        if path.is_file() and not path.is_symlink():
            state[path] = (info.st_mtime_ns, info.st_size)
    return state, True
