"""The rollout-engine interface: submit generation requests, hear each one finish, abort the rest.

GLM-5V-Turbo (section 2.4) starts a request's reward the moment the request finishes and aborts
the slowest requests of a step; both need an engine that reports each request on its own, not a
batch call that returns when the last request does. :class:`RolloutEngine` is that interface:

* :meth:`~RolloutEngine.submit` schedules one :class:`RolloutRequest` (a prompt id, the sample's
  index in its group, the :class:`~glmkit.scoring.Sample` with its ``source`` tag, the sampling
  parameters, the policy version at issue) and returns at once with a future; an optional
  ``on_complete`` callback is called with the :class:`Completion` as soon as it exists;
* :meth:`~RolloutEngine.abort` cancels outstanding requests (all, or by id) and returns them;
  their callbacks are never called;
* :meth:`~RolloutEngine.update_weights` loads new policy weights and bumps ``weights_version``;
  each completion records the version that finished it;
* :meth:`~RolloutEngine.stop_token_ids` says which ids end a turn: the ones the engine was given
  (``stop_token_ids=`` of :class:`~.inprocess.InProcessEngine` and
  :class:`~.server.OpenAIServerEngine`), else the policy processor's turn ends. It is the one
  place that resolves them; the engines generate with it and an
  :class:`~.episodes.EpisodeRunner` builds its episodes with it.

An engine implements one coroutine, :meth:`~RolloutEngine.generate` (one request to one
completion; it must let ``asyncio.CancelledError`` through, which is how an abort arrives), and,
where it has them, the hooks :meth:`~RolloutEngine.abort_requests` (tell a server to drop requests:
SGLang's ``/abort_request``; vLLM aborts on disconnect) and :meth:`~RolloutEngine.load_weights`
(an in-process model's ``load_state_dict``; a server's own weight-update API). Batching
(an in-process engine gathering concurrent requests into one ``generate`` call) and concurrency
limits are the engine's business. A request whose ``generate`` raises finishes with
``finish_reason="error"`` and the message in ``error``; it is never lost silently (verl #7155: a
sampler waiting forever on one lost rollout).

Engines register in ``registry("rollout_engines")``; :class:`~.simulated.SimulatedEngine`
(``simulated``) is the model-free one that tests and the pipeline benchmark use. Nothing here
imports torch or Lightning.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from glmkit.registry import declare
from glmkit.scoring import Sample

if TYPE_CHECKING:
    from glmkit.rl.rollout.inprocess import ChatPrompts

FINISH_REASONS = ("stop", "length", "error")
"""How a completion ended: a stop token or string, the token limit, or an engine error."""


@dataclass(frozen=True)
class SamplingParams:
    """Generation settings of a request (the common subset of transformers' ``generate`` and the
    OpenAI API); ``extra`` carries engine-specific ones (``top_k``, ``repetition_penalty``, ...).

    Args:
        max_new_tokens: the response token limit.
        temperature: sampling temperature (0 = greedy).
        top_p: nucleus sampling mass.
        stop: strings that end the response.
        extra: engine-specific settings, passed through.
    """

    max_new_tokens: int = 1024
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass(frozen=True)
class RolloutRequest:
    """One generation request: sample ``index`` of the group of prompt ``prompt_id``.

    Args:
        prompt_id: the group's id (the GRPO group key; unique per prompt and epoch).
        index: which sample of the group, ``0 <= index < group_size``.
        sample: the prompt (question, images) with its data-source tag ``sample.source``.
        params: sampling parameters.
        version: the policy version when the request was issued.
        step: the rollout step that issued it.
        attempt: how many times this (prompt, index) was issued before (an aborted or failed
            request is issued again with ``attempt + 1``).
    """

    prompt_id: str
    index: int
    sample: Sample
    params: SamplingParams = field(default_factory=SamplingParams)
    version: int = 0
    step: int = 0
    attempt: int = 0

    @property
    def request_id(self) -> str:
        """``"<prompt_id>#<index>"``: unique among the requests in flight."""
        return f"{self.prompt_id}#{self.index}"


@dataclass
class Completion:
    """A finished request.

    Args:
        request: the request it answers.
        response: the generated text (``""`` on error).
        finish_reason: one of :data:`FINISH_REASONS`.
        response_tokens: the response length in tokens.
        weights_version: the engine's weights version when the request finished.
        token_ids: the response token ids, where the engine returns them.
        logprobs: the sampling log-probabilities of those tokens, where the engine returns them.
        error: the engine's error message when ``finish_reason == "error"``.
        metadata: anything else the engine reports (latency, server, ...).
    """

    request: RolloutRequest
    response: str
    finish_reason: str = "stop"
    response_tokens: int = 0
    weights_version: int = 0
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.finish_reason not in FINISH_REASONS:
            raise ValueError(f"finish_reason must be one of {FINISH_REASONS}, got {self.finish_reason!r}")


CompletionCallback = Callable[[Completion], None]


class RolloutEngine(ABC):
    """Base of rollout engines: subclasses implement :meth:`generate`; the request bookkeeping,
    callbacks, aborts, weight versions and turn-ending ids are shared (module docstring).

    Args:
        stop_token_ids: the ids that end a turn, for an engine that generates tokens (None: the
            policy processor's, see :meth:`stop_token_ids`).
    """

    def __init__(self, stop_token_ids: Sequence[int] | None = None) -> None:
        self._weights_version = 0
        self._inflight: dict[str, tuple[RolloutRequest, asyncio.Task[Completion]]] = {}
        self._stop_token_ids = [int(i) for i in stop_token_ids] if stop_token_ids is not None else None

    # -- what an engine implements -------------------------------------------------------------

    @abstractmethod
    async def generate(self, request: RolloutRequest) -> Completion:
        """Generate the response to one request (cancellation = abort; let it propagate)."""

    async def abort_requests(self, requests: list[RolloutRequest]) -> None:  # noqa: B027 - hook
        """Hook: tell the backend to stop work on ``requests`` (their tasks are already cancelled)."""

    async def load_weights(self, weights: Any) -> None:
        """Hook: load new policy weights (a state dict, a path, a server handle)."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot load weights; call update_weights(version) without weights"
        )

    async def close(self) -> None:
        """Abort everything outstanding and release resources."""
        await self.abort()

    # -- shared machinery ------------------------------------------------------------------------

    def stop_token_ids(self, prompts: ChatPrompts | None = None, default: Sequence[int] = ()) -> list[int]:
        """The ids that end a turn: the ones this engine was given, else ``prompts``' turn ends
        (:meth:`~.inprocess.ChatPrompts.stop_token_ids`: the processor's, else its tokenizer's
        EOS), else ``default`` (a server engine passes a token prompt's own ids; ``[]`` leaves the
        turn to the server's EOS).

        Raises:
            ValueError: none were given and ``prompts``' tokenizer has no EOS.
        """
        if self._stop_token_ids is not None:
            return list(self._stop_token_ids)
        if prompts is not None:
            return prompts.stop_token_ids()
        return [int(i) for i in default]

    @property
    def weights_version(self) -> int:
        """The version of the policy weights the engine generates with."""
        return self._weights_version

    @property
    def outstanding(self) -> list[RolloutRequest]:
        """Requests submitted and not yet finished or aborted."""
        return [req for req, _ in self._inflight.values()]

    def submit(
        self, request: RolloutRequest, on_complete: CompletionCallback | None = None
    ) -> asyncio.Future[Completion]:
        """Schedule ``request`` (call from inside the running event loop); returns at once.

        ``on_complete(completion)`` runs in the event loop as soon as the completion exists (an
        engine error gives a completion with ``finish_reason="error"``); it is not called for an
        aborted request. The returned future gives the completion, or is cancelled on abort.
        """
        rid = request.request_id
        if rid in self._inflight:
            raise ValueError(f"request {rid!r} is already in flight; abort it before submitting it again")
        task = asyncio.get_running_loop().create_task(self._run(request, on_complete), name=f"rollout {rid}")
        self._inflight[rid] = (request, task)
        return task

    async def _run(self, request: RolloutRequest, on_complete: CompletionCallback | None) -> Completion:
        try:
            completion = await self.generate(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an engine failure finishes the request; it is not lost
            completion = Completion(
                request,
                "",
                finish_reason="error",
                weights_version=self._weights_version,
                error=f"{type(exc).__name__}: {exc}",
            )
        finally:
            self._inflight.pop(request.request_id, None)
        # no await between here and the return: a request is either aborted or reported, not both
        if on_complete is not None:
            on_complete(completion)
        return completion

    async def abort(self, request_ids: Iterable[str] | None = None) -> list[RolloutRequest]:
        """Cancel outstanding requests (all of them, or those named) and return them.

        Ids that are not outstanding (finished, never submitted) are ignored. Returns after the
        requests' tasks have ended and :meth:`abort_requests` has told the backend.
        """
        ids = list(self._inflight) if request_ids is None else [i for i in request_ids if i in self._inflight]
        aborted: list[RolloutRequest] = []
        tasks: list[asyncio.Task[Completion]] = []
        for rid in ids:
            request, task = self._inflight.pop(rid)
            task.cancel()
            aborted.append(request)
            tasks.append(task)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.abort_requests(aborted)
        return aborted

    async def update_weights(self, version: int, weights: Any = None) -> None:
        """Load ``weights`` (when given, through :meth:`load_weights`) and set ``weights_version``.

        Versions never go back. Requests in flight keep running; a caller that wants none to mix
        versions aborts or drains them first.
        """
        if not isinstance(version, int) or version < self._weights_version:
            raise ValueError(
                f"weights version must be an int >= the current {self._weights_version}, got {version!r}"
            )
        if weights is not None:
            await self.load_weights(weights)
        self._weights_version = version


ROLLOUT_ENGINES = declare(
    "rollout_engines",
    "RL rollout engines: submit generation requests, report each completion, abort (simulated, ...)",
    base=RolloutEngine,
)
