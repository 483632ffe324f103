"""Multi-step (tool-using) episodes as rollout requests: token in, token out (report section 2.3).

The report's RL Gym trains single-step and multi-step tasks jointly. A multi-step episode runs as
ONE request of the rollout scheduler, so completion callbacks, early abort, the prompt cache, group
ids, the reward system's scoring of the final answer and the metrics treat it as any sample.
:class:`EpisodeRunner` is a :class:`~.engine.RolloutEngine` around the policy's engine: a request
whose sample belongs to a multi-step category drives a
:class:`~glmkit.rl.gym.environment.TaskEnvironment` (the agent's transport-free turn logic, the
tool chain and the configured tool-call format); every other request goes to the inner engine
unchanged.

**The episode's tokens.** :class:`EpisodeBuilder` grows the sequence the trainer will see, never
decoding and tokenizing again what the policy generated:

1. the opening conversation (question images with their ids, the tools announced in the system
   message by the tool-call format) rendered by the chat template and tokenized: the prompt;
2. per turn, the token ids the policy generated (with their sampling log-probabilities), mask 1;
3. the environment's observations (tool results, then a user message with the images the tools
   returned) as tokens: the chat template's rendering of the conversation with them (and the next
   assistant opening) minus its rendering without them, tokenized with their images; mask 0.
   When the policy ended its turn with the very token the template opens the observations with
   (GLM's ``<|observation|>``), that token is the policy's and is not repeated.

The next turn generates from a :class:`~.inprocess.TokenPrompt` of all the ids so far and all the
images (the inner engine's ``generate(request, prompt=...)``). The completion's ``token_ids`` are
the response region (generated and observation tokens), its ``logprobs`` the sampling
log-probabilities (0 on observation tokens), its ``response`` the final answer (the reward scores
it), its ``metadata`` the episode's turns, tool calls, parse and tool errors, end reason and the
finish reason of each turn (the reward system and the logs see them). What the trainer needs
besides travels on the completion itself (:class:`EpisodeCompletion`: the :class:`EpisodeTrace`,
whose mask and observation images the scored sample keeps, through the prompt cache and
checkpoints), not in ``metadata``: images do not belong in reward metadata, which may cross
process boundaries. The opening conversation is rebuilt from the sample
(:meth:`EpisodeRunner.opening`), so a sample restored from a checkpoint trains as it would have.

**Endings.** The environment's turn limit ends an episode without an answer (response ``""``,
``end_reason="max_turns"``); a turn cut off by ``max_new_tokens`` has its calls refused (the
agent's turn logic) and the episode goes on, or, without calls, ends with that truncated answer
and ``finish_reason="length"``; an engine error in any turn ends the episode with
``finish_reason="error"`` and the partial episode in ``metadata`` (the scheduler retries or
reports it; it is never lost); an abort cancels the turn generating and so the whole episode.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from glmkit.agent.formats import get_tool_call_format
from glmkit.agent.formats.text import TextToolCallFormat
from glmkit.rl.gym.category import TaskCategory
from glmkit.rl.gym.environment import StepResult, TaskEnvironment
from glmkit.rl.rollout.engine import Completion, RolloutEngine, RolloutRequest
from glmkit.rl.rollout.inprocess import ChatPrompts, TokenPrompt
from glmkit.scoring import Sample


@dataclass
class EpisodeTrace:
    """An episode as the trainer sees it.

    Args:
        prompt: the opening conversation as the policy read it (tools announced), for
            :meth:`~.inprocess.ChatPrompts.teacher_forcing_batch`.
        token_ids: the response region: generated and observation tokens, in order.
        logprobs: the sampling log-probabilities of ``token_ids`` (0 on observation tokens; None
            when the engine gave none).
        mask: True on the tokens the policy generated, False on the observations'.
        images: the observations' images, in the order of their placeholders in ``token_ids``.
        messages: the whole conversation (canonical messages, images as PIL parts).
    """

    prompt: list[dict[str, Any]]
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] | None = field(default_factory=list)
    mask: list[bool] = field(default_factory=list)
    images: list[Any] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def generated_tokens(self) -> int:
        """Tokens the policy generated."""
        return sum(self.mask)


@dataclass
class EpisodeCompletion(Completion):
    """An episode's :class:`~.engine.Completion` with its :class:`EpisodeTrace`.

    :meth:`~.group.ScoredSample.from_completion` keeps :attr:`token_mask` and
    :attr:`observation_images` on the scored sample; ``metadata`` (what the reward sees) holds no
    images.

    Args:
        trace: the episode as the trainer sees it.
    """

    trace: EpisodeTrace | None = None

    @property
    def token_mask(self) -> list[bool] | None:
        """True on the ``token_ids`` the policy generated, False on the observations'."""
        return None if self.trace is None else list(self.trace.mask)

    @property
    def observation_images(self) -> list[Any]:
        """The observations' images, in the order of their placeholders in ``token_ids``."""
        return [] if self.trace is None else list(self.trace.images)


