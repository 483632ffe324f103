"""The multi-turn agent loop: ask the model, run its tool calls, feed the results back (report section 3.5).

Each turn sends the history (through the context policy) to a :class:`~glmkit.agent.models.ChatModel`,
parses the reply's calls with the model's tool-call format and runs them:

- every call, well-formed or not, is answered by one ``role: tool`` message carrying its
  ``tool_call_id`` and text (the tool's result, the tool's error, or the parse error), so the
  model sees its mistake and can retry instead of the loop stopping;
- images returned by tools go in one ``role: user`` message after the tool messages, as image
  parts labelled with their ids. Images never go in ``role: tool``: Chat Completions endpoints
  reject them there (vLLM#43203) or ignore them (openai-openapi#523);
- a reply cut off by the length limit (``finish_reason == "length"``) has its calls refused
  rather than run with truncated arguments (hermes-agent#7680).

The run stops on a reply without calls (the final answer), when ``max_turns`` requests were made,
when the summed token usage reaches ``max_tokens``, or when the model endpoint fails; the result
records which.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from glmkit.agent.client import usage_count
from glmkit.agent.context import ContextPolicy, get_context_policy, image_ref
from glmkit.agent.formats import ToolCall, ToolCallError
from glmkit.agent.models import ChatModel
from glmkit.agent.trajectory import TrajectoryLogger
from glmkit.tools.base import Tool, ToolContext, ToolResult

if TYPE_CHECKING:
    from PIL import Image

StopReason = Literal["answer", "max_turns", "max_tokens", "model_error"]
USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


@dataclass
class AgentResult:
    """The outcome of one :meth:`AgentLoop.run`.

    ``turns`` counts model replies; ``tool_calls`` counts executed calls per tool (failed runs
    included, malformed calls not: those are ``parse_errors``); ``tool_errors`` counts calls whose
    tool reported an error; ``usage`` sums the replies' token usage; ``images`` holds every image
    of the run by id; ``error`` says why the endpoint failed when ``stop_reason`` is ``model_error``.
    """

    final_answer: str | None
    stop_reason: StopReason
    messages: list[dict[str, Any]]
    turns: int
    tool_calls: dict[str, int] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    parse_errors: int = 0
    tool_errors: int = 0
    images: dict[str, Image.Image] = field(default_factory=dict)
    error: str | None = None
    trajectory_path: Path | None = None
    run_id: str | None = None


def resolve_tools(tools: Sequence[Tool | str] | Mapping[str, Tool]) -> dict[str, Tool]:
    """Tool instances by name; a string is looked up in glmkit's tool registry."""
    items = list(tools.values()) if isinstance(tools, Mapping) else list(tools)
    out: dict[str, Tool] = {}
    for item in items:
        tool = _lookup_tool(item) if isinstance(item, str) else item
        if tool.name in out:
            raise ValueError(f"two tools are named {tool.name!r}")
        out[tool.name] = tool
    return out


def _lookup_tool(name: str) -> Tool:
    import importlib

    module = importlib.import_module("glmkit.tools")  # registers the built-in tools
    get_tool = getattr(module, "get_tool", None)
    if get_tool is not None:
        found = get_tool(name)
    else:
        from glmkit.tools.base import TOOLS

        found = TOOLS.get(name)
    return found() if isinstance(found, type) else found


