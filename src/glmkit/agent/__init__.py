"""Agent frameworks over the glmkit tool chain (GLM-5V-Turbo report sections 3.2 and 3.5).

- :mod:`~glmkit.agent.formats`: tool-call formats (``openai``, ``hermes``, ``glm45``), parse and render;
- :mod:`~glmkit.agent.models`: the :class:`ChatModel` protocol and its adapters (OpenAI-compatible
  endpoints, local transformers LMs);
- :mod:`~glmkit.agent.turns`: the turn logic without a transport (:func:`take_turn`: one assistant
  reply -> parsed calls, tool observations, episode end), shared by the loop and RL rollouts;
- :mod:`~glmkit.agent.loop`: the multi-turn :class:`AgentLoop` over a chat model;
- :mod:`~glmkit.agent.context`: image-history policies for long multimodal trajectories;
- :mod:`~glmkit.agent.trajectory`: the JSONL trajectory log;
- :mod:`~glmkit.agent.mcp_server` and :mod:`~glmkit.agent.skills` (imported on demand): the tools
  over MCP and as agent skill folders.

Nothing here imports Lightning; torch and transformers are imported only by the transformers adapter.
"""

from glmkit.agent.client import (
    ChatClientError,
    ChatCompletion,
    OpenAIChatClient,
    image_part,
    image_to_data_url,
)
from glmkit.agent.context import (
    CONTEXT_POLICIES,
    ContextPolicy,
    ImageWindowPolicy,
    KeepAllImages,
    get_context_policy,
    image_ref,
)
from glmkit.agent.formats import (
    TOOL_CALL_FORMATS,
    Glm45ToolCallFormat,
    HermesToolCallFormat,
    OpenAIToolCallFormat,
    ParsedMessage,
    ToolCall,
    ToolCallError,
    ToolCallFormat,
    get_tool_call_format,
)
from glmkit.agent.loop import AgentLoop, AgentResult
from glmkit.agent.models import (
    CHAT_MODELS,
    ChatModel,
    OpenAIChatModel,
    TemplateSupport,
    TextOnlyServerWarning,
    TransformersChatModel,
    probe_template,
)
from glmkit.agent.trajectory import TrajectoryLogger, read_trajectory
from glmkit.agent.turns import CallOutcome, Turn, initial_messages, take_turn

__all__ = [
    "CHAT_MODELS",
    "CONTEXT_POLICIES",
    "TOOL_CALL_FORMATS",
    "AgentLoop",
    "AgentResult",
    "CallOutcome",
    "ChatClientError",
    "ChatCompletion",
    "ChatModel",
    "ContextPolicy",
    "Glm45ToolCallFormat",
    "HermesToolCallFormat",
    "ImageWindowPolicy",
    "KeepAllImages",
    "OpenAIChatClient",
    "OpenAIChatModel",
    "OpenAIToolCallFormat",
    "ParsedMessage",
    "ToolCall",
    "ToolCallError",
    "ToolCallFormat",
    "TemplateSupport",
    "TextOnlyServerWarning",
    "TrajectoryLogger",
    "TransformersChatModel",
    "Turn",
    "get_context_policy",
    "get_tool_call_format",
    "image_part",
    "image_ref",
    "image_to_data_url",
    "initial_messages",
    "probe_template",
    "read_trajectory",
    "take_turn",
]
