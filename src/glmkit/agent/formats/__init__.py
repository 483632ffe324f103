"""Tool-call formats: parse a model's tool calls and render them back (report sections 3.2 and 3.5).

Three formats, each a registered component of ``registry("tool_call_formats")`` (registered when
this package is imported):

``openai`` (:mod:`.openai`)
    Chat Completions ``tool_calls`` on the assistant message; tools in the request's ``tools``.
``hermes`` (:mod:`.hermes`)
    ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks in the text (Hermes, Qwen,
    DeepEyes); the tools are listed as JSON lines inside ``<tools></tools>`` in the system prompt.
``glm45`` (:mod:`.glm45`)
    GLM-4.5's ``<tool_call>NAME\\n<arg_key>k</arg_key>\\n<arg_value>v</arg_value>\\n</tool_call>``.
    GLM-4.7/5 drop the newlines; both spellings parse.

The rest of the package: :mod:`.base` (calls, parse errors, the format interface, the registry),
:mod:`.text` (the shared ``<tool_call>`` block scanner and ``<think>`` handling),
:mod:`.tool_schemas` (normalising the ``tools`` argument) and :mod:`.schema_values` (typing GLM's
untyped argument values with the tool's JSON schema).

Every message may hold several calls. Parsing never raises on model output: a malformed call
becomes a :class:`ToolCallError` that the agent loop returns to the model as an observation.
"""

from glmkit.agent.formats.base import (
    TOOL_CALL_FORMATS,
    ParsedMessage,
    ToolCall,
    ToolCallError,
    ToolCallFormat,
    get_tool_call_format,
    message_text,
)
from glmkit.agent.formats.glm45 import (
    ARG_KEY_CLOSE,
    ARG_KEY_OPEN,
    ARG_VALUE_CLOSE,
    ARG_VALUE_OPEN,
    Glm45ToolCallFormat,
)
from glmkit.agent.formats.hermes import QWEN25_DEFAULT_SYSTEM, HermesToolCallFormat
from glmkit.agent.formats.openai import OpenAIToolCallFormat
from glmkit.agent.formats.schema_values import (
    coerce_arguments,
    coerce_value,
    decode_glm_value,
    encode_glm_value,
    schema_types,
)
from glmkit.agent.formats.text import (
    THINK_CLOSE,
    THINK_OPEN,
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    TextToolCallFormat,
    think_spans,
)
from glmkit.agent.formats.tool_schemas import openai_tool_schemas, tool_parameter_schemas

__all__ = [
    "ARG_KEY_CLOSE",
    "ARG_KEY_OPEN",
    "ARG_VALUE_CLOSE",
    "ARG_VALUE_OPEN",
    "QWEN25_DEFAULT_SYSTEM",
    "THINK_CLOSE",
    "THINK_OPEN",
    "TOOL_CALL_CLOSE",
    "TOOL_CALL_FORMATS",
    "TOOL_CALL_OPEN",
    "Glm45ToolCallFormat",
    "HermesToolCallFormat",
    "OpenAIToolCallFormat",
    "ParsedMessage",
    "TextToolCallFormat",
    "ToolCall",
    "ToolCallError",
    "ToolCallFormat",
    "coerce_arguments",
    "coerce_value",
    "decode_glm_value",
    "encode_glm_value",
    "get_tool_call_format",
    "message_text",
    "openai_tool_schemas",
    "schema_types",
    "think_spans",
    "tool_parameter_schemas",
]
