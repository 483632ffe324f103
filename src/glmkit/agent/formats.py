"""Tool-call formats: parse a model's tool calls and render them back (report sections 3.2 and 3.5).

Three formats, each a registered component of ``registry("tool_call_formats")``:

``openai``
    Chat Completions ``tool_calls`` on the assistant message:
    ``{"id": ..., "type": "function", "function": {"name": ..., "arguments": "<JSON string>"}}``.
    The tools travel in the request's ``tools`` parameter.
``hermes``
    ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks in the text (Hermes, Qwen,
    DeepEyes); the tools are listed as JSON lines inside ``<tools></tools>`` in the system prompt.
``glm45``
    GLM-4.5's ``<tool_call>NAME\\n<arg_key>k</arg_key>\\n<arg_value>v</arg_value>\\n</tool_call>``.
    GLM-4.7/5 drop the newlines; both spellings parse.

Every message may hold several calls. Parsing never raises on model output: a malformed call
(invalid JSON, unknown tool, missing name, unclosed tag, ...) becomes a :class:`ToolCallError`
with the reason and the raw text, which the agent loop returns to the model as an observation so
it can correct itself. Calls and errors keep their order in :attr:`ParsedMessage.items`.

GLM's XML carries no types (the chat template writes strings raw and everything else as JSON), so
:func:`decode_glm_value` types each value with the tool's JSON schema, as vLLM's and SGLang's GLM
parsers do: string-typed arguments are kept verbatim (so ``"[1, 2]"`` or ``"10220_3939392"`` stay
strings), other types are decoded as JSON, and without a schema only unambiguous JSON containers or
quoted strings are decoded. ``ast.literal_eval`` is never used (it reads ``10220_3939392`` as an
int). A string value cannot contain the literal ``</arg_value>``; a Hermes JSON string may contain
``</tool_call>`` because the JSON is read with a real decoder, not a regex.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from glmkit.registry import registry

TOOL_CALL_FORMATS = registry("tool_call_formats", "tool-call formats (parse and render)")

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
ARG_KEY_OPEN, ARG_KEY_CLOSE = "<arg_key>", "</arg_key>"
ARG_VALUE_OPEN, ARG_VALUE_CLOSE = "<arg_value>", "</arg_value>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_RAW_LIMIT = 2000  # characters of a malformed call quoted back to the model


@dataclass
class ToolCall:
    """One well-formed call: the tool's name, decoded arguments and the call id (if the format has ids)."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None

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


# ----------------------------------------------------------------------------------------- schemas


def tool_parameter_schemas(tools: Any) -> dict[str, dict[str, Any]] | None:
    """Map tool name -> JSON-schema ``parameters`` from any of the ways glmkit passes tools around.

    Accepts ``None`` (no checking: any name is accepted and values are untyped), a mapping
    name -> parameters schema, or a sequence of OpenAI tool schemas
    (``{"type": "function", "function": {...}}``), bare function dicts or objects with a
    ``schema()`` method (glmkit :class:`~glmkit.tools.base.Tool`).
    """
    if tools is None:
        return None
    if isinstance(tools, Mapping):
        return {str(k): dict(v or {}) for k, v in tools.items()}
    out: dict[str, dict[str, Any]] = {}
    for tool in tools:
        spec = tool.schema() if hasattr(tool, "schema") else tool
        if not isinstance(spec, Mapping):
            raise TypeError(f"a tool must be a schema dict or have schema(), got {type(tool).__name__}")
        fn = spec.get("function", spec)
        if "name" not in fn:
            raise ValueError(f"tool schema without a 'name': {json.dumps(spec)[:200]}")
        out[fn["name"]] = dict(fn.get("parameters") or {})
    return out


