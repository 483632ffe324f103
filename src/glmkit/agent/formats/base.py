"""What every tool-call format shares: calls, parse errors, parsed messages and the format interface.

Parsing never raises on model output (report sections 3.2 and 3.5): a malformed call (invalid JSON,
unknown tool, missing name, unclosed tag, ...) becomes a :class:`ToolCallError` with the reason and
the raw text, which the agent loop returns to the model as an observation so it can correct itself.
Calls and errors keep their order in :attr:`ParsedMessage.items`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from glmkit.registry import declare

_RAW_LIMIT = 2000  # characters of a malformed call quoted back to the model


@dataclass
class ToolCall:
    """One well-formed call: the tool's name, decoded arguments and the call id (if the format has ids).

    ``notes`` say what the parser accepted leniently (a coerced value, a repeated argument, a
    ``parameters`` key); the agent loop shows them to the model with the tool's result.
    """

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    notes: list[str] = field(default_factory=list, compare=False)

    def to_openai(self, call_id: str | None = None) -> dict[str, Any]:
        """The call as an OpenAI ``tool_calls`` item (arguments as a JSON string)."""
        return {
            "id": call_id or self.id or "call_0",
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)},
        }


@dataclass
class ToolCallError:
    """A call the parser could not accept: why, the raw text, and the name / id when they were readable."""

    reason: str
    raw: str
    name: str | None = None
    id: str | None = None

    def observation(self) -> str:
        """The text the model reads instead of a tool result."""
        raw = self.raw if len(self.raw) <= _RAW_LIMIT else self.raw[:_RAW_LIMIT] + "...[truncated]"
        return f"Error: invalid tool call ({self.reason}); it was not executed. The call was:\n{raw}"


@dataclass
class ParsedMessage:
    """An assistant message split into its text and its calls (well-formed or not), in order."""

    content: str = ""
    items: list[ToolCall | ToolCallError] = field(default_factory=list)

    @property
    def calls(self) -> list[ToolCall]:
        """The well-formed calls."""
        return [i for i in self.items if isinstance(i, ToolCall)]

    @property
    def errors(self) -> list[ToolCallError]:
        """The malformed calls."""
        return [i for i in self.items if isinstance(i, ToolCallError)]


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a message whose content is a string or a list of parts (non-text parts skipped)."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text")


class ToolCallFormat(ABC):
    """How tool calls are written in an assistant message and how tools are announced to the model.

    ``native`` formats carry calls in the message's ``tool_calls`` and tools in the request's
    ``tools`` parameter; text formats carry both in text. A model adapter whose chat template is
    given the tools sends glmkit's canonical history (OpenAI-shaped: assistant ``tool_calls``,
    ``role: tool`` results) as it is; otherwise it calls :meth:`prepare_messages`, which writes the
    tools section where the template would.
    """

    name: ClassVar[str]
    native: ClassVar[bool] = False

    @abstractmethod
    def parse_message(self, message: Mapping[str, Any], tools: Any = None) -> ParsedMessage:
        """Split an assistant message into text and calls; ``tools`` as in :func:`tool_parameter_schemas`."""

    @abstractmethod
    def render_message(self, calls: Sequence[ToolCall], content: str = "") -> dict[str, Any]:
        """An assistant message holding ``content`` and ``calls`` in this format."""

    def render_tools(self, tools: Any) -> str:
        """The system-prompt section announcing ``tools`` ('' for native formats)."""
        return ""

    def render_observation(self, tool_messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Turn a run of ``role: tool`` messages into the turns this format expects."""
        return [dict(m) for m in tool_messages]

    def prepare_messages(
        self, messages: Sequence[Mapping[str, Any]], tools: Any = None, **options: Any
    ) -> list[dict[str, Any]]:
        """Canonical history -> the messages to send with this format (a copy, for native formats).

        Text formats also write the tools section and take fallback ``options``
        (:meth:`glmkit.agent.formats.text.TextToolCallFormat.prepare_messages`).
        """
        return [dict(m) for m in messages]


# Declared after ToolCallFormat: every member is a ToolCallFormat subclass.
TOOL_CALL_FORMATS = declare("tool_call_formats", "tool-call formats (parse and render)", base=ToolCallFormat)


def get_tool_call_format(fmt: str | ToolCallFormat) -> ToolCallFormat:
    """A format instance from its registered name (``openai``, ``hermes``, ``glm45``) or as given."""
    if isinstance(fmt, ToolCallFormat):
        return fmt
    return TOOL_CALL_FORMATS.get(fmt)()
