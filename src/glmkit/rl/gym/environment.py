"""One environment interface for single-step and multi-step tasks (GLM-5V-Turbo report section 2.3).

The report's RL Gym serves both kinds of task through one interface:

- **single-step** (prompt -> response -> reward): :meth:`Environment.reset` opens the episode with
  the question and its images; the first :meth:`Environment.step` takes the response and ends it;
- **multi-step**: the policy acts, the environment answers with observations that may hold images
  (tool results: a crop, a new screenshot), until the policy gives a final answer or the turn
  limit is reached.

:class:`TaskEnvironment` implements it for task categories. Multi-step episodes run on the agent's
transport-free turn logic (:func:`glmkit.agent.turns.initial_messages` stores the question images in
the episode's tool context as ``img_0``, ...; :func:`glmkit.agent.turns.take_turn` parses each
reply's calls in the configured tool-call format, runs them and builds the observation messages),
so a policy sees the same conversation in RL as in the agent loop and in evaluation. When the
episode ends, the final answer is scored by the environment's reward (the reward system, or any
object with ``score(sample, response, metadata)``); an asynchronous caller leaves ``reward`` unset
and scores :attr:`Episode.response` with ``score_async`` itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from glmkit.agent.formats import get_tool_call_format, message_text
from glmkit.agent.turns import initial_messages, take_turn
from glmkit.registry import declare
from glmkit.rl.gym.category import TaskCategory
from glmkit.rl.gym.source import sample_from_record
from glmkit.scoring import Sample
from glmkit.tools.base import ToolContext

if TYPE_CHECKING:
    from PIL import Image

    from glmkit.agent.formats import ToolCallFormat
    from glmkit.tools.base import Tool

EndReason = Literal["answer", "max_turns"]
Reply = str | Mapping[str, Any]
"""A policy's reply: its text, or its assistant message (``content`` and/or native ``tool_calls``)."""
Policy = Callable[[list[dict[str, Any]]], Reply]
"""A policy maps the conversation so far (canonical messages, images as PIL parts) to a reply."""


@runtime_checkable
class SyncReward(Protocol):
    """What scores a finished episode: the reward system's ``score``, or any object with it."""

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Any:
        """A number, or an object / mapping with ``reward`` (see :func:`glmkit.rl.rollout.reward_value`)."""
        ...


@dataclass
class StepResult:
    """What the environment answers to one reply.

    Args:
        observations: messages to append after the reply (tool results, then one user message with
            the images the tools returned); empty when the episode ended.
        done: the episode ended (a final answer, or the turn limit).
        reward: the episode's reward when it ended and the environment has a reward, else ``None``.
        info: ``turn``, ``end_reason``, and per turn ``tool_calls``, ``parse_errors``,
            ``tool_errors``; on the last step also ``reward_result`` and ``reward_failure``.
    """

    observations: list[dict[str, Any]]
    done: bool
    reward: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Episode:
    """A finished (or running) episode: what a reward, a log or a trainer needs.

    Args:
        sample: the task's sample, with its ``source`` tag.
        messages: the whole conversation (opening messages, replies, observations).
        response: the final answer (``""`` when the turn limit ended the episode without one).
        turns: policy replies.
        end_reason: ``"answer"`` or ``"max_turns"`` (``None`` while running).
        tool_calls: executed calls per tool.
        parse_errors / tool_errors: malformed calls, and executed calls whose tool reported an error.
        reward: the reward (``None`` without a reward or while running; NaN when excluded).
        reward_result: what the reward returned (the reward system's breakdown).
    """

    sample: Sample
    messages: list[dict[str, Any]]
    response: str = ""
    turns: int = 0
    end_reason: EndReason | None = None
    tool_calls: dict[str, int] = field(default_factory=dict)
    parse_errors: int = 0
    tool_errors: int = 0
    reward: float | None = None
    reward_result: Any = None

    @property
    def done(self) -> bool:
        """True once the episode ended."""
        return self.end_reason is not None

    def metadata(self) -> dict[str, Any]:
        """What the reward is told about how the response was produced."""
        return {
            "source": self.sample.source,
            "category": self.sample.category,
            "turns": self.turns,
            "end_reason": self.end_reason,
            "tool_calls": dict(self.tool_calls),
            "parse_errors": self.parse_errors,
            "tool_errors": self.tool_errors,
        }


