"""The tool interface: schema, argument validation, structured results.

Every tool is a class with a ``name``, a ``description`` and a JSON-schema ``parameters`` object;
``schema()`` renders it in OpenAI's function-calling format, and calling the tool validates the
arguments against that schema before ``run`` sees them. A tool never raises for bad input: the
caller gets a :class:`ToolResult` with ``error`` set, which the agent loop turns into an
observation the model can read and correct.

Images the model has seen live in a :class:`ToolContext` under string ids (``"img_0"``, ...), so a
tool refers to an image by id and a result can add new images (a crop, a drawing) for later turns.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from glmkit.registry import declare

if TYPE_CHECKING:
    from PIL import Image

    from glmkit.tools.net import NetworkPolicy

# Schema fragment shared by every tool that takes an image already in the conversation.
IMAGE_ID_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "description": 'Id of an image in the conversation, e.g. "img_0".',
}


def object_schema(
    properties: dict[str, Any], required: tuple[str, ...] | list[str] = (), description: str | None = None
) -> dict[str, Any]:
    """A closed JSON-schema object (no unknown keys), the shape of every tool's ``parameters``."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema


class ToolError(Exception):
    """Raised inside ``Tool.run`` for a failure the model should be told about (bad box, ...)."""


@dataclass
class ToolContext:
    """State a tool may read and extend: images by id, a scratch directory, network policy.

    ``allow_private_network`` exists for the project's own tests, which serve pages on loopback;
    everything else must leave it ``False``. ``network_policy`` (a
    :class:`glmkit.tools.net.NetworkPolicy`) overrides it with finer limits when set.

    An id is never handed out twice, even after :meth:`drop_image` (the MCP server drops old images
    to bound memory): a caller still holding a dropped id gets an error that says so, never a
    different image under the same id. Adding and dropping images is thread-safe, so calls that
    share a context (the MCP server's) may run at once.

    ``caches`` holds per-context caches of tools, by name (``read_webpage`` keeps converted pages
    there), so they live as long as the conversation.
    """

    images: dict[str, Image.Image] = field(default_factory=dict)
    workdir: Path | None = None
    allow_private_network: bool = False
    network_policy: NetworkPolicy | None = None
    caches: dict[str, Any] = field(default_factory=dict, repr=False)
    # The next index (shared by all prefixes) and the dropped ids: both only grow, so ids stay unique.
    _next_index: int = field(default=0, init=False, repr=False)
    _dropped: set[str] = field(default_factory=set, init=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        """Picklable and deep-copyable: the lock is not state (a copy gets its own)."""
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def add_image(self, image: Image.Image, prefix: str = "img") -> str:
        """Store ``image`` under a fresh id (``<prefix>_<n>``, ``n`` increasing) and return the id."""
        with self._lock:
            # Never below the number of stored images, which keeps the numbering of images set directly
            # in ``images`` (question images, MCP input_images); ids taken or dropped are skipped.
            idx = max(self._next_index, len(self.images))
            while f"{prefix}_{idx}" in self.images or f"{prefix}_{idx}" in self._dropped:
                idx += 1
            self._next_index = idx + 1
            image_id = f"{prefix}_{idx}"
            self.images[image_id] = image
            return image_id

    def set_image(self, image_id: str, image: Image.Image) -> None:
        """Store ``image`` under a given id (an image sent by a client), replacing what was there."""
        with self._lock:
            self.images[image_id] = image

    def drop_image(self, image_id: str) -> None:
        """Forget the image stored as ``image_id``; its id is not reused and asking for it is an error."""
        with self._lock:
            del self.images[image_id]
            self._dropped.add(image_id)

    def drop_oldest_images(self, keep: int) -> None:
        """Drop the oldest images until at most ``keep`` are stored (see :meth:`drop_image`)."""
        with self._lock:
            for image_id in list(self.images)[: max(0, len(self.images) - keep)]:
                self.drop_image(image_id)

    def get_image(self, image_id: str) -> Image.Image:
        """The image stored as ``image_id``, or a :class:`ToolError` naming the known ids."""
        try:
            return self.images[image_id]
        except KeyError:
            known = ", ".join(self.images) or "none"
            if image_id in self._dropped:
                raise ToolError(
                    f"image id {image_id!r} is no longer available: it was dropped to keep the number of "
                    f"stored images bounded; send the image again. Available images: {known}"
                ) from None
            raise ToolError(f"unknown image id {image_id!r}; available images: {known}") from None

    def scratch_dir(self) -> Path:
        """A working directory for tools that write files (created on first use)."""
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="glmkit-tools-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self.workdir


@dataclass
class ToolResult:
    """What a tool returns: text, new images (with their ids), files, structured data or an error."""

    text: str = ""
    images: list[Image.Image] = field(default_factory=list)
    image_ids: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the tool ran without error."""
        return self.error is None

    def to_text(self) -> str:
        """A plain-text rendering for the model (errors prefixed so the model notices)."""
        if self.error is not None:
            return f"Error: {self.error}"
        parts = [self.text] if self.text else []
        if self.image_ids:
            parts.append("New images: " + ", ".join(self.image_ids))
        if self.files:
            parts.append("Files: " + ", ".join(display_path(p) for p in self.files))
        return "\n".join(parts)


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as text that always encodes as UTF-8: bytes of a non-UTF-8 file name (which Python
    keeps as lone surrogates) are shown as ``\\xNN`` escapes instead of breaking JSON output."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _non_finite(value: Any, where: str = "") -> str | None:
    """The path of the first NaN or infinity inside a JSON value (``json.loads`` accepts them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "(arguments)"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _non_finite(item, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


class Tool(ABC):
    """Base class of every tool. Subclasses set the class attributes and implement ``run``."""

    name: ClassVar[str]
    description: ClassVar[str]
    parameters: ClassVar[dict[str, Any]]

    def schema(self) -> dict[str, Any]:
        """The tool in OpenAI function-calling format."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Check ``arguments`` against ``parameters``; raise :class:`ToolError` naming the field."""
        import jsonschema

        if not isinstance(arguments, dict):
            raise ToolError(f"{self.name}: arguments must be a JSON object, got {type(arguments).__name__}")
        validator = jsonschema.Draft202012Validator(self.parameters)
        errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
        if errors:
            err = errors[0]
            where = ".".join(str(p) for p in err.path) or "(arguments)"
            raise ToolError(f"{self.name}: invalid argument {where}: {err.message}")
        # JSON Schema lets NaN through every numeric bound (NaN <= 0 is false), and no tool wants it
        where = _non_finite(arguments)
        if where is not None:
            raise ToolError(f"{self.name}: invalid argument {where}: NaN and infinity are not allowed")
        return arguments

    def __call__(self, arguments: dict[str, Any], context: ToolContext | None = None) -> ToolResult:
        """Validate, run, and store any new images in ``context``; errors become results."""
        context = context if context is not None else ToolContext()
        try:
            result = self.run(context, **self.validate(arguments))
        except ToolError as exc:
            return ToolResult(error=str(exc))
        except Exception as exc:  # a tool bug must not kill the agent loop
            return ToolResult(error=f"{self.name} failed: {type(exc).__name__}: {exc}")
        if result.images and not result.image_ids:
            result.image_ids = [context.add_image(img) for img in result.images]
        return result

    @abstractmethod
    def run(self, context: ToolContext, **arguments: Any) -> ToolResult:
        """Do the work with validated arguments."""


# Declared after Tool: every member is a Tool subclass (registering anything else fails).
TOOLS = declare("tools", "agent tools with OpenAI function schemas", base=Tool)
