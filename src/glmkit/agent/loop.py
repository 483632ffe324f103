"""The multi-turn agent loop: ask a chat model, answer its tool calls, repeat (report section 3.5).

Each turn sends the history (through the context policy) to a :class:`~glmkit.agent.models.ChatModel`
and hands the reply to :func:`glmkit.agent.turns.take_turn`, the transport-free turn logic (parse
the calls with the model's tool-call format, run them, build the observation messages; see
:mod:`glmkit.agent.turns` for how calls, errors, images and cut-off replies are answered).

The run stops on a reply without calls (the final answer, or a reply the length limit cut off:
``"truncated"``, unless ``on_truncation="continue"`` asks the model to go on), when ``max_turns``
requests were made, when the summed token usage reaches ``max_tokens``, or when the model endpoint
fails; the result records which.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from glmkit.agent.client import usage_count
from glmkit.agent.context import ContextPolicy, get_context_policy
from glmkit.agent.models import ChatModel
from glmkit.agent.trajectory import TrajectoryLogger
from glmkit.agent.turns import Turn, initial_messages, take_turn, tool_parameter_schemas
from glmkit.tools import resolve_tools
from glmkit.tools.base import Tool, ToolContext

if TYPE_CHECKING:
    from PIL import Image

StopReason = Literal["answer", "truncated", "max_turns", "max_tokens", "model_error"]
#: What the loop does with a reply that the length limit cut off before any call: ``"stop"`` ends
#: the run with ``stop_reason="truncated"`` (the partial text is ``final_answer``); ``"continue"``
#: asks the model to go on with :data:`CONTINUE_PROMPT`.
OnTruncation = Literal["stop", "continue"]
CONTINUE_PROMPT = "Your reply was cut off by the length limit. Continue exactly where it stopped."
USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


@dataclass
class AgentResult:
    """The outcome of one :meth:`AgentLoop.run`.

    ``turns`` counts model replies; ``tool_calls`` counts executed calls per tool (failed runs
    included, malformed calls not: those are ``parse_errors``); ``tool_errors`` counts calls whose
    tool reported an error; ``usage`` sums the replies' token usage; ``images`` holds every image
    of the run by id; ``error`` says why the endpoint failed when ``stop_reason`` is ``model_error``;
    ``truncated`` counts replies the length limit cut off (``stop_reason == "truncated"`` when the
    last one ended the run, its partial text in ``final_answer``).
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
    truncated: int = 0
    trajectory_path: Path | None = None
    run_id: str | None = None


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
        on_truncation: a reply cut off by the length limit before any call: ``"stop"`` the run
            (``stop_reason="truncated"``) or ``"continue"`` it (see :data:`OnTruncation`).
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
        on_truncation: OnTruncation = "stop",
    ) -> None:
        if on_truncation not in ("stop", "continue"):
            raise ValueError(f"on_truncation must be 'stop' or 'continue', got {on_truncation!r}")
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
        self.on_truncation = on_truncation

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
        messages = initial_messages(question, images, context, system_prompt=self.system_prompt)
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
            step = take_turn(
                completion.message,
                fmt,
                self.tools,
                context,
                turn=turn,
                finish_reason=completion.finish_reason,
                usage=completion.usage,
                logger=logger,
            )
            messages.append(step.message)
            stats.add(step)
            if step.done and step.end_reason == "truncated" and self.on_truncation == "continue":
                messages.append({"role": "user", "content": CONTINUE_PROMPT})
                continue
            if step.done:
                final_answer = step.final_answer
                stop = step.end_reason or "answer"
                break
            messages.extend(step.observations)

        # The stop event records the same outcome the result holds.
        outcome: dict[str, Any] = {
            "turns": turn,
            "final_answer": final_answer,
            "tool_calls": dict(stats.calls),
            "usage": dict(usage),
            "parse_errors": stats.parse_errors,
            "tool_errors": stats.tool_errors,
            "error": error,
            "truncated": stats.truncated,
        }
        if logger:
            logger.log("stop", reason=stop, **outcome)
        return AgentResult(
            stop_reason=stop,
            messages=messages,
            images=dict(context.images),
            trajectory_path=path,
            run_id=logger.run_id if logger else None,
            **outcome,
        )

    def tool_parameter_schemas(self) -> dict[str, dict[str, Any]]:
        """Tool name -> parameters schema, as the parsers want it."""
        return tool_parameter_schemas(self.tools)


@dataclass
class _CallStats:
    calls: Counter[str] = field(default_factory=Counter)
    parse_errors: int = 0
    tool_errors: int = 0
    truncated: int = 0

    def add(self, step: Turn) -> None:
        """Count the calls of one turn."""
        self.calls.update(c.item.name for c in step.calls if c.executed and c.item.name)
        self.parse_errors += step.parse_errors
        self.tool_errors += step.tool_errors
        self.truncated += step.truncated
