"""One rollout step at a time: issue groups, score each request as it finishes, stop early, cache the rest.

GLM-5V-Turbo (section 2.4): "completion callbacks" start a request's reward the moment it
finishes, so reward work overlaps with the generation of the slower requests instead of
following the whole batch; "early abort" stops a step once enough groups are complete (or a
time limit passes) and caches the unfinished prompts for reuse. :class:`RolloutScheduler` does
one such step per :meth:`~RolloutScheduler.rollout_step`:

1. **Issue.** Up to ``groups_per_step + oversample`` groups: first from the
   :class:`~.cache.PromptCache` (oldest first; complete surplus groups need no request, aborted
   ones are re-issued for their missing samples only, stale ones are restarted or dropped), then
   fresh prompts in the epoch's seeded order. Each group is ``group_size`` requests, submitted to
   the :class:`~.engine.RolloutEngine` with the current policy version.
2. **Score on completion.** Each request's completion callback starts its reward at once
   (``reward_on_completion=False`` scores everything after the step instead: the synchronous
   baseline of the pipeline benchmark). A request that ends in an engine error is re-issued, up
   to ``max_request_retries`` times per step.
3. **Stop.** Once :class:`~.abort.EarlyAbort` is satisfied (``complete_fraction`` of
   ``min(groups_per_step, issued)`` groups complete, or ``step_timeout_s`` passed with at least
   one complete), or nothing is left in flight: the outstanding requests are aborted, the rewards
   already started are awaited.
4. **Batch.** Complete groups in completion order fill the batch up to ``groups_per_step``; the
   complete groups beyond it (surplus) and the unfinished ones (aborted) go to the cache, with the
   samples they have. The batch lists its groups in issue order.

Prompts are tracked as (epoch, dataset index); the group key is ``"<epoch>/<index>"``. A prompt
leaves the scheduler only in a batch or, with ``on_stale="drop"``, in ``dropped``, so every prompt
of an epoch is trained on exactly once. :meth:`~RolloutScheduler.state_dict` saves the position in
the epochs, the policy version, the cache *and* the groups of a step in flight and of batches not
yet trained (the pipeline passes them), so a resume loses and repeats nothing; requests in flight
are re-issued after a resume (their finished, scored samples are kept).
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from glmkit.rl.rollout.abort import EarlyAbort
from glmkit.rl.rollout.batch import RolloutBatch
from glmkit.rl.rollout.cache import PromptCache
from glmkit.rl.rollout.engine import Completion, RolloutEngine, RolloutRequest, SamplingParams
from glmkit.rl.rollout.group import RolloutGroup, ScoredSample
from glmkit.rl.rollout.reward import CompletionReward, score_completion
from glmkit.scoring import Sample

STATE_FORMAT = 1


class RolloutScheduler:
    """Runs rollout steps over the epochs of a prompt dataset (module docstring).

    Args:
        engine: the rollout engine.
        reward: scored once per finished request (:class:`~.reward.CompletionReward`).
        prompts: the prompt dataset (each a :class:`~glmkit.scoring.Sample` with its source tag).
        group_size: samples per prompt (the GRPO group size).
        groups_per_step: complete groups per batch.
        oversample: extra groups issued per step beyond ``groups_per_step`` (slime's
            over-sampling); complete ones beyond the batch are cached.
        complete_fraction: early abort once this fraction of ``min(groups_per_step, issued)``
            groups is complete (1.0: wait for all).
        step_timeout_s: early abort this many seconds into a step, once a group is complete.
        reward_on_completion: score each request as it finishes (True) or all after the step.
        reward_timeout_s: a deadline on each reward call; an overrun gives NaN and a failure.
        max_staleness: the cache's age cap in policy versions (None: no cap).
        on_stale: what the cache does with an older group: ``reissue`` or ``drop``.
        max_request_retries: re-issues of a request that ended in an engine error, per step.
        params: the sampling parameters of every request.
        num_epochs: passes over ``prompts`` (None: endless).
        shuffle: visit the prompts of each epoch in a seeded random order.
        seed: the seed of the epoch orders.
    """

    def __init__(
        self,
        engine: RolloutEngine,
        reward: CompletionReward,
        prompts: Sequence[Sample],
        *,
        group_size: int,
        groups_per_step: int,
        oversample: int = 0,
        complete_fraction: float = 1.0,
        step_timeout_s: float | None = None,
        reward_on_completion: bool = True,
        reward_timeout_s: float | None = None,
        max_staleness: int | None = None,
        on_stale: str = "reissue",
        max_request_retries: int = 2,
        params: SamplingParams | None = None,
        num_epochs: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        if not isinstance(engine, RolloutEngine):
            raise TypeError(f"engine must be a RolloutEngine, got {type(engine).__name__}")
        if not isinstance(reward, CompletionReward):
            raise TypeError(
                f"reward must have an async score_async(sample, response, metadata), got {type(reward).__name__}"
            )
        if len(prompts) == 0:
            raise ValueError("prompts is empty; give at least one prompt")
        for name, value, low in (("group_size", group_size, 1), ("groups_per_step", groups_per_step, 1)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if oversample < 0:
            raise ValueError(f"oversample must be >= 0, got {oversample}")
        if max_request_retries < 0:
            raise ValueError(f"max_request_retries must be >= 0, got {max_request_retries}")
        if num_epochs is not None and num_epochs < 1:
            raise ValueError(f"num_epochs must be >= 1 or None, got {num_epochs}")
        if reward_timeout_s is not None and not reward_timeout_s > 0:
            raise ValueError(f"reward_timeout_s must be > 0 or None, got {reward_timeout_s}")
        self.engine = engine
        self.reward = reward
        self.prompts = prompts
        self.group_size = group_size
        self.groups_per_step = groups_per_step
        self.oversample = oversample
        self.abort = EarlyAbort(complete_fraction, step_timeout_s)
        self.reward_on_completion = reward_on_completion
        self.reward_timeout_s = reward_timeout_s
        self.cache = PromptCache(max_staleness, on_stale)
        self.max_request_retries = max_request_retries
        self.params = params or SamplingParams()
        self.num_epochs = num_epochs
        self.shuffle = shuffle
        self.seed = seed

        self.version = 0  # the policy version new requests carry
        self.step = 0
        self.epoch = 0
        self.cursor = 0  # next position in the current epoch's order
        self.dropped: list[str] = []  # prompt ids dropped as stale
        self.totals: Counter[str] = Counter()
        self._order_epoch: int | None = None
        self._order: np.ndarray | None = None
        self._current: list[RolloutGroup] = []

    # -- prompts -----------------------------------------------------------------------------------

    def order(self, epoch: int) -> np.ndarray:
        """The dataset indices of ``epoch`` in visiting order (seeded by ``(seed, epoch)``)."""
        if self._order_epoch != epoch or self._order is None:
            n = len(self.prompts)
            self._order = (
                np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
            )
            self._order_epoch = epoch
        return self._order

    def _has_fresh(self) -> bool:
        if self.num_epochs is None:
            return True
        return self.epoch < self.num_epochs - 1 or (
            self.epoch == self.num_epochs - 1 and self.cursor < len(self.prompts)
        )

    def _next_fresh(self, version: int) -> RolloutGroup | None:
        if not self._has_fresh():
            return None
        if self.cursor >= len(self.prompts):
            self.epoch, self.cursor = self.epoch + 1, 0
        index = int(self.order(self.epoch)[self.cursor])
        self.cursor += 1
        return RolloutGroup(self.epoch, index, self.prompts[index], self.group_size, version)

    @property
    def finished(self) -> bool:
        """True when every epoch's prompts have been issued and nothing is cached or in flight."""
        return not self._has_fresh() and not self.cache and not self._current

    @property
    def in_flight(self) -> list[RolloutGroup]:
        """The groups of the step in progress (empty between steps)."""
        return list(self._current)

    # -- one step ------------------------------------------------------------------------------------

    async def rollout_step(self) -> RolloutBatch:
        """Run one rollout step (module docstring) and return its batch."""
        if self._current:
            raise RuntimeError("a rollout step is already running; await it before starting another")
        if self.finished:
            raise RuntimeError(
                f"every prompt of the {self.num_epochs} epoch(s) has been rolled out; check .finished"
            )
        step = _Step(self)
        try:
            return await step.run()
        except BaseException:
            await step.interrupt()
            raise

    # -- checkpoints ---------------------------------------------------------------------------------

    def state_dict(self, pending: Iterable[RolloutGroup] = ()) -> dict[str, Any]:
        """Everything a resume needs, as plain Python (JSON-serialisable unless token ids or
        logprobs are tensors). ``pending``: complete groups produced but not yet trained on
        (the pipeline's queued batches); with the step in flight they are saved ahead of the cache."""
        in_flight = [_without_inflight(g) for g in self._current]
        return {
            "format": STATE_FORMAT,
            "num_prompts": len(self.prompts),
            "group_size": self.group_size,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "version": self.version,
            "step": self.step,
            "epoch": self.epoch,
            "cursor": self.cursor,
            "dropped": list(self.dropped),
            "totals": dict(self.totals),
            "cache": self.cache.state_dict(extra_first=[*pending, *in_flight]),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (before any step runs); the prompt dataset must be the same."""
        if self._current:
            raise RuntimeError("cannot load a state while a rollout step is running")
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown rollout state format {state.get('format')!r}; expected {STATE_FORMAT}")
        for key, mine in (
            ("num_prompts", len(self.prompts)),
            ("group_size", self.group_size),
            ("seed", self.seed),
            ("shuffle", self.shuffle),
        ):
            if state[key] != mine:
                raise ValueError(
                    f"rollout state has {key}={state[key]!r} but this scheduler has {key}={mine!r}; "
                    "resume with the prompts and settings the checkpoint was written with"
                )
        self.version = int(state["version"])
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.cursor = int(state["cursor"])
        self.dropped = list(state["dropped"])
        self.totals = Counter({k: int(v) for k, v in state["totals"].items()})
        self.cache.load_state_dict(state["cache"], self._sample_of, self.group_size)

    def _sample_of(self, index: int) -> Sample:
        if not 0 <= index < len(self.prompts):
            raise ValueError(
                f"checkpointed prompt index {index} is outside the dataset of {len(self.prompts)}"
            )
        return self.prompts[index]


def _without_inflight(group: RolloutGroup) -> RolloutGroup:
    """A copy of ``group`` holding only its finished, scored samples (for a checkpoint)."""
    return RolloutGroup(
        group.epoch,
        group.prompt_index,
        group.sample,
        group.group_size,
        group.version,
        samples=dict(group.samples),
        deferrals=group.deferrals,
        attempts=list(group.attempts),
    )


class _Step:
    """The state of one rollout step (kept off the scheduler so that a step is one object)."""

    def __init__(self, scheduler: RolloutScheduler) -> None:
        self.s = scheduler
        self.loop = asyncio.get_running_loop()
        self.version = scheduler.version
        self.stop = asyncio.Event()
        self.timed_out = False
        self.outstanding: dict[str, RolloutGroup] = {}  # request id -> group
        self.rewards: set[asyncio.Task[None]] = set()
        self.unscored: list[tuple[RolloutGroup, Completion]] = []  # reward_on_completion=False
        self.generated: Counter[str] = Counter()  # prompt id -> samples generated (batch mode)
        self.retries: Counter[str] = Counter()
        self.complete = 0  # complete groups (scored; generated, when scoring waits for the step)
        self.target_groups = 0  # groups the early-abort fraction applies to
        self.groups: list[RolloutGroup] = []
        self.batch = RolloutBatch(step=scheduler.step, version=self.version, groups=[])

    async def run(self) -> RolloutBatch:
        s, batch = self.s, self.batch
        batch.started_at = self.loop.time()
        want = s.groups_per_step + s.oversample
        groups, dropped = s.cache.take(want, self.version)
        for group in dropped:
            s.dropped.append(group.prompt_id)
            batch.stale_dropped.append(group.prompt_id)
        for group in groups:
            if group.complete:
                batch.surplus_used += 1
                group.completed_at = batch.started_at
            else:
                batch.reissued += 1
        while len(groups) < want and (fresh := s._next_fresh(self.version)) is not None:
            groups.append(fresh)
        self.groups = groups
        s._current = groups  # from here on, a checkpoint sees these groups
        batch.issued_groups = len(groups)
        self.target_groups = min(s.groups_per_step, len(groups))
        self.complete = sum(g.complete for g in groups)
        for group in groups:
            for index in group.missing():
                self._submit(group, index)

        timer = None
        if s.abort.timeout_s is not None:
            timer = self.loop.call_later(s.abort.timeout_s, self._on_timeout)
        self._check()
        try:
            await self.stop.wait()
        finally:
            if timer is not None:
                timer.cancel()
        aborted = await s.engine.abort(list(self.outstanding))
        aborted_prompts: dict[str, RolloutGroup] = {}
        for request in aborted:
            group = self.outstanding.pop(request.request_id)
            aborted_prompts[group.prompt_id] = group
        batch.aborted_requests = len(aborted)
        batch.aborted = dict(Counter(g.source for g in aborted_prompts.values()))
        if self.rewards:  # rewards already started finish; they may complete more groups
            await asyncio.gather(*list(self.rewards))
        if self.unscored:  # the synchronous baseline: score everything generated, now
            pairs, self.unscored = self.unscored, []
            scored = await asyncio.gather(
                *(score_completion(s.reward, c, timeout_s=s.reward_timeout_s) for _, c in pairs)
            )
            for (group, _), sample in zip(pairs, scored, strict=True):
                self._add(group, sample)
        return self._finish()

    def _submit(self, group: RolloutGroup, index: int) -> None:
        request = RolloutRequest(
            prompt_id=group.prompt_id,
            index=index,
            sample=group.sample,
            params=self.s.params,
            version=self.version,
            step=self.batch.step,
            attempt=group.attempts[index],
        )
        group.attempts[index] += 1
        self.outstanding[request.request_id] = group
        self.batch.requests += 1
        self.s.engine.submit(request, lambda c, g=group: self._on_complete(g, c))

    def _on_complete(self, group: RolloutGroup, completion: Completion) -> None:
        request = completion.request
        self.outstanding.pop(request.request_id, None)
        if completion.finish_reason == "error":
            self.batch.failed_requests += 1
            key = request.request_id
            if self.retries[key] < self.s.max_request_retries and not self.stop.is_set():
                self.retries[key] += 1
                self._submit(group, request.index)
            self._check()
            return
        if self.s.reward_on_completion:
            task = self.loop.create_task(self._score(group, completion))
            self.rewards.add(task)
            task.add_done_callback(self.rewards.discard)
        else:
            self.unscored.append((group, completion))
            self.generated[group.prompt_id] += 1
            if len(group.samples) + self.generated[group.prompt_id] == group.group_size:
                self.complete += 1
                self._check()
            elif not self.outstanding:
                self._check()

    async def _score(self, group: RolloutGroup, completion: Completion) -> None:
        sample = await score_completion(self.s.reward, completion, timeout_s=self.s.reward_timeout_s)
        self._add(group, sample)
        self.rewards.discard(asyncio.current_task())  # type: ignore[arg-type]  # done: not "in flight"
        self._check()

    def _add(self, group: RolloutGroup, sample: ScoredSample) -> None:
        group.samples[sample.index] = sample
        if group.complete and group.completed_at is None:
            group.completed_at = self.loop.time()
            if self.s.reward_on_completion:
                self.complete += 1

    def _on_timeout(self) -> None:
        self.timed_out = True
        self._check()

    def _check(self) -> None:
        if self.stop.is_set():
            return
        elapsed = math.inf if self.timed_out else self.loop.time() - self.batch.started_at
        idle = not self.outstanding and not self.rewards
        if idle or self.s.abort.should_stop(self.complete, self.target_groups, elapsed):
            self.stop.set()

    def _finish(self) -> RolloutBatch:
        s, batch = self.s, self.batch
        complete = sorted((g for g in self.groups if g.complete), key=lambda g: g.completed_at or 0.0)
        batch.group_times = [(g.completed_at or batch.started_at) - batch.started_at for g in complete]
        chosen = {id(g) for g in complete[: s.groups_per_step]}
        deferred: Counter[str] = Counter()
        for group in self.groups:
            if id(group) in chosen:
                batch.groups.append(group)
                continue
            group.deferrals += 1
            if group.complete:
                batch.surplus_cached += 1
            s.cache.put(group)
            deferred[group.source] += 1
        batch.deferred = dict(deferred)
        batch.finished_at = self.loop.time()
        s._current = []
        s.step += 1
        for key, value in (
            ("steps", 1),
            ("groups", len(batch.groups)),
            ("requests", batch.requests),
            ("aborted_requests", batch.aborted_requests),
            ("failed_requests", batch.failed_requests),
            ("deferred", sum(deferred.values())),
            ("reissued", batch.reissued),
            ("surplus_used", batch.surplus_used),
            ("surplus_cached", batch.surplus_cached),
            ("completed_after_deferral", sum(g.deferrals > 0 for g in batch.groups)),
            ("stale_dropped", len(batch.stale_dropped)),
        ):
            s.totals[key] += value
        return batch

    async def interrupt(self) -> None:
        """The step was cancelled or failed: abort its requests and hand its groups back to the cache."""
        s = self.s
        for task in list(self.rewards):
            task.cancel()
        try:
            await asyncio.shield(s.engine.abort(list(self.outstanding)))
        finally:
            if s._current:
                s.cache.put_front(s._current)
                s._current = []
