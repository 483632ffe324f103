"""The ``hermes`` format: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks in the text.

Used by Hermes, Qwen and DeepEyes; the tools are listed as JSON lines inside ``<tools></tools>`` in
the system prompt. A JSON string may contain ``</tool_call>`` because the JSON is read with a real
decoder, not a regex.
"""

from __future__ import annotations

import json
from typing import Any

from glmkit.agent.formats.base import TOOL_CALL_FORMATS, ToolCall, ToolCallError
from glmkit.agent.formats.schema_values import _json_type, coerce_arguments
from glmkit.agent.formats.text import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, TextToolCallFormat, _skip_ws
from glmkit.agent.formats.tool_schemas import _unknown_tool, tool_signatures_prompt

#: The system prompt Qwen2.5's chat template writes when the conversation has none.
QWEN25_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


@TOOL_CALL_FORMATS.register("hermes")
class HermesToolCallFormat(TextToolCallFormat):
    """``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (Hermes 2 Pro, Qwen, DeepEyes).

    Args:
        allow_unclosed: see :class:`TextToolCallFormat`.
        default_system: the system prompt the tools section follows when the conversation has none
            (``QWEN25_DEFAULT_SYSTEM`` reproduces Qwen2.5's template; ``None``: the section alone).
    """

    name = "hermes"

    def __init__(self, allow_unclosed: bool = False, default_system: str | None = None) -> None:
        super().__init__(allow_unclosed=allow_unclosed)
        self.default_system = default_system

    def render_call(self, call: ToolCall) -> str:
        """``<tool_call>\n{json}\n</tool_call>``."""
        body = json.dumps({"name": call.name, "arguments": call.arguments}, ensure_ascii=False)
        return f"{TOOL_CALL_OPEN}\n{body}\n{TOOL_CALL_CLOSE}"

    def render_tools(self, tools: Any) -> str:
        """The tools section of the Qwen2.5 chat template, verbatim."""
        return tool_signatures_prompt(tools) + (
            "\n\nFor each function call, return a json object with function name and arguments within "
            "<tool_call></tool_call> XML tags:\n<tool_call>\n"
            '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
        )

    def announce_tools(self, messages: list[dict[str, Any]], section: str) -> list[dict[str, Any]]:
        """Appended to the first system message, as Qwen2.5's template does; without one, to
        ``default_system`` (Qwen2.5's template uses :data:`QWEN25_DEFAULT_SYSTEM`)."""
        if (not messages or messages[0].get("role") != "system") and self.default_system:
            messages = [{"role": "system", "content": self.default_system}, *messages]
        return super().announce_tools(messages, section)

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
        notes: list[str] = []
        if "arguments" not in obj and "parameters" in obj:  # Llama 3.x's key; SGLang reads it too
            arguments = obj["parameters"]
            notes.append("the arguments were read from the 'parameters' key; name them 'arguments'")
        else:
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
        arguments, coerced = coerce_arguments(arguments, (schemas or {}).get(name))
        return ToolCall(name, arguments, notes=notes + coerced), stop
