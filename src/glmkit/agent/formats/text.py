"""Base of the text formats: ``<tool_call>...</tool_call>`` blocks found in the message text.

The scan skips ``<think>...</think>`` reasoning and tags merely mentioned in prose;
:meth:`TextToolCallFormat.prepare_messages` writes the tools section into glmkit's canonical
(OpenAI-shaped) history the way the model's chat template does, for requests whose template is not
given the tools.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from glmkit.agent.formats.base import ParsedMessage, ToolCall, ToolCallError, ToolCallFormat, message_text
from glmkit.agent.formats.openai import OpenAIToolCallFormat
from glmkit.agent.formats.tool_schemas import tool_parameter_schemas

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

#: How tool results are sent: ``"tool"`` keeps ``role: tool`` messages for the chat template to render
#: (GLM's ``<|observation|>``, Qwen's ``<tool_response>`` user turn); ``"user"`` writes them as
#: ``<tool_response>`` user turns, for templates that cannot render ``role: tool``.
ObservationRole = Literal["tool", "user"]
#: How native ``tool_calls`` in the history are sent: ``"keep"`` leaves them on the message for the
#: chat template to render in the model's own syntax; ``"text"`` writes them in this format's text,
#: for templates that cannot render ``tool_calls``.
NativeCalls = Literal["keep", "text"]


def _content_parts(content: Any) -> list[dict[str, Any]]:
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content)


def _merge_user_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Join runs of consecutive user messages (templates that need alternating roles reject runs)."""
    out: list[dict[str, Any]] = []
    for msg in messages:
        if out and msg.get("role") == "user" and out[-1].get("role") == "user":
            prev = out[-1]
            parts = _content_parts(prev.get("content"))
            extra = _content_parts(msg.get("content"))
            if parts and extra and all(p.get("type") == "text" for p in parts + extra):
                out[-1] = {"role": "user", "content": message_text(prev) + "\n" + message_text(msg)}
            else:
                out[-1] = {"role": "user", "content": parts + extra}
        else:
            out.append(msg)
    return out


