"""The reward a rollout calls once per finished request, and the call itself.

The rollout does not depend on the reward system's code; it needs one coroutine,
:class:`CompletionReward`'s ``score_async(sample, response, metadata)``, which glmkit's reward
system (``glmkit.rl.rewards``) provides and :class:`RewardFunction` wraps around any plain
function. Its result may be

* a number (``float(result)``);
* an object with a ``reward`` attribute (and optionally ``failure``, the reason the reward had to
  fall back), such as the reward system's result with its per-verifier breakdown;
* a mapping with a ``"reward"`` key (and optionally ``"failure"``).

A reward of ``None`` or NaN marks the sample unscored (left out of its group's baseline, see
:mod:`glmkit.rl.algorithms.base`). A reward that raises or overruns ``timeout_s`` never stops the
rollout: the sample gets NaN and the failure is recorded (anchors_rl.md, pitfalls 4 and 5).
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from glmkit.rl.rollout.engine import Completion
from glmkit.rl.rollout.group import ScoredSample
from glmkit.scoring import Sample


@runtime_checkable
class CompletionReward(Protocol):
    """A reward scored per finished request (``glmkit.rl.rewards``' reward system is one)."""

    async def score_async(self, sample: Sample, response: str, metadata: Mapping[str, Any]) -> Any:
        """The reward of ``response`` to ``sample``: a number, or an object or mapping with
        ``reward`` (module docstring). ``metadata`` describes the completion."""
        ...


class RewardFunction:
    """Adapts ``fn(sample, response, metadata)``, synchronous or ``async``, to :class:`CompletionReward`.

    A synchronous ``fn`` runs in the event loop (quick rule checks); pass ``in_thread=True`` to
    run it in a worker thread instead, so a slow one does not hold up the loop.
    """

    def __init__(
        self, fn: Callable[[Sample, str, Mapping[str, Any]], Any], *, in_thread: bool = False
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.in_thread = in_thread

    async def score_async(self, sample: Sample, response: str, metadata: Mapping[str, Any]) -> Any:
        """Call ``fn`` and await it if it returned an awaitable."""
        if self.in_thread:
            result = await asyncio.to_thread(self.fn, sample, response, metadata)
        else:
            result = self.fn(sample, response, metadata)
        if inspect.isawaitable(result):
            result = await result
        return result


def reward_value(result: Any) -> tuple[float, str | None]:
    """(reward, failure reason or None) of a reward's result (module docstring for the shapes)."""
    failure = None
    if isinstance(result, Mapping):
        if "reward" not in result:
            raise TypeError(f"a reward mapping needs a 'reward' key, got keys {sorted(map(str, result))}")
        value, failure = result["reward"], result.get("failure")
    elif hasattr(result, "reward"):
        value, failure = result.reward, getattr(result, "failure", None)
    else:
        value = result
    if value is None:
        return math.nan, failure or "no reward"
    if isinstance(value, str) or not hasattr(value, "__float__"):
        raise TypeError(
            f"a reward must be a number, or have a numeric 'reward'; got {type(value).__name__} {value!r}"
        )
    value = float(value)
    if math.isinf(value):
        return math.nan, failure or f"infinite reward {value}"
    return value, failure


def completion_metadata(completion: Completion) -> dict[str, Any]:
    """What a reward learns about how the response was produced."""
    request = completion.request
    return {
        "prompt_id": request.prompt_id,
        "index": request.index,
        "source": request.sample.source,
        "finish_reason": completion.finish_reason,
        "response_tokens": completion.response_tokens,
        "version": request.version,
        "weights_version": completion.weights_version,
        **completion.metadata,
    }


async def score_completion(
    reward: CompletionReward, completion: Completion, *, timeout_s: float | None = None
) -> ScoredSample:
    """Score one completion; a reward that raises, times out or returns garbage gives NaN and a
    recorded failure, never an exception."""
    request = completion.request
    result: Any = None
    try:
        call = reward.score_async(request.sample, completion.response, completion_metadata(completion))
        result = await (call if timeout_s is None else asyncio.wait_for(call, timeout_s))
    except asyncio.TimeoutError:
        value, failure = math.nan, f"reward timed out after {timeout_s} s"
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        value, failure = math.nan, f"reward raised {type(exc).__name__}: {exc}"
    else:
        try:
            value, failure = reward_value(result)
        except (TypeError, ValueError) as exc:
            value, failure = math.nan, f"bad reward result: {exc}"
    return ScoredSample.from_completion(completion, value, failure=failure, result=result)