class Environment(ABC):
    """The gym interface: one episode at a time (module docstring)."""

    @abstractmethod
    def reset(self, task: Any) -> list[dict[str, Any]]:
        """Start an episode on ``task``; returns the opening messages."""

    @abstractmethod
    def step(self, reply: Reply, *, finish_reason: str | None = None) -> StepResult:
        """Answer one policy reply (``finish_reason="length"``: it was cut off, its calls are refused)."""

    @property
    @abstractmethod
    def episode(self) -> Episode:
        """The current episode."""


# Declared after Environment: every member is an Environment subclass.
ENVIRONMENTS = declare(
    "environments", "RL gym environments (reset -> messages, step -> observations)", base=Environment
)


@ENVIRONMENTS.register("task")
class TaskEnvironment(Environment):
    """Episodes on the samples of task categories, single- or multi-step.

    A category without tools is single-step: the first reply is the response and ends the episode.
    A category with tools is multi-step: each reply goes through
    :func:`~glmkit.agent.turns.take_turn` with the category's fresh tools for the episode; a reply
    without calls is the final answer; after ``max_turns`` replies the episode ends without one.

    Args:
        categories: the categories whose samples :meth:`reset` accepts (a sample finds its
            category by its ``source``, else by its ``category`` name).
        tool_format: the tool-call format replies are written in (``hermes``, ``glm45``, ``openai``).
        reward: scores the final answer when an episode ends (``score(sample, response, metadata)``).
        system_prompt: a system message opening every episode.
        max_turns: overrides the turn limit of every multi-step category (a single-step one
            always ends at its first reply).
    """

    def __init__(
        self,
        categories: TaskCategory | Sequence[TaskCategory],
        tool_format: str | ToolCallFormat = "hermes",
        reward: SyncReward | None = None,
        system_prompt: str | None = None,
        max_turns: int | None = None,
    ) -> None:
        cats = [categories] if isinstance(categories, TaskCategory) else list(categories)
        if not cats:
            raise ValueError("TaskEnvironment needs at least one task category")
        for cat in cats:
            if not isinstance(cat, TaskCategory):
                raise TypeError(f"categories must be TaskCategory instances, got {type(cat).__name__}")
        self.by_source: dict[str, TaskCategory] = {}
        for cat in cats:
            if cat.source in self.by_source:
                raise ValueError(
                    f"two categories use the source name {cat.source!r}; give one of them source=..."
                )
            self.by_source[cat.source] = cat
        self.categories = cats
        self.tool_format = get_tool_call_format(tool_format)
        if reward is not None and not isinstance(reward, SyncReward):
            raise TypeError(
                f"reward must have score(sample, response, metadata) (a RewardSystem), got {type(reward).__name__}"
            )
        self.reward = reward
        self.system_prompt = system_prompt
        if max_turns is not None and (not isinstance(max_turns, int) or max_turns < 1):
            raise ValueError(f"max_turns must be an int >= 1 or None, got {max_turns!r}")
        self.max_turns = max_turns
        self._episode: Episode | None = None
        self.category: TaskCategory | None = None
        self.images: list[Image.Image] = []
        self.tools: dict[str, Tool] = {}
        self.context = ToolContext()

    # -- the interface ------------------------------------------------------------------------------

    def reset(self, task: int | Mapping[str, Any] | Sample) -> list[dict[str, Any]]:
        """Start an episode and return its opening messages.

        Args:
            task: an index (with a single category), a task record (from
                :class:`~glmkit.rl.gym.source.TaskSource` or a :class:`~glmkit.data.Mixture` of
                them), or a :class:`~glmkit.scoring.Sample` (its images are read from disk).
        """
        if isinstance(task, Sample):
            sample, images = task, task.load_images()
            category = self._category_of(sample)
        elif isinstance(task, Mapping):
            sample = sample_from_record(task)
            images = list(task.get("images") or sample.load_images())
            category = self._category_of(sample)
        elif isinstance(task, int) and not isinstance(task, bool):
            if len(self.categories) != 1:
                raise ValueError(
                    f"reset({task}) with {len(self.categories)} categories is ambiguous; pass a record or a "
                    "Sample (an index names a sample only with a single category)"
                )
            category = self.categories[0]
            record = category.record(task)
            sample, images = record["sample"], record["images"]
        else:
            raise TypeError(f"reset takes an index, a task record or a Sample, got {type(task).__name__}")
        self.category = category
        self.images = images
        self.context = ToolContext()
        self.tools = dict(category.tools(sample))
        messages = initial_messages(sample.question, images, self.context, system_prompt=self.system_prompt)
        self._episode = Episode(sample=sample, messages=messages)
        return [dict(m) for m in messages]

    def step(self, reply: Reply, *, finish_reason: str | None = None) -> StepResult:
        """Answer one reply (class docstring); the reward is computed when the episode ends."""
        episode = self.episode
        if episode.done:
            raise RuntimeError(f"the episode on {episode.sample.id!r} has ended; call reset() first")
        episode.turns += 1
        info: dict[str, Any] = {"turn": episode.turns}
        if not self.tools:  # single-step: the reply is the response
            message = {"role": "assistant", "content": reply} if isinstance(reply, str) else dict(reply)
            episode.messages.append({**message, "role": "assistant"})
            return self._end(message_text(message), "answer", info)
        turn = take_turn(
            reply, self.tool_format, self.tools, self.context, turn=episode.turns, finish_reason=finish_reason
        )
        episode.messages.append(turn.message)
        calls = Counter(c.item.name for c in turn.calls if c.executed)
        for name, n in calls.items():
            episode.tool_calls[name] = episode.tool_calls.get(name, 0) + n
        episode.parse_errors += turn.parse_errors
        episode.tool_errors += turn.tool_errors
        info.update(tool_calls=dict(calls), parse_errors=turn.parse_errors, tool_errors=turn.tool_errors)
        if turn.done:
            return self._end(turn.final_answer or "", "answer", info)
        if episode.turns >= self.turn_limit:
            return self._end("", "max_turns", info)
        episode.messages.extend(turn.observations)
        return StepResult([dict(m) for m in turn.observations], False, None, info)

    @property
    def episode(self) -> Episode:
        """The current episode (raises before the first :meth:`reset`)."""
        if self._episode is None:
            raise RuntimeError("no episode yet; call reset(task) first")
        return self._episode

    # -- helpers ------------------------------------------------------------------------------------

    @property
    def turn_limit(self) -> int:
        """The current episode's turn limit."""
        if self.max_turns is not None:
            return self.max_turns
        return self.category.max_turns if self.category is not None else 1

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The conversation so far (what a policy is given)."""
        return self.episode.messages

    def tool_schemas(self) -> list[dict[str, Any]]:
        """The OpenAI function schemas of the episode's tools (for a native-format request, or
        ``tool_format.prepare_messages(messages, tools)`` for a text format)."""
        return [tool.schema() for tool in self.tools.values()]

    def _category_of(self, sample: Sample) -> TaskCategory:
        if sample.source in self.by_source:
            return self.by_source[sample.source]
        named = [c for c in self.categories if c.name == sample.category]
        if len(named) == 1:
            return named[0]
        known = ", ".join(f"{c.source} ({c.name})" for c in self.categories)
        raise KeyError(
            f"sample {sample.id!r} (source {sample.source!r}, category {sample.category!r}) belongs to none of "
            f"this environment's categories{' (several share its category name)' if named else ''}: {known}"
        )

    def _end(self, response: str, reason: EndReason, info: dict[str, Any]) -> StepResult:
        episode = self.episode
        episode.response, episode.end_reason = response, reason
        info["end_reason"] = reason
        if self.reward is not None:
            from glmkit.rl.rollout.reward import reward_value

            result = self.reward.score(episode.sample, response, episode.metadata())
            episode.reward, failure = reward_value(result)
            episode.reward_result = result
            info.update(reward_result=result, reward_failure=failure)
        return StepResult([], True, episode.reward, info)


def run_episode(env: Environment, task: Any, policy: Policy) -> Episode:
    """Drive ``policy`` through one episode of ``env`` on ``task`` and return the episode.

    The policy gets a copy of the conversation before each reply; the environment's turn limit
    ends a policy that never answers.
    """
    env.reset(task)
    while True:
        reply = policy(list(env.episode.messages))
        if env.step(reply).done:
            return env.episode
