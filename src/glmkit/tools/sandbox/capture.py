"""Capturing a child's output up to a size cap, head and tail kept, never splitting a character."""

from __future__ import annotations

import codecs
import threading
from typing import Any


class CappedReader(threading.Thread):
    """Drains a pipe, keeping the first ``cap`` characters and the last ``cap // 4``.

    Bytes are kept with room for 4-byte UTF-8 characters and cut to whole characters when decoded,
    so CJK output is capped by characters as advertised and never split mid-character.
    """

    def __init__(self, stream: Any, cap: int) -> None:
        super().__init__(daemon=True)
        self.stream, self.cap = stream, cap
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def run(self) -> None:
        head_cap, tail_cap = 4 * self.cap, 4 * max(1, self.cap // 4)
        while chunk := self.stream.read1(65536):
            self.total += len(chunk)
            room = head_cap - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            if chunk:
                self.tail = (self.tail + chunk)[-tail_cap:]

    def text(self) -> str:
        head_bytes = bytes(self.head)
        if self.total <= len(head_bytes):  # everything was kept
            text = head_bytes.decode("utf-8", errors="replace")
            if len(text) <= self.cap:
                return text
            head, rest = text[: self.cap], text[self.cap :]
            tail = rest[-max(1, self.cap // 4) :]
        else:
            # final=False drops a character cut at the end; the tail starts at a character boundary
            head = codecs.getincrementaldecoder("utf-8")("replace").decode(head_bytes)[: self.cap]
            tail_bytes = bytes(self.tail).lstrip(bytes(range(0x80, 0xC0)))
            tail = tail_bytes.decode("utf-8", errors="replace")[-max(1, self.cap // 4) :]
        omitted = self.total - len(head.encode("utf-8", "replace")) - len(tail.encode("utf-8", "replace"))
        if omitted <= 0:
            return head + tail
        return f"{head}\n[... output truncated: {omitted} bytes omitted ...]\n{tail}"
