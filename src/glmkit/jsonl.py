"""JSON and JSON Lines output that survives any Python string, and repair of a torn last line.

Model output can hold lone UTF-16 surrogates: an OpenAI-compatible server that cuts an emoji in
half at ``max_tokens`` sends ``"\\ud83d"``, and ``json.loads`` (httpx's ``response.json()``) turns
that into the Python character U+D83D, which UTF-8 cannot encode. ``json.dumps(...,
ensure_ascii=False)`` passes it through, so writing the result to a UTF-8 file raises
``UnicodeEncodeError`` and aborts an evaluation or agent run. :func:`dumps_utf8` keeps readable
non-ASCII text and writes only such characters as ``\\uXXXX`` escapes, which ``json.loads`` reads
back into the same string.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

_CHUNK = 1 << 16


def dumps_utf8(value: Any, *, indent: int | None = None, default: Callable[[Any], Any] | None = None) -> str:
    """``json.dumps(value, ensure_ascii=False)`` whose result always encodes as UTF-8.

    A lone surrogate can only occur inside a JSON string, where ``backslashreplace`` turns it into
    the valid escape ``\\udXXX`` (``json.dumps`` has already escaped every real backslash), so
    ``json.loads`` gives back the original value.
    """
    text = json.dumps(value, ensure_ascii=False, indent=indent, default=default)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def json_line(record: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """``record`` as one JSON Lines line, newline included, always encodable as UTF-8."""
    return dumps_utf8(record, default=default) + "\n"


def repair_torn_tail(path: str | Path) -> str | None:
    """Make a JSONL file end on a line boundary before more lines are appended to it.

    A process killed in the middle of a write leaves a last line without its newline; the next
    appended line would merge with it into one unreadable line, and that record would be lost. A
    tail that still parses as JSON is a complete record missing only its newline, so a newline is
    added; anything else is a fragment of a record that was never finished, so it is truncated
    away (the record it belonged to was not written and gets produced again). Either way a
    warning names the file and the line.

    Returns ``None`` when the file is missing, empty or already ends with a newline, else
    ``"newline added"`` or ``"torn line removed"``.
    """
    path = Path(path)
    if not path.is_file():
        return None
    with path.open("rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return None
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return None
        start = _last_line_start(fh, size)
        fh.seek(start)
        tail = fh.read()
        line_no = _count_newlines(fh, start) + 1
        try:
            json.loads(tail.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            fh.truncate(start)
            action = "torn line removed"
            detail = f"its last line {line_no} ({len(tail)} bytes) was cut short by a crash and was removed"
        else:
            fh.seek(size)
            fh.write(b"\n")
            action = "newline added"
            detail = f"its last line {line_no} lacked a newline, which was added"
    warnings.warn(f"{path}: {detail}", stacklevel=2)
    return action


def _last_line_start(fh: Any, size: int) -> int:
    """Offset just after the last newline of a binary file (0 when it has none)."""
    end = size
    while end > 0:
        begin = max(0, end - _CHUNK)
        fh.seek(begin)
        idx = fh.read(end - begin).rfind(b"\n")
        if idx >= 0:
            return begin + idx + 1
        end = begin
    return 0


def _count_newlines(fh: Any, stop: int) -> int:
    fh.seek(0)
    count, pos = 0, 0
    while pos < stop:
        chunk = fh.read(min(_CHUNK, stop - pos))
        if not chunk:
            break
        count += chunk.count(b"\n")
        pos += len(chunk)
    return count