def openai_tool_schemas(tools: Any) -> list[dict[str, Any]]:
    """The tools as a list of OpenAI ``{"type": "function", "function": ...}`` schemas."""
    if tools is None:
        return []
    if isinstance(tools, Mapping):
        return [
            {"type": "function", "function": {"name": k, "description": "", "parameters": v}}
            for k, v in tools.items()
        ]
    out = []
    for tool in tools:
        spec = tool.schema() if hasattr(tool, "schema") else tool
        out.append(spec if "function" in spec else {"type": "function", "function": spec})
    return out


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def schema_types(schema: Any) -> set[str] | None:
    """The JSON types a schema allows (``type``, type arrays, ``anyOf``/``oneOf``/``allOf``, ``enum``,
    ``const``), or ``None`` when the schema does not say."""
    if not isinstance(schema, Mapping) or not schema:
        return None
    types: set[str] = set()
    declared = schema.get("type")
    if isinstance(declared, str):
        types.add(declared)
    elif isinstance(declared, list):
        types.update(t for t in declared if isinstance(t, str))
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key) or ():
            types |= schema_types(sub) or set()
    if isinstance(schema.get("enum"), list):
        types.update(_json_type(v) for v in schema["enum"])
    if "const" in schema:
        types.add(_json_type(schema["const"]))
    if not types and "properties" in schema:
        types.add("object")
    if not types and "items" in schema:
        types.add("array")
    return types or None


def _matches(value: Any, types: set[str]) -> bool:
    kind = _json_type(value)
    if kind in types:
        return True
    if kind == "integer" and "number" in types:
        return True
    return kind == "number" and "integer" in types and float(value).is_integer()


_MISSING = object()


def decode_glm_value(raw: str, schema: Any) -> Any:
    """Type one GLM ``<arg_value>`` with the argument's JSON schema.

    - schema says only ``string``: the raw text, verbatim (not stripped, never JSON-decoded);
    - schema allows other types: the JSON decoding when its type is allowed (a decoded *string*
      is accepted only for string-free schemas), Python's ``True``/``False``/``None`` spellings for
      booleans and null, else the raw text (schema validation then tells the model what is wrong);
    - no schema: only unambiguous JSON objects, arrays and quoted strings are decoded.
    """
    types = schema_types(schema)
    text = raw.strip()
    if types is None:
        if text[:1] in ("{", "[", '"'):
            try:
                value = json.loads(text)
            except ValueError:
                return raw
            if isinstance(value, (dict, list, str)):
                return value
        return raw
    if types <= {"string"}:
        return raw
    try:
        value = json.loads(text)
    except ValueError:
        value = _MISSING
    if (
        value is not _MISSING
        and _matches(value, types)
        and not (isinstance(value, str) and "string" in types)
    ):
        return value
    if "boolean" in types and text in ("True", "False"):
        return text == "True"
    if "null" in types and text == "None":
        return None
    return raw


def encode_glm_value(value: Any) -> str:
    """Render one argument the way GLM's chat template does: strings raw, everything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


# ----------------------------------------------------------------------------------------- messages


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a message whose content is a string or a list of parts (non-text parts skipped)."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text")


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


# ------------------------------------------------------------------------------------------ formats


class ToolCallFormat(ABC):
    """How tool calls are written in an assistant message and how tools are announced to the model.

    ``native`` formats carry calls in the message's ``tool_calls`` and tools in the request's
    ``tools`` parameter; text formats carry both in text, so a model adapter calls
    :meth:`prepare_messages` to turn glmkit's canonical history (OpenAI-shaped: assistant
    ``tool_calls``, ``role: tool`` results) into plain chat turns.
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
        self, messages: Sequence[Mapping[str, Any]], tools: Any = None, *, keep_tool_messages: bool = False
    ) -> list[dict[str, Any]]:
        """Canonical history -> the messages to send with this format (identity for native formats).

        ``keep_tool_messages`` leaves ``role: tool`` results as they are, for chat templates that
        render them natively (GLM's ``<|observation|>``, Qwen's ``<tool_response>``).
        """
        return [dict(m) for m in messages]


