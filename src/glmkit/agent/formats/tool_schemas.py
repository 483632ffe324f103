"""The ``tools`` argument of the formats, normalised: per-tool parameter schemas and OpenAI schemas."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


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


def _unknown_tool(name: str, schemas: dict[str, dict[str, Any]] | None) -> str | None:
    if schemas is None or name in schemas:
        return None
    known = ", ".join(sorted(schemas)) or "none"
    return f"unknown tool {name!r}; available tools: {known}"


#: The opening of the tools section that GLM-4.5/4.6 and Qwen2.5 chat templates write, verbatim.
TOOLS_PREAMBLE = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)


def tool_json_lines(tools: Any) -> list[str]:
    """Each tool's OpenAI schema as one JSON line, as the templates' ``tool | tojson`` writes it
    (``ensure_ascii=False``, default separators, keys in the given order)."""
    return [json.dumps(s, ensure_ascii=False) for s in openai_tool_schemas(tools)]


def tool_signatures_prompt(tools: Any) -> str:
    """``# Tools ... <tools>\n{one JSON line per tool}\n</tools>``: the part of the tools section
    that GLM-4.5/4.6 and Qwen2.5 templates share, byte for byte."""
    return TOOLS_PREAMBLE + "".join("\n" + line for line in tool_json_lines(tools)) + "\n</tools>"