class EpisodeBuilder:
    """Runs one episode of ``env`` and grows its token sequence turn by turn (module docstring).

    Args:
        env: the environment (a fresh episode is opened by :meth:`start`).
        prompts: the policy's chat rendering and tokenization.
        stop_token_ids: ids that end a turn (the inner engine's
            :meth:`~.engine.RolloutEngine.stop_token_ids`).
    """

    def __init__(self, env: TaskEnvironment, prompts: ChatPrompts, stop_token_ids: Sequence[int]) -> None:
        fmt = env.tool_format
        if not isinstance(fmt, TextToolCallFormat):
            raise ValueError(
                f"episodes need a text tool-call format (hermes, glm45): the policy writes its calls in "
                f"its text; got {type(fmt).__name__}"
            )
        self.env = env
        self.prompts = prompts
        self.stop_token_ids = {int(i) for i in stop_token_ids}
        self.trace: EpisodeTrace | None = None
        self.turn_finish_reasons: list[str] = []
        self._prompt: TokenPrompt | None = None

    def _render(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool) -> str:
        """The policy's view of ``messages``: the tools announced by the format, then the template."""
        shown = self.env.tool_format.prepare_messages(messages, self.env.tool_schemas())
        return self.prompts.render(shown, add_generation_prompt)

    def start(self, task: Sample) -> TokenPrompt:
        """Open the episode on ``task``; returns the first turn's prompt."""
        opening = self.env.reset(task)
        shown = self.env.tool_format.prepare_messages(opening, self.env.tool_schemas())
        self._prompt = self.prompts.token_prompt(shown)
        self.trace = EpisodeTrace(prompt=shown)
        self.turn_finish_reasons = []
        return self._prompt

    def next_prompt(self) -> TokenPrompt:
        """The prompt of the next turn: every id so far, every image so far."""
        assert self._prompt is not None and self.trace is not None, "call start() first"
        return TokenPrompt(
            (*self._prompt.token_ids, *self.trace.token_ids),
            (*self._prompt.images, *self.trace.images),
            tuple(sorted(self.stop_token_ids)),
        )

    def add_turn(
        self,
        token_ids: Sequence[int],
        text: str,
        finish_reason: str,
        logprobs: Sequence[float] | None = None,
        ended: bool = True,
    ) -> StepResult:
        """Add the policy's turn (``token_ids``, its decoded ``text``) and the environment's answer.

        ``ended``: ``token_ids`` end with the token that ended the turn (a generated turn); False
        for a scripted one (the SFT warm start), whose ending is the template's: the observations'
        opening token when it is a stop token, else nothing.
        """
        trace = self.trace
        assert trace is not None, "call start() first"
        ids = [int(t) for t in token_ids]
        if logprobs is None or trace.logprobs is None or len(logprobs) != len(ids):
            trace.logprobs = None
        self._extend(ids, True, logprobs)
        self.turn_finish_reasons.append(finish_reason)
        result = self.env.step(text, finish_reason=finish_reason)
        if not result.done:
            before = self._render(self.env.messages[: -len(result.observations)], False)
            after = self._render(self.env.messages, True)
            if not after.startswith(before):
                raise ValueError(
                    "the chat template does not render this conversation by appending: the observations "
                    "cannot be tokenized as a continuation (token in, token out needs an append-only template)"
                )
            images = self.prompts.images(result.observations)
            delta = self.prompts.encode_text(after[len(before) :], images)
            if ended and finish_reason == "stop" and ids and delta and delta[0] == ids[-1]:
                delta = delta[1:]  # the policy's stop token opens the observations
            elif not ended and delta and delta[0] in self.stop_token_ids:
                self._extend(delta[:1], True, [0.0])  # the turn's ending is the policy's to predict
                delta = delta[1:]
            self._extend(delta, False, [0.0] * len(delta))
            trace.images.extend(images)
        trace.messages = [dict(m) for m in self.env.messages]
        return result

    def _extend(self, ids: Sequence[int], generated: bool, logprobs: Sequence[float] | None) -> None:
        trace = self.trace
        assert trace is not None
        trace.token_ids.extend(ids)
        trace.mask.extend([generated] * len(ids))
        if trace.logprobs is not None and logprobs is not None:
            trace.logprobs.extend(float(v) for v in logprobs)

    def metadata(self) -> dict[str, Any]:
        """The episode's record for the reward and the logs (JSON-able)."""
        episode = self.env.episode
        trace = self.trace
        generated = trace.generated_tokens if trace is not None else 0
        total = len(trace.token_ids) if trace is not None else 0
        return {
            **episode.metadata(),
            "turn_finish_reasons": list(self.turn_finish_reasons),
            "generated_tokens": generated,
            "observation_tokens": total - generated,
            "observation_images": len(trace.images) if trace is not None else 0,
        }