class AgentLoop:
    """Run a model with tools until it answers or a budget runs out.

    Args:
        model: a :class:`~glmkit.agent.models.ChatModel`.
        tools: tool instances or registered tool names.
        max_turns: most model requests per run.
        max_tokens: stop once the run's summed ``usage[token_budget_field]`` reaches this (``None``: no limit).
        token_budget_field: ``"total_tokens"`` (prompt + completion of every request, i.e. cost) or
            ``"completion_tokens"`` (tokens generated).
        context_policy: applied to the history before each request (default: send everything);
            a registered name such as ``"image_window"`` or an instance.
        trajectory_path: JSONL file that receives the run's events (appended; images beside it).
        system_prompt: optional system message put first.
        tool_context: shared :class:`~glmkit.tools.base.ToolContext` (a fresh one per run by default).
    """

    def __init__(
        self,
        model: ChatModel,
        tools: Sequence[Tool | str] | Mapping[str, Tool] = (),
        *,
        max_turns: int = 10,
        max_tokens: int | None = None,
        token_budget_field: Literal["total_tokens", "completion_tokens"] = "total_tokens",
        context_policy: str | ContextPolicy | None = None,
        trajectory_path: str | Path | None = None,
        system_prompt: str | None = None,
        tool_context: ToolContext | None = None,
    ) -> None:
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        if token_budget_field not in ("total_tokens", "completion_tokens"):
            raise ValueError(
                f"token_budget_field must be total_tokens or completion_tokens, got {token_budget_field!r}"
            )
        self.model = model
        self.tools = resolve_tools(tools)
        self.max_turns = max_turns
        self.max_tokens = max_tokens
        self.token_budget_field = token_budget_field
        self.context_policy = get_context_policy(context_policy)
        self.trajectory_path = Path(trajectory_path) if trajectory_path is not None else None
        self.system_prompt = system_prompt
        self.tool_context = tool_context

    @property
    def tool_schemas(self) -> list[dict[str, Any]]:
        """The OpenAI function schemas of the tools."""
        return [t.schema() for t in self.tools.values()]

    def run(
        self,
        question: str | Sequence[dict[str, Any]],
        images: Sequence[Image.Image] = (),
        *,
        trajectory_path: str | Path | None = None,
    ) -> AgentResult:
        """Answer ``question`` (a string, or a list of messages to continue) about ``images``.

        Question images are stored as ``img_0``, ``img_1``, ... in the tool context, and each is
        preceded in the user message by a text part naming its id, so the model can pass the id to
        a tool.
        """
        context = self.tool_context if self.tool_context is not None else ToolContext()
        path = Path(trajectory_path) if trajectory_path is not None else self.trajectory_path
        logger = TrajectoryLogger(path) if path is not None else None
        messages = self._initial_messages(question, images, context)
        schemas = self.tool_schemas
        fmt = self.model.tool_format
        if logger:
            logger.log(
                "start",
                tools=list(self.tools),
                tool_format=fmt.name,
                model=type(self.model).__name__,
                max_turns=self.max_turns,
                max_tokens=self.max_tokens,
                token_budget_field=self.token_budget_field,
            )
            for image_id, image in context.images.items():
                logger.save_image(image_id, image, source="question")

        usage: Counter[str] = Counter(dict.fromkeys(USAGE_KEYS, 0))
        stats = _CallStats()
        final_answer: str | None = None
        error: str | None = None
        stop: StopReason = "max_turns"
        turn = 0
        while True:
            if self.max_tokens is not None and usage[self.token_budget_field] >= self.max_tokens:
                stop = "max_tokens"
                break
            if turn >= self.max_turns:
                stop = "max_turns"
                break
            turn += 1
            request = self.context_policy.apply(messages)
            if logger:
                logger.log("request", turn=turn, messages=logger.sanitize_messages(request))
            try:
                completion = self.model.chat(request, schemas)
                if not isinstance(completion.message, Mapping):
                    raise TypeError(
                        f"{type(self.model).__name__}.chat returned a message of type "
                        f"{type(completion.message).__name__}; expected a dict"
                    )
            except Exception as exc:  # an endpoint failure ends the run; the result says why
                error = f"{type(exc).__name__}: {exc}"
                stop = "model_error"
                turn -= 1
                break
            reported = completion.usage if isinstance(completion.usage, Mapping) else {}
            counts = {key: usage_count(reported.get(key)) for key in USAGE_KEYS}
            if reported.get("total_tokens") is None:  # some servers report only the two parts
                counts["total_tokens"] = counts["prompt_tokens"] + counts["completion_tokens"]
            usage.update(counts)
            message = _assistant_message(completion.message)
            parsed = fmt.parse_message(message, self.tool_parameter_schemas())
            _fill_call_ids(message, parsed.items, turn)
            messages.append(message)
            if logger:
                logger.log(
                    "assistant",
                    turn=turn,
                    message=message,
                    finish_reason=completion.finish_reason,
                    usage=completion.usage,
                )
            if not parsed.items:
                final_answer = parsed.content
                stop = "answer"
                break

            messages.extend(
                self._respond(
                    parsed.items, completion.finish_reason == "length", turn, context, logger, stats
                )
            )

        if logger:
            logger.log(
                "stop",
                reason=stop,
                turns=turn,
                final_answer=final_answer,
                tool_calls=dict(stats.calls),
                usage=dict(usage),
                parse_errors=stats.parse_errors,
                tool_errors=stats.tool_errors,
                error=error,
            )
        return AgentResult(
            final_answer=final_answer,
            stop_reason=stop,
            messages=messages,
            turns=turn,
            tool_calls=dict(stats.calls),
            usage=dict(usage),
            parse_errors=stats.parse_errors,
            tool_errors=stats.tool_errors,
            images=dict(context.images),
            error=error,
            trajectory_path=path,
            run_id=logger.run_id if logger else None,
        )

    def tool_parameter_schemas(self) -> dict[str, dict[str, Any]]:
        """Tool name -> parameters schema, as the parsers want it."""
        return {name: dict(tool.parameters) for name, tool in self.tools.items()}

    def _initial_messages(
        self, question: str | Sequence[dict[str, Any]], images: Sequence[Image.Image], context: ToolContext
    ) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        if isinstance(question, str):
            parts: list[dict[str, Any]] = []
            for image in images:
                image_id = context.add_image(image)
                parts += [{"type": "text", "text": f"{image_id}:"}, image_ref(image_id, image)]
            parts.append({"type": "text", "text": question})
            messages.append({"role": "user", "content": parts if images else question})
        else:
            if images:
                raise ValueError("pass images inside the messages when question is a list of messages")
            given = [dict(m) for m in question]
            for index, msg in enumerate(given):  # make the ids of message images known to the tools
                for part in msg.get("content") if isinstance(msg.get("content"), list) else ():
                    if not (isinstance(part, dict) and part.get("type") == "image"):
                        continue
                    image_id = part.get("image_id")
                    if not isinstance(image_id, str) or not image_id:
                        raise ValueError(
                            f"question message {index} ({msg.get('role')}) has an image part without an "
                            f"'image_id' (keys: {sorted(part)}); build image parts with image_ref(image_id, image)"
                        )
                    if part.get("image") is not None:
                        context.images.setdefault(image_id, part["image"])
            messages.extend(given)
        return messages

    def _respond(
        self,
        items: list[ToolCall | ToolCallError],
        truncated: bool,
        turn: int,
        context: ToolContext,
        logger: TrajectoryLogger | None,
        stats: _CallStats,
    ) -> list[dict[str, Any]]:
        """One ``role: tool`` message per call, then one user message with the images the tools made."""
        replies: list[dict[str, Any]] = []
        new_images: list[tuple[str, Image.Image, str]] = []
        for index, item in enumerate(items):
            call_id = item.id or f"call_{turn}_{index}"
            if truncated:
                text = (
                    "Error: the reply was cut off by the length limit, so this tool call may be "
                    "incomplete and was not executed. Make the call again, shorter."
                )
                stats.parse_errors += 1
                if logger:
                    logger.log("parse_error", turn=turn, id=call_id, reason="finish_reason=length", raw="")
            elif isinstance(item, ToolCallError):
                text = item.observation()
                stats.parse_errors += 1
                if logger:
                    logger.log("parse_error", turn=turn, id=call_id, reason=item.reason, raw=item.raw)
            else:
                stats.calls[item.name] += 1
                result = self._execute(item, call_id, turn, context, logger)
                stats.tool_errors += 0 if result.ok else 1
                text = result.to_text()
                label = f"{item.name} ({call_id})"
                pairs = zip(result.image_ids, result.images, strict=False)
                new_images.extend((image_id, image, label) for image_id, image in pairs)
            replies.append({"role": "tool", "tool_call_id": call_id, "content": text})
        if new_images:
            replies.append(_image_message(new_images))
        return replies

    def _execute(
        self, call: ToolCall, call_id: str, turn: int, context: ToolContext, logger: TrajectoryLogger | None
    ) -> ToolResult:
        if logger:
            logger.log("tool_call", turn=turn, id=call_id, name=call.name, arguments=call.arguments)
        start = time.perf_counter()
        result = self.tools[call.name](call.arguments, context)
        seconds = time.perf_counter() - start
        if logger:
            paths = [
                logger.save_image(i, img, source=f"tool:{call.name}")
                for i, img in zip(result.image_ids, result.images, strict=False)
            ]
            logger.log(
                "tool_result",
                turn=turn,
                id=call_id,
                name=call.name,
                text=result.text,
                error=result.error,
                image_ids=list(result.image_ids),
                image_paths=paths,
                files=[str(f) for f in result.files],
                data=result.data,
                seconds=round(seconds, 4),
            )
        return result


@dataclass
class _CallStats:
    calls: Counter[str] = field(default_factory=Counter)
    parse_errors: int = 0
    tool_errors: int = 0


def _assistant_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the reply; extra keys (``reasoning_content``, ...) stay for the log, the wire drops them."""
    out = {**message, "role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        out["tool_calls"] = [dict(c) if isinstance(c, Mapping) else c for c in message["tool_calls"]]
    else:
        out.pop("tool_calls", None)
    return out


def _fill_call_ids(message: dict[str, Any], items: list[ToolCall | ToolCallError], turn: int) -> None:
    """Give id-less native calls an id, in the message too, so every tool message answers a call id."""
    native = message.get("tool_calls") or []
    for index, item in enumerate(items):
        if item.id:
            continue
        item.id = f"call_{turn}_{index}"
        if index < len(native) and isinstance(native[index], dict) and not native[index].get("id"):
            native[index]["id"] = item.id


def _image_message(images: list[tuple[str, Image.Image, str]]) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "Images returned by the tools:"}]
    for image_id, image, label in images:
        parts.append({"type": "text", "text": f"{image_id} (from {label}):"})
        parts.append(image_ref(image_id, image))
    return {"role": "user", "content": parts}
