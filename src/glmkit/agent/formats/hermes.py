"""The ``hermes`` format: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks in the text.

Used by Hermes, Qwen and DeepEyes; the tools are listed as JSON lines inside ``<tools></tools>`` in
the system prompt. A JSON string may contain ``</tool_call>`` because the JSON is read with a real
decoder, not a regex.
"""

from __future__ import annotations

import json
from typing import Any

from glmkit.agent.formats.base import TOOL_CALL_FORMATS, ToolCall, ToolCallError
from glmkit.agent.formats.schema_values import _json_type
from glmkit.agent.formats.text import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, TextToolCallFormat, _skip_ws
from glmkit.agent.formats.tool_schemas import _unknown_tool, tool_signatures_prompt


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
        return tool_signatures_prompt(tools) + (
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