class EpisodeRunner(RolloutEngine):
    """A rollout engine that runs multi-step samples as episodes on an inner engine (module docstring).

    Args:
        engine: the policy's engine; it must continue from token ids (``generate(request,
            prompt=TokenPrompt)``, as :class:`~.inprocess.InProcessEngine` and an SGLang
            :class:`~.server.OpenAIServerEngine` do; an engine's ``token_prompt_refusal()`` may
            refuse). Its :meth:`~.engine.RolloutEngine.stop_token_ids` (the ids it was given,
            else the processor's turn ends) end each turn of an episode.
        categories: the task categories; samples of the multi-step ones (by ``source``) run as
            episodes, all others go to ``engine`` as they are.
        processor: the policy's processor (None: the inner engine's ``prompts``).
        tool_format: the tool-call format the policy writes (a text format: ``hermes``, ``glm45``).
        system_prompt: a system message opening every episode (the tools section joins it).
        max_turns: overrides the categories' turn limits.
    """

    def __init__(
        self,
        engine: RolloutEngine,
        categories: Sequence[TaskCategory],
        processor: Any = None,
        tool_format: str = "hermes",
        system_prompt: str | None = None,
        max_turns: int | None = None,
    ) -> None:
        super().__init__()
        if "prompt" not in inspect.signature(engine.generate).parameters:
            raise TypeError(
                f"{type(engine).__name__} cannot continue an episode from token ids (its generate() takes "
                "no prompt=TokenPrompt); multi-step categories need an engine that does, such as "
                "InProcessEngine"
            )
        refusal = getattr(engine, "token_prompt_refusal", None)  # an engine whose support has conditions
        reason = refusal() if callable(refusal) else None
        if reason:
            raise TypeError(f"{type(engine).__name__} cannot continue an episode from token ids: {reason}")
        if not callable(getattr(engine, "stop_token_ids", None)):
            raise TypeError(
                f"{type(engine).__name__} has no stop_token_ids(prompts): an episode's turns end at the ids "
                "the engine generates with; subclass glmkit.rl.rollout.RolloutEngine (whose "
                "stop_token_ids gives the ids passed as stop_token_ids=, else the processor's turn ends)"
            )
        self.engine = engine
        self.categories = list(categories)
        self.multi_step = {c.source for c in self.categories if c.multi_step}
        if processor is not None:
            self.prompts = ChatPrompts(processor)
        elif getattr(engine, "prompts", None) is not None:
            self.prompts = engine.prompts  # type: ignore[attr-defined]
        else:
            raise ValueError("EpisodeRunner needs the policy's processor (or an engine with one attached)")
        self.tool_format = get_tool_call_format(tool_format)
        if not isinstance(self.tool_format, TextToolCallFormat):
            raise ValueError(
                f"episodes need a text tool-call format (hermes, glm45): the policy writes its calls in "
                f"its text; got {tool_format!r}"
            )
        self.system_prompt = system_prompt
        self.max_turns = max_turns
        self._weights_version = engine.weights_version
        self.environment()  # check the settings now

    def environment(self) -> TaskEnvironment:
        """A fresh environment over the categories (one per episode)."""
        return TaskEnvironment(
            self.categories, self.tool_format, system_prompt=self.system_prompt, max_turns=self.max_turns
        )

    def opening(self, sample: Sample) -> list[dict[str, Any]]:
        """The opening conversation of an episode on ``sample`` as the policy reads it (the tools
        announced): the trainer's prompt of the episode's tokens."""
        env = self.environment()
        return env.tool_format.prepare_messages(env.reset(sample), env.tool_schemas())

    def runs_episode(self, sample: Sample) -> bool:
        """True when ``sample`` belongs to a multi-step category."""
        return sample.source in self.multi_step

    def stop_token_ids(self, prompts: ChatPrompts | None = None, default: Sequence[int] = ()) -> list[int]:
        """The ids that end a turn: the inner engine's (:meth:`~.engine.RolloutEngine.stop_token_ids`
        with ``prompts``, by default the policy's)."""
        return self.engine.stop_token_ids(prompts if prompts is not None else self.prompts, default)

    # -- RolloutEngine ---------------------------------------------------------------------------
    async def generate(self, request: RolloutRequest) -> Completion:
        """An episode for a multi-step sample; the inner engine's completion for any other."""
        if not self.runs_episode(request.sample):
            return await self.engine.generate(request)
        builder = EpisodeBuilder(self.environment(), self.prompts, self.stop_token_ids())
        last: Completion | None = None
        try:
            builder.start(request.sample)
            while True:
                last = await self.engine.generate(request, prompt=builder.next_prompt())  # type: ignore[call-arg]
                if last.finish_reason == "error":
                    raise RuntimeError(last.error or "the engine reported an error")
                ids = last.token_ids
                if ids is None:
                    raise RuntimeError(f"{type(self.engine).__name__} returned no token ids")
                if builder.add_turn(ids, last.response, last.finish_reason, last.logprobs).done:
                    break
        except Exception as exc:  # the episode ends with an error; it is reported, not lost
            metadata = builder.metadata() if builder.trace is not None else {}
            return Completion(
                request,
                "",
                finish_reason="error",
                weights_version=self.weights_version,
                error=f"episode turn {len(builder.turn_finish_reasons) + 1}: {type(exc).__name__}: {exc}",
                metadata={**metadata, "end_reason": "error"},
            )
        trace = builder.trace
        assert trace is not None
        return EpisodeCompletion(
            request,
            builder.env.episode.response,
            finish_reason=last.finish_reason,
            response_tokens=trace.generated_tokens,
            weights_version=last.weights_version,
            token_ids=list(trace.token_ids),
            logprobs=list(trace.logprobs) if trace.logprobs is not None else None,
            metadata=builder.metadata(),
            trace=trace,
        )

    async def abort_requests(self, requests: list[RolloutRequest]) -> None:
        """Tell the inner engine's backend too."""
        await self.engine.abort_requests(requests)

    async def update_weights(self, version: int, weights: Any = None) -> None:
        """Load the weights into the inner engine; both move to ``version``."""
        await self.engine.update_weights(version, weights)
        await super().update_weights(version)

    async def close(self) -> None:
        """Abort the episodes in flight and close the inner engine."""
        await super().close()
        await self.engine.close()


__all__ = ["EpisodeBuilder", "EpisodeCompletion", "EpisodeRunner", "EpisodeTrace"]
