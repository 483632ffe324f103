"""JSONL trajectory log of an agent run (report section 3.5).

One JSON object per line, each with ``event``, ``run`` (a run id, so several runs can share a file)
and ``time``. Events, in order of appearance:

``start``        ``tools`` (names), ``tool_format``, ``model`` (its class name), ``max_turns``,
                 ``max_tokens``, ``token_budget_field``
``image``        an image entered the run: ``image_id``, ``path`` (PNG saved beside the log),
                 ``width``, ``height``, ``source`` (``"question"`` or ``"tool:<name>"``)
``request``      ``turn`` and the ``messages`` sent (after the context policy)
``assistant``    ``turn``, the assistant ``message``, ``finish_reason``, ``usage``
``parse_error``  ``turn``, ``id``, ``reason``, ``raw`` of a malformed call (``reason`` is
                 ``"finish_reason=length"`` and ``raw`` empty for a call cut off by the token limit)
``tool_call``    ``turn``, ``id``, ``name``, ``arguments``
``tool_result``  ``turn``, ``id``, ``name``, ``text``, ``error``, ``image_ids``, ``image_paths``,
                 ``files`` (paths the tool wrote), ``data`` (the tool's structured result), ``seconds``
``stop``         ``reason``, ``turns``, ``final_answer``, ``tool_calls`` (count per tool name), ``usage``,
                 ``parse_errors``, ``tool_errors`` (counts), ``error``

Images never enter the log as pixels: an image part is written as ``{"type": "image", "image_id",
"path"}`` and a ``data:`` URL is replaced by a note of its length. The PNGs go to
``<log stem>_images/<run id>/<image id>.png``; ``path`` is relative to the log's directory.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glmkit.agent.context import is_image_ref
from glmkit.jsonl import json_line

if TYPE_CHECKING:
    from PIL import Image


class TrajectoryLogger:
    """Append the events of one run to a JSONL file and save its images as PNGs beside it."""

    def __init__(self, path: str | Path, run_id: str | None = None) -> None:
        self.path = Path(path)
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.image_dir = self.path.parent / f"{self.path.stem}_images" / self.run_id
        self.image_paths: dict[str, str] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, event: str, **fields: Any) -> None:
        """Append one event (a lone surrogate in model text is written as a ``\\uXXXX`` escape)."""
        record = {"event": event, "run": self.run_id, "time": round(time.time(), 3), **fields}
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json_line(_jsonable(record)))

    def save_image(self, image_id: str, image: Image.Image, source: str = "") -> str:
        """Save ``image`` once as a PNG, log an ``image`` event, and return its path relative to the log."""
        if image_id in self.image_paths:
            return self.image_paths[image_id]
        self.image_dir.mkdir(parents=True, exist_ok=True)
        file = self.image_dir / f"{_safe_name(image_id)}.png"
        image.save(file, format="PNG")
        rel = str(file.relative_to(self.path.parent))
        self.image_paths[image_id] = rel
        self.log(
            "image", image_id=image_id, path=rel, width=image.size[0], height=image.size[1], source=source
        )
        return rel

    def sanitize_messages(self, messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Messages as JSON: image parts become ids plus PNG paths (saved if new), data URLs are dropped."""
        out = []
        for msg in messages:
            clean = {k: v for k, v in msg.items() if k != "content"}
            content = msg.get("content")
            if isinstance(content, list):
                clean["content"] = [self._sanitize_part(p) for p in content]
            else:
                clean["content"] = content
            out.append(clean)
        return out

    def _sanitize_part(self, part: Any) -> Any:
        if is_image_ref(part):
            image = part.get("image")
            path = self.save_image(part["image_id"], image) if image is not None else None
            return {"type": "image", "image_id": part["image_id"], "path": path}
        if isinstance(part, Mapping) and part.get("type") == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            if isinstance(url, str) and url.startswith("data:"):
                return {
                    "type": "image_url",
                    "image_url": {"url": f"<data URL omitted, {len(url)} characters>"},
                }
        return part


def read_trajectory(path: str | Path, run_id: str | None = None) -> list[dict[str, Any]]:
    """The events of a JSONL trajectory (optionally of one run only)."""
    events = []
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                record = json.loads(line)
                if run_id is None or record.get("run") == run_id:
                    events.append(record)
    return events


def _safe_name(image_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in image_id) or "image"


def _jsonable(value: Any) -> Any:
    """Make a value JSON-safe; anything unknown (a PIL image, a path) becomes a short string."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    return f"<{type(value).__name__}>"
