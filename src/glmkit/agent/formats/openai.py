"""The ``openai`` format: Chat Completions ``tool_calls`` on the assistant message.

``{"id": ..., "type": "function", "function": {"name": ..., "arguments": "<JSON string>"}}``; the
tools travel in the request's ``tools`` parameter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from glmkit.agent.formats.base import (
    TOOL_CALL_FORMATS,
    ParsedMessage,
    ToolCall,
    ToolCallError,
    ToolCallFormat,
    message_text,
)
from glmkit.agent.formats.schema_values import _json_type, coerce_arguments
from glmkit.agent.formats.tool_schemas import _unknown_tool, tool_parameter_schemas


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
            arguments, notes = coerce_arguments(arguments, (schemas or {}).get(name))
            parsed.items.append(ToolCall(name, arguments, call_id, notes=notes))
        return parsed

    def render_message(self, calls: Sequence[ToolCall], content: str = "") -> dict[str, Any]:
        """An assistant message with ``tool_calls`` (ids ``call_<i>`` where a call has none)."""
        message: dict[str, Any] = {"role": "assistant", "content": content or None}
        if calls:
            message["tool_calls"] = [c.to_openai(c.id or f"call_{i}") for i, c in enumerate(calls)]
        return message