class TextToolCallFormat(ToolCallFormat):
    """Base of formats that write calls as ``<tool_call>...</tool_call>`` blocks in the text.

    Args:
        allow_unclosed: accept a final call whose ``</tool_call>`` is missing (generation stopped on
            ``</tool_call>`` as a stop string). Off by default: an unclosed call is an error.
    """

    def __init__(self, allow_unclosed: bool = False) -> None:
        self.allow_unclosed = allow_unclosed

    @abstractmethod
    def render_call(self, call: ToolCall) -> str:
        """One ``<tool_call>...</tool_call>`` block."""

    @abstractmethod
    def _parse_block(
        self, text: str, start: int, schemas: dict[str, dict[str, Any]] | None
    ) -> tuple[ToolCall | ToolCallError, int]:
        """Parse the call whose ``<tool_call>`` begins at ``start``; return it and the index after it."""

    @abstractmethod
    def _starts_call(self, text: str, body: int) -> bool:
        """Whether the text at ``body`` (just after ``<tool_call>`` and any whitespace) begins a call."""

    def parse_text(self, text: str, tools: Any = None) -> ParsedMessage:
        """Find every ``<tool_call>`` block in ``text``; the rest is the message's content.

        A ``<tool_call>`` inside ``<think>...</think>`` is reasoning, not a call, and so is a tag
        mentioned in prose (one that neither starts a call nor is closed by ``</tool_call>``); both
        stay in the content.
        """
        schemas = tool_parameter_schemas(tools)
        parsed = ParsedMessage()
        content: list[str] = []
        spans = think_spans(text)
        pos = search = 0
        while True:
            start = _find_outside(text, TOOL_CALL_OPEN, search, spans)
            if start < 0:
                content.append(text[pos:])
                break
            if not self._opens_call(text, start):
                search = start + len(TOOL_CALL_OPEN)
                continue
            content.append(text[pos:start])
            item, pos = self._parse_block(text, start, schemas)
            search = pos
            parsed.items.append(item)
        parsed.content = "".join(content).strip()
        return parsed

    def _opens_call(self, text: str, start: int) -> bool:
        """A ``<tool_call>`` at ``start`` opens a call when the call syntax follows it, or when a
        ``</tool_call>`` closes it before the next ``<tool_call>``: the model meant a call, and the
        parse error tells it what is wrong. Otherwise it is a tag mentioned in the text."""
        body = _skip_ws(text, start + len(TOOL_CALL_OPEN))
        if self._starts_call(text, body):
            return True
        close = text.find(TOOL_CALL_CLOSE, body)
        nxt = text.find(TOOL_CALL_OPEN, body)
        return close >= 0 and (nxt < 0 or close < nxt)

    def parse_message(self, message: Mapping[str, Any], tools: Any = None) -> ParsedMessage:
        """Parse the calls written in the message's text, after any a server already parsed into
        ``tool_calls`` (an endpoint started with a tool parser)."""
        parsed = self.parse_text(message_text(message), tools)
        if message.get("tool_calls"):
            parsed.items = OpenAIToolCallFormat().parse_message(message, tools).items + parsed.items
        return parsed

    def render_message(self, calls: Sequence[ToolCall], content: str = "") -> dict[str, Any]:
        """An assistant message whose text is ``content`` followed by one block per call."""
        blocks = [self.render_call(c) for c in calls]
        text = "\n".join(([content] if content else []) + blocks)
        return {"role": "assistant", "content": text}

    def render_observation(self, tool_messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """One user turn wrapping each result in ``<tool_response>...</tool_response>`` (what Qwen2.5's
        template makes of a run of ``role: tool`` messages)."""
        blocks = [f"<tool_response>\n{message_text(m)}\n</tool_response>" for m in tool_messages]
        return [{"role": "user", "content": "\n".join(blocks)}]

    def announce_tools(self, messages: list[dict[str, Any]], section: str) -> list[dict[str, Any]]:
        """Put the tools ``section`` where the chat template puts it: appended to the first system
        message after a blank line (Qwen2.5, Hermes), or as the system message when there is none."""
        if messages and messages[0].get("role") == "system":
            first = {**messages[0], "content": message_text(messages[0]) + "\n\n" + section}
            return [first, *messages[1:]]
        return [{"role": "system", "content": section}, *messages]

    def prepare_messages(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Any = None,
        *,
        observation_role: ObservationRole = "tool",
        native_calls: NativeCalls = "keep",
    ) -> list[dict[str, Any]]:
        """The canonical history as this format sends it when the chat template is not given ``tools``.

        With ``tools``, the section :meth:`render_tools` writes is placed by :meth:`announce_tools`,
        so the prompt the template renders is byte for byte the one it renders when given the tools
        itself (GLM-4.5/4.6, Qwen2.5). ``observation_role`` and ``native_calls`` choose the fallbacks
        for templates that cannot render ``role: tool`` messages or ``tool_calls`` (see
        :data:`ObservationRole`, :data:`NativeCalls`); by default both are left to the template, so each
        call stays in the form the model produced it.
        """
        if observation_role not in ("tool", "user"):
            raise ValueError(f"observation_role must be 'tool' or 'user', got {observation_role!r}")
        if native_calls not in ("keep", "text"):
            raise ValueError(f"native_calls must be 'keep' or 'text', got {native_calls!r}")
        out: list[dict[str, Any]] = []
        pending: list[Mapping[str, Any]] = []
        for msg in messages:
            role = msg.get("role")
            if role == "tool" and observation_role == "user":
                pending.append(msg)
                continue
            if pending:
                out.extend(self.render_observation(pending))
                pending = []
            if role == "assistant" and msg.get("tool_calls") and native_calls == "text":
                parsed = OpenAIToolCallFormat().parse_message(msg)
                calls = [c if isinstance(c, ToolCall) else ToolCall(c.name or "?", {}) for c in parsed.items]
                out.append(self.render_message(calls, parsed.content))
            else:
                out.append(dict(msg))
        if pending:
            out.extend(self.render_observation(pending))
        if tools:
            out = self.announce_tools(out, self.render_tools(tools))
        # Observation user turns next to other user turns: join them for templates that need
        # alternating roles (role: tool messages are left to the template).
        return _merge_user_messages(out) if observation_role == "user" else out

    def _skip_to_close(self, text: str, i: int) -> int:
        """Where parsing resumes after a malformed call: past its ``</tool_call>``, or at the next
        ``<tool_call>`` when that opens first (so one broken call does not swallow the next)."""
        end = text.find(TOOL_CALL_CLOSE, i)
        nxt = text.find(TOOL_CALL_OPEN, i)
        if nxt >= 0 and (end < 0 or nxt < end):
            return nxt
        return len(text) if end < 0 else end + len(TOOL_CALL_CLOSE)


def think_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each ``<think>...</think>`` block in ``text``.

    A ``</think>`` before any ``<think>`` closes reasoning that the chat template opened in the
    prompt (Qwen3 thinking models), so the span starts at 0; an unclosed ``<think>`` runs to the end
    (the reply was cut off while reasoning).
    """
    spans: list[tuple[int, int]] = []
    pos = 0
    first_close, first_open = text.find(THINK_CLOSE), text.find(THINK_OPEN)
    if first_close >= 0 and (first_open < 0 or first_close < first_open):
        pos = first_close + len(THINK_CLOSE)
        spans.append((0, pos))
    while (start := text.find(THINK_OPEN, pos)) >= 0:
        end = text.find(THINK_CLOSE, start + len(THINK_OPEN))
        pos = len(text) if end < 0 else end + len(THINK_CLOSE)
        spans.append((start, pos))
    return spans


def _find_outside(text: str, needle: str, pos: int, spans: Sequence[tuple[int, int]]) -> int:
    """The first ``needle`` at or after ``pos`` that is not inside one of ``spans`` (-1 if none)."""
    while (i := text.find(needle, pos)) >= 0:
        span = next(((a, b) for a, b in spans if a <= i < b), None)
        if span is None:
            return i
        pos = span[1]
    return -1


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i