@TOOL_CALL_FORMATS.register("openai")
class OpenAIToolCallFormat(ToolCallFormat):
    """OpenAI Chat Completions ``tool_calls`` (arguments are a JSON string that may be invalid)."""

    name = "openai"
    native = True

    def parse_message(self, message: Mapping[str, Any], tools: Any = None) -> ParsedMessage:
        """Read ``message["tool_calls"]``; text in ``content`` is never parsed for calls."""
        schemas = tool_parameter_schemas(tools)
        parsed = ParsedMessage(content=message_text(message))
        for item in message.get("tool_calls") or ():
            raw = json.dumps(item, ensure_ascii=False) if isinstance(item, Mapping) else repr(item)
            if not isinstance(item, Mapping):
                parsed.items.append(ToolCallError("a tool_calls item must be an object", raw))
                continue
            call_id = item.get("id")
            fn = item.get("function")
            if not isinstance(fn, Mapping):
                parsed.items.append(ToolCallError("tool call without a 'function' object", raw, id=call_id))
                continue
            name = fn.get("name")
            if not isinstance(name, str) or not name.strip():
                parsed.items.append(ToolCallError("tool call without a function name", raw, id=call_id))
                continue
            name = name.strip()
            arguments = fn.get("arguments")
            if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
                arguments = {}
            elif isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments)
                except ValueError as exc:
                    reason = f"arguments of {name!r} are not valid JSON: {exc}"
                    parsed.items.append(ToolCallError(reason, raw, name=name, id=call_id))
                    continue
            if not isinstance(arguments, dict):
                reason = f"arguments of {name!r} must be a JSON object, got {_json_type(arguments)}"
                parsed.items.append(ToolCallError(reason, raw, name=name, id=call_id))
                continue
            error = _unknown_tool(name, schemas)
            if error:
                parsed.items.append(ToolCallError(error, raw, name=name, id=call_id))
                continue
            parsed.items.append(ToolCall(name, arguments, call_id))
        return parsed

    def render_message(self, calls: Sequence[ToolCall], content: str = "") -> dict[str, Any]:
        """An assistant message with ``tool_calls`` (ids ``call_<i>`` where a call has none)."""
        message: dict[str, Any] = {"role": "assistant", "content": content or None}
        if calls:
            message["tool_calls"] = [c.to_openai(c.id or f"call_{i}") for i, c in enumerate(calls)]
        return message


def _unknown_tool(name: str, schemas: dict[str, dict[str, Any]] | None) -> str | None:
    if schemas is None or name in schemas:
        return None
    known = ", ".join(sorted(schemas)) or "none"
    return f"unknown tool {name!r}; available tools: {known}"


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
        """One user turn wrapping each result in ``<tool_response>...</tool_response>``."""
        blocks = [f"<tool_response>\n{message_text(m)}\n</tool_response>" for m in tool_messages]
        return [{"role": "user", "content": "\n".join(blocks)}]

    def prepare_messages(
        self, messages: Sequence[Mapping[str, Any]], tools: Any = None, *, keep_tool_messages: bool = False
    ) -> list[dict[str, Any]]:
        """Announce the tools in the system prompt (when ``tools`` is given), write native
        ``tool_calls`` as text blocks, turn runs of tool results into observation turns (unless
        ``keep_tool_messages``) and join consecutive user turns."""
        out: list[dict[str, Any]] = []
        pending: list[Mapping[str, Any]] = []
        for msg in messages:
            role = msg.get("role")
            if role == "tool" and not keep_tool_messages:
                pending.append(msg)
                continue
            if pending:
                out.extend(self.render_observation(pending))
                pending = []
            if role == "assistant" and msg.get("tool_calls"):
                parsed = OpenAIToolCallFormat().parse_message(msg)
                calls = [c if isinstance(c, ToolCall) else ToolCall(c.name or "?", {}) for c in parsed.items]
                out.append(self.render_message(calls, parsed.content))
            else:
                out.append(dict(msg))
        if pending:
            out.extend(self.render_observation(pending))
        section = self.render_tools(tools) if tools else ""
        if section:
            if out and out[0].get("role") == "system":
                out[0] = {"role": "system", "content": message_text(out[0]).rstrip() + "\n\n" + section}
            else:
                out.insert(0, {"role": "system", "content": section})
        return _merge_user_messages(out)

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


