"""The turns of a tool-using episode, without a transport (report section 3.5).

Whoever produces the assistant's replies (:class:`~glmkit.agent.loop.AgentLoop` over a chat model,
an RL rollout engine over its own generation) shares this logic, so the model sees the same
conversation either way:

- :func:`initial_messages` opens the episode: question images are stored in the tool context as
  ``img_0``, ``img_1``, ... and each is preceded in the user message by a text part naming its id,
  so the model can pass the id to a tool;
- :func:`take_turn` answers one assistant reply (text and/or native ``tool_calls``): it parses the
  calls with the tool-call format, runs the well-formed ones and returns the observation messages
  and whether the episode ended.

Every call, well-formed or not, is answered by one ``role: tool`` message carrying its
``tool_call_id`` and text (the tool's result, the tool's error, or the parse error), so the model
sees its mistake and can retry instead of the episode stopping. Images returned by tools go in one
``role: user`` message after the tool messages, as image parts labelled with their ids. Images never
go in ``role: tool``: Chat Completions endpoints reject them there (vLLM#43203) or ignore them
(openai-openapi#523). A reply cut off by the length limit (``finish_reason == "length"``) has its
calls refused rather than run with truncated arguments (hermes-agent#7680). A reply without calls
ends the episode: the final answer, or, cut off by the length limit, a truncated one
(``end_reason="truncated"``) that the caller may continue. A call the parser accepted leniently
(a coerced value, a repeated argument) has its notes put before the tool's result.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from glmkit.agent.context import image_ref
from glmkit.agent.formats import ToolCall, ToolCallError, ToolCallFormat, get_tool_call_format
from glmkit.tools.base import Tool, ToolContext, ToolResult

if TYPE_CHECKING:
    from PIL import Image

    from glmkit.agent.formats import ParsedMessage
    from glmkit.agent.trajectory import TrajectoryLogger

#: Why a turn ended the episode: a reply without calls (``"answer"``), or one without calls that the
#: length limit cut off (``"truncated"``: its text may be an unfinished answer, and the caller chooses
#: to continue or stop). Budgets (turns, tokens) are the caller's to enforce.
EndReason = Literal["answer", "truncated"]

TRUNCATED_CALL = (
    "Error: the reply was cut off by the length limit, so this tool call may be "
    "incomplete and was not executed. Make the call again, shorter."
)


@dataclass
class CallOutcome:
    """One call of a reply and what became of it.

    ``result`` is ``None`` when the call was not executed: it was malformed (``item`` is a
    :class:`~glmkit.agent.formats.ToolCallError`) or the reply was cut off by the length limit.
    ``observation`` is the text of the ``role: tool`` message that answers it.
    """

    id: str
    item: ToolCall | ToolCallError
    observation: str
    result: ToolResult | None = None
    seconds: float = 0.0

    @property
    def executed(self) -> bool:
        """True when the tool ran (its result may still be an error)."""
        return self.result is not None


@dataclass
class Turn:
    """What :func:`take_turn` made of one assistant reply.

    ``message`` is the reply as it goes into the history (role ``assistant``, native call ids filled
    in); ``observations`` are the messages to append after it (empty when the episode ended).
    ``truncated`` is true when the length limit cut the reply off.
    """

    message: dict[str, Any]
    parsed: ParsedMessage
    calls: list[CallOutcome] = field(default_factory=list)
    observations: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    end_reason: EndReason | None = None
    final_answer: str | None = None
    finish_reason: str | None = None

    @property
    def truncated(self) -> bool:
        """The length limit cut the reply off (``finish_reason == "length"``)."""
        return self.finish_reason == "length"

    @property
    def parse_errors(self) -> int:
        """Calls not executed: malformed, or cut off by the length limit."""
        return sum(not c.executed for c in self.calls)

    @property
    def tool_errors(self) -> int:
        """Executed calls whose tool reported an error."""
        return sum(c.result is not None and not c.result.ok for c in self.calls)

    @property
    def new_images(self) -> dict[str, Image.Image]:
        """The images the tools returned in this turn, by id."""
        return {
            image_id: image
            for c in self.calls
            if c.result is not None
            for image_id, image in zip(c.result.image_ids, c.result.images, strict=False)
        }


def tool_parameter_schemas(tools: Mapping[str, Tool]) -> dict[str, dict[str, Any]]:
    """Tool name -> parameters schema, as the tool-call parsers want it."""
    return {name: dict(tool.parameters) for name, tool in tools.items()}


def initial_messages(
    question: str | Sequence[dict[str, Any]],
    images: Sequence[Image.Image],
    context: ToolContext,
    *,
    system_prompt: str | None = None,
) -> list[dict[str, Any]]:
    """The opening messages of an episode: ``question`` (a string, or messages to continue) about ``images``.

    String questions: each image is stored in ``context`` under a new id and shown after a text part
    naming it. Message lists: the ``image_id`` of every canonical image part
    (:func:`~glmkit.agent.context.image_ref`) is made known to the tools.
    """
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    if isinstance(question, str):
        parts: list[dict[str, Any]] = []
        for image in images:
            image_id = context.add_image(image)
            parts += [{"type": "text", "text": f"{image_id}:"}, image_ref(image_id, image)]
        parts.append({"type": "text", "text": question})
        messages.append({"role": "user", "content": parts if images else question})
        return messages
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


def take_turn(
    reply: str | Mapping[str, Any],
    tool_format: str | ToolCallFormat,
    tools: Mapping[str, Tool],
    context: ToolContext,
    *,
    turn: int = 1,
    finish_reason: str | None = None,
    usage: Mapping[str, Any] | None = None,
    logger: TrajectoryLogger | None = None,
) -> Turn:
    """Answer one assistant reply: parse its calls, run them, build the observations, decide the end.

    Args:
        reply: the assistant's text, or its message (``content`` and/or native ``tool_calls``).
        tool_format: the format the reply's calls are written in (a registered name or instance).
        tools: the tools by name (see :func:`glmkit.tools.resolve_tools`); a call to another name is
            answered with a parse error.
        context: the episode's tool context (images by id, scratch directory); tools add to it.
        turn: the reply's number in the episode (1-based), used for missing call ids
            (``call_<turn>_<index>``) and the log.
        finish_reason: the generation's finish reason; ``"length"`` refuses every call, and a cut-off
            reply without calls ends the episode with ``end_reason="truncated"``.
        usage: the reply's token usage, for the log only.
        logger: a trajectory log that receives the ``assistant``, ``parse_error``, ``tool_call`` and
            ``tool_result`` events, in that order.
    """
    fmt = get_tool_call_format(tool_format)
    message = _assistant_message({"content": reply} if isinstance(reply, str) else reply)
    parsed = fmt.parse_message(message, tool_parameter_schemas(tools))
    _fill_call_ids(message, parsed.items, turn)
    if logger:
        logger.log("assistant", turn=turn, message=message, finish_reason=finish_reason, usage=usage)
    outcome = Turn(message=message, parsed=parsed, finish_reason=finish_reason)
    if not parsed.items:
        outcome.done, outcome.final_answer = True, parsed.content
        outcome.end_reason = "truncated" if outcome.truncated else "answer"
        return outcome
    truncated = finish_reason == "length"
    for index, item in enumerate(parsed.items):
        call_id = item.id or f"call_{turn}_{index}"
        outcome.calls.append(_answer(item, call_id, truncated, tools, context, turn, logger))
    outcome.observations = [
        {"role": "tool", "tool_call_id": c.id, "content": c.observation} for c in outcome.calls
    ]
    images = [
        (image_id, image, f"{c.item.name} ({c.id})")
        for c in outcome.calls
        if c.result is not None
        for image_id, image in zip(c.result.image_ids, c.result.images, strict=False)
    ]
    if images:
        outcome.observations.append(_image_message(images))
    return outcome


def _answer(
    item: ToolCall | ToolCallError,
    call_id: str,
    truncated: bool,
    tools: Mapping[str, Tool],
    context: ToolContext,
    turn: int,
    logger: TrajectoryLogger | None,
) -> CallOutcome:
    """Run one well-formed call, or explain why it was not run."""
    if truncated:
        if logger:
            logger.log("parse_error", turn=turn, id=call_id, reason="finish_reason=length", raw="")
        return CallOutcome(call_id, item, TRUNCATED_CALL)
    if isinstance(item, ToolCallError):
        if logger:
            logger.log("parse_error", turn=turn, id=call_id, reason=item.reason, raw=item.raw)
        return CallOutcome(call_id, item, item.observation())
    if logger:
        logger.log("tool_call", turn=turn, id=call_id, name=item.name, arguments=item.arguments)
    start = time.perf_counter()
    result = tools[item.name](item.arguments, context)
    seconds = time.perf_counter() - start
    if logger:
        paths = [
            logger.save_image(i, img, source=f"tool:{item.name}")
            for i, img in zip(result.image_ids, result.images, strict=False)
        ]
        logger.log(
            "tool_result",
            turn=turn,
            id=call_id,
            name=item.name,
            text=result.text,
            error=result.error,
            image_ids=list(result.image_ids),
            image_paths=paths,
            files=[str(f) for f in result.files],
            data=result.data,
            seconds=round(seconds, 4),
        )
    observation = result.to_text()
    if item.notes:  # what the parser accepted leniently, so the model can write it exactly next time
        observation = "\n".join(f"Note: {note}" for note in item.notes) + "\n" + observation
    return CallOutcome(call_id, item, observation, result, seconds)


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
