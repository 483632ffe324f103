"""The ``glm45`` format: GLM-4.5's ``<tool_call>NAME\\n<arg_key>k</arg_key>\\n<arg_value>v</arg_value>\\n</tool_call>``.

GLM-4.7/5 drop the newlines; both spellings parse. Values are typed with the tool's schema
(:mod:`~glmkit.agent.formats.schema_values`). A string value cannot contain the literal
``</arg_value>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from glmkit.agent.formats.base import TOOL_CALL_FORMATS, ToolCall, ToolCallError
from glmkit.agent.formats.schema_values import coerce_arguments, decode_glm_value, encode_glm_value
from glmkit.agent.formats.text import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, TextToolCallFormat, _skip_ws
from glmkit.agent.formats.tool_schemas import _unknown_tool, tool_signatures_prompt

ARG_KEY_OPEN, ARG_KEY_CLOSE = "<arg_key>", "</arg_key>"
ARG_VALUE_OPEN, ARG_VALUE_CLOSE = "<arg_value>", "</arg_value>"

# A function name, then the end of its line, an argument or the end of the call (or of the text).
_GLM_CALL_START = re.compile(r"\w[\w.\-]*[ \t]*(?:\r?\n|\\n|<arg_key>|</tool_call>|$)")


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
        """The tools section of the GLM-4.5/4.6 chat template, verbatim (the compact call syntax of
        GLM-4.7/5 with ``newlines=False``)."""
        sep = "\n" if self.newlines else ""
        syntax = sep.join(
            (
                "<tool_call>{function-name}",
                "<arg_key>{arg-key-1}</arg_key>",
                "<arg_value>{arg-value-1}</arg_value>",
                "<arg_key>{arg-key-2}</arg_key>",
                "<arg_value>{arg-value-2}</arg_value>",
                "...",
                "</tool_call>",
            )
        )
        return (
            tool_signatures_prompt(tools) + "\n\nFor each function call, output the function name and "
            "arguments within the following XML format:\n" + syntax
        )

    def announce_tools(self, messages: list[dict[str, Any]], section: str) -> list[dict[str, Any]]:
        """GLM templates write the tools section as its own first ``<|system|>`` block, before any
        system message."""
        return [{"role": "system", "content": section}, *messages]

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

        # The name runs to the first newline, <arg_key> or </tool_call>, whichever comes first (or to a
        # literal backslash-n, which some models write instead of the newline).
        ends = (
            text.find("\n", body),
            text.find(ARG_KEY_OPEN, body),
            text.find(TOOL_CALL_CLOSE, body),
            text.find(_LITERAL_NEWLINE, body),
        )
        name_end = min((p for p in ends if p >= 0), default=len(text))
        candidate = text[body:name_end].strip()
        if not candidate:
            return fail("tool call without a function name", body)
        if any(c in candidate for c in "<>{}\"'\\") or any(c.isspace() for c in candidate):
            return fail(f"expected a function name after <tool_call>, got {candidate[:60]!r}", body)
        name = candidate
        schema = (schemas or {}).get(name, {})
        properties = schema.get("properties") if isinstance(schema, Mapping) else None
        arguments: dict[str, Any] = {}
        notes: list[str] = []
        literal_newlines = False
        i = name_end
        while True:
            i, literal = _skip_separators(text, i)
            literal_newlines |= literal
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
            i, literal = _skip_separators(text, key_end + len(ARG_KEY_CLOSE))
            literal_newlines |= literal
            if not text.startswith(ARG_VALUE_OPEN, i):
                return fail(f"argument {key!r} of {name!r} has no <arg_value>", i)
            value_end = text.find(ARG_VALUE_CLOSE, i)
            if value_end < 0:
                return fail(f"unclosed <arg_value> for {key!r}", i)
            if not key:
                return fail("empty argument name", value_end)
            if key in arguments:  # vLLM and SGLang keep the last value
                notes.append(f"argument {key!r} was given more than once; the last value was used")
            raw_value = text[i + len(ARG_VALUE_OPEN) : value_end]
            prop = properties.get(key) if isinstance(properties, Mapping) else None
            arguments[key] = decode_glm_value(raw_value, prop)
            i = value_end + len(ARG_VALUE_CLOSE)
        raw = text[start:stop]
        error = _unknown_tool(name, schemas)
        if error:
            return ToolCallError(error, raw, name=name), stop
        if literal_newlines:
            notes.insert(0, "literal '\\n' between the parts of the call was read as a newline")
        arguments, coerced = coerce_arguments(arguments, schema)
        return ToolCall(name, arguments, notes=notes + coerced), stop


_LITERAL_NEWLINE = "\\n"  # the two characters backslash and n


def _skip_separators(text: str, i: int) -> tuple[int, bool]:
    """Skip whitespace and literal ``\\n`` between the parts of a call; also say whether a literal one was seen."""
    literal = False
    while True:
        i = _skip_ws(text, i)
        if not text.startswith(_LITERAL_NEWLINE, i):
            return i, literal
        literal = True
        i += len(_LITERAL_NEWLINE)