@TOOL_CALL_FORMATS.register("hermes")
class HermesToolCallFormat(TextToolCallFormat):
    """``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (Hermes 2 Pro, Qwen, DeepEyes)."""

    name = "hermes"

    def render_call(self, call: ToolCall) -> str:
        """``<tool_call>\\n{json}\\n</tool_call>``."""
        body = json.dumps({"name": call.name, "arguments": call.arguments}, ensure_ascii=False)
        return f"{TOOL_CALL_OPEN}\n{body}\n{TOOL_CALL_CLOSE}"

    def render_tools(self, tools: Any) -> str:
        """Tool signatures as JSON lines in ``<tools></tools>`` and how to call them."""
        lines = "\n".join(json.dumps(s, ensure_ascii=False) for s in openai_tool_schemas(tools))
        return (
            "# Tools\n\nYou can call the functions below. Their signatures, as JSON schemas, are inside "
            f"<tools></tools>:\n<tools>\n{lines}\n</tools>\n\n"
            "To call a function, write a JSON object with its name and arguments between "
            "<tool_call></tool_call> tags, one block per call:\n"
            '<tool_call>\n{"name": "<function name>", "arguments": {<arguments as JSON>}}\n</tool_call>'
        )

    def _starts_call(self, text: str, body: int) -> bool:
        """A Hermes call is a JSON object."""
        return text.startswith("{", body)

    def _parse_block(
        self, text: str, start: int, schemas: dict[str, dict[str, Any]] | None
    ) -> tuple[ToolCall | ToolCallError, int]:
        body = _skip_ws(text, start + len(TOOL_CALL_OPEN))
        try:
            # raw_decode reads exactly one JSON value, so a '</tool_call>' inside a JSON string
            # cannot end the call early (vLLM#45167).
            obj, end = json.JSONDecoder().raw_decode(text, body)
        except ValueError as exc:
            stop = self._skip_to_close(text, body)
            closed = text.endswith(TOOL_CALL_CLOSE, start, stop)
            reason = f"invalid JSON: {exc}" if closed else "unclosed <tool_call> (missing </tool_call>)"
            return ToolCallError(reason, text[start:stop]), stop
        after = _skip_ws(text, end)
        if text.startswith(TOOL_CALL_CLOSE, after):
            stop = after + len(TOOL_CALL_CLOSE)
        elif after >= len(text) and self.allow_unclosed:
            stop = after
        elif after >= len(text):
            return ToolCallError("unclosed <tool_call> (missing </tool_call>)", text[start:]), len(text)
        else:
            stop = self._skip_to_close(text, after)
            return ToolCallError("unexpected text after the JSON object", text[start:stop]), stop
        raw = text[start:stop]
        if not isinstance(obj, dict):
            return ToolCallError(f"the call must be a JSON object, got {_json_type(obj)}", raw), stop
        name = obj.get("name")
        if not isinstance(name, str) or not name.strip():
            return ToolCallError("tool call without a 'name'", raw), stop
        name = name.strip()
        arguments = obj.get("arguments", {})
        if isinstance(arguments, str):  # some models double-encode the arguments
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except ValueError:
                return ToolCallError(f"arguments of {name!r} are not a JSON object", raw, name=name), stop
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            reason = f"arguments of {name!r} must be a JSON object, got {_json_type(arguments)}"
            return ToolCallError(reason, raw, name=name), stop
        error = _unknown_tool(name, schemas)
        if error:
            return ToolCallError(error, raw, name=name), stop
        return ToolCall(name, arguments), stop


# A function name, then the end of its line, an argument or the end of the call (or of the text).
_GLM_CALL_START = re.compile(r"\w[\w.\-]*[ \t]*(?:\r?\n|<arg_key>|</tool_call>|$)")


@TOOL_CALL_FORMATS.register("glm45")
class Glm45ToolCallFormat(TextToolCallFormat):
    """GLM-4.5 XML calls: ``<tool_call>NAME`` then ``<arg_key>k</arg_key><arg_value>v</arg_value>`` pairs.

    Args:
        newlines: write the GLM-4.5 newlines between parts (``False`` writes GLM-4.7/5's compact form).
        allow_unclosed: see :class:`TextToolCallFormat`.
    """

    name = "glm45"

    def __init__(self, newlines: bool = True, allow_unclosed: bool = False) -> None:
        super().__init__(allow_unclosed=allow_unclosed)
        self.newlines = newlines

    def render_call(self, call: ToolCall) -> str:
        """``<tool_call>NAME\\n<arg_key>k</arg_key>\\n<arg_value>v</arg_value>\\n</tool_call>``."""
        sep = "\n" if self.newlines else ""
        parts = [f"{TOOL_CALL_OPEN}{call.name}"]
        for key, value in call.arguments.items():
            parts.append(
                f"{ARG_KEY_OPEN}{key}{ARG_KEY_CLOSE}{sep}{ARG_VALUE_OPEN}{encode_glm_value(value)}{ARG_VALUE_CLOSE}"
            )
        return sep.join(parts) + sep + TOOL_CALL_CLOSE

    def render_tools(self, tools: Any) -> str:
        """Tool signatures as JSON lines and the XML call syntax."""
        lines = "\n".join(json.dumps(s, ensure_ascii=False) for s in openai_tool_schemas(tools))
        return (
            "# Tools\n\nYou can call the functions below. Their signatures, as JSON schemas, are inside "
            f"<tools></tools>:\n<tools>\n{lines}\n</tools>\n\n"
            "To call a function, write one block per call in this form (string values as plain text, "
            "other values as JSON):\n"
            "<tool_call>{function-name}\n<arg_key>{arg-key-1}</arg_key>\n<arg_value>{arg-value-1}</arg_value>\n"
            "<arg_key>{arg-key-2}</arg_key>\n<arg_value>{arg-value-2}</arg_value>\n...\n</tool_call>"
        )

    def _starts_call(self, text: str, body: int) -> bool:
        """A GLM call starts with a function name ending the line or followed by ``<arg_key>``."""
        return _GLM_CALL_START.match(text, body) is not None

    def _parse_block(
        self, text: str, start: int, schemas: dict[str, dict[str, Any]] | None
    ) -> tuple[ToolCall | ToolCallError, int]:
        body = start + len(TOOL_CALL_OPEN)
        name: str | None = None

        def fail(reason: str, at: int) -> tuple[ToolCallError, int]:
            stop = self._skip_to_close(text, at)
            if stop >= len(text) and not text.endswith(TOOL_CALL_CLOSE, body):
                reason = "unclosed <tool_call> (missing </tool_call>)"
            return ToolCallError(reason, text[start:stop], name=name), stop

        # The name runs to the first newline, <arg_key> or </tool_call>, whichever comes first.
        ends = (text.find("\n", body), text.find(ARG_KEY_OPEN, body), text.find(TOOL_CALL_CLOSE, body))
        name_end = min((p for p in ends if p >= 0), default=len(text))
        candidate = text[body:name_end].strip()
        if not candidate:
            return fail("tool call without a function name", body)
        if any(c in candidate for c in "<>{}\"'") or any(c.isspace() for c in candidate):
            return fail(f"expected a function name after <tool_call>, got {candidate[:60]!r}", body)
        name = candidate
        schema = (schemas or {}).get(name, {})
        properties = schema.get("properties") if isinstance(schema, Mapping) else None
        arguments: dict[str, Any] = {}
        i = name_end
        while True:
            i = _skip_ws(text, i)
            if text.startswith(TOOL_CALL_CLOSE, i):
                stop = i + len(TOOL_CALL_CLOSE)
                break
            if i >= len(text) and self.allow_unclosed:
                stop = i
                break
            if not text.startswith(ARG_KEY_OPEN, i):
                return fail(
                    f"expected <arg_key> or </tool_call> in the call to {name!r}, got {text[i : i + 30]!r}", i
                )
            key_end = text.find(ARG_KEY_CLOSE, i)
            if key_end < 0:
                return fail("unclosed <arg_key>", i)
            key = text[i + len(ARG_KEY_OPEN) : key_end].strip()
            i = _skip_ws(text, key_end + len(ARG_KEY_CLOSE))
            if not text.startswith(ARG_VALUE_OPEN, i):
                return fail(f"argument {key!r} of {name!r} has no <arg_value>", i)
            value_end = text.find(ARG_VALUE_CLOSE, i)
            if value_end < 0:
                return fail(f"unclosed <arg_value> for {key!r}", i)
            if not key or key in arguments:
                return fail("empty argument name" if not key else f"argument {key!r} given twice", value_end)
            raw_value = text[i + len(ARG_VALUE_OPEN) : value_end]
            prop = properties.get(key) if isinstance(properties, Mapping) else None
            arguments[key] = decode_glm_value(raw_value, prop)
            i = value_end + len(ARG_VALUE_CLOSE)
        raw = text[start:stop]
        error = _unknown_tool(name, schemas)
        if error:
            return ToolCallError(error, raw, name=name), stop
        return ToolCall(name, arguments), stop


def get_tool_call_format(fmt: str | ToolCallFormat) -> ToolCallFormat:
    """A format instance from its registered name (``openai``, ``hermes``, ``glm45``) or as given."""
    if isinstance(fmt, ToolCallFormat):
        return fmt
    return TOOL_CALL_FORMATS.get(fmt)()
