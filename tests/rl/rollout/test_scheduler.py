"""One rollout step: rewards on completion, early abort by count and time, the cache, failures."""

from __future__ import annotations

import json
import math

import pytest

from glmkit.rl.rollout import (
    RewardFunction,
    RolloutBatch,
    RolloutRequest,
    RolloutScheduler,
    SimulatedEngine,
    run_virtual,
)
from glmkit.scoring import Sample
from tests.rl.rollout.toys import LoggingEngine, RecordingReward, make_prompts

N = 4  # samples per group
ANY = Sample(id="any", question="", answer="")  # simulated latencies depend on the request key only


def scheduler(
    engine: SimulatedEngine, reward: object = None, prompts: int = 40, **kw: object
) -> RolloutScheduler:
    kw.setdefault("groups_per_step", 10)
    return RolloutScheduler(
        engine,
        reward or RecordingReward(),  # type: ignore[arg-type]
        make_prompts(prompts),
        group_size=N,
        **kw,  # type: ignore[arg-type]
    )


def latency(engine: SimulatedEngine, prompt_id: str, index: int, attempt: int = 0) -> float:
    return engine.latency(RolloutRequest(prompt_id, index, ANY, attempt=attempt))


def group_times(engine: SimulatedEngine, sched: RolloutScheduler, groups: int) -> dict[str, float]:
    """When each group of the first step finishes generating (all issued at time 0, no queueing)."""
    ids = [f"0/{i}" for i in sched.order(0)[:groups]]
    return {pid: max(latency(engine, pid, i) for i in range(N)) for pid in ids}


def by_time(times: dict[str, float]) -> list[str]:
    return sorted(times, key=lambda pid: times[pid])


def two_steps(sched: RolloutScheduler, engine: LoggingEngine) -> tuple[RolloutBatch, RolloutBatch]:
    async def main() -> tuple[RolloutBatch, RolloutBatch]:
        first = await sched.rollout_step()
        engine.submitted.clear()
        return first, await sched.rollout_step()

    return run_virtual(main())


def test_reward_starts_when_each_request_finishes() -> None:
    engine, reward = LoggingEngine(seed=1), RecordingReward()
    batch = run_virtual(scheduler(engine, reward).rollout_step())
    assert len(batch.groups) == 10 and len(reward.calls) == 10 * N
    for prompt_id, index, at in reward.calls:  # each reward begins at its own request's finish
        assert at == pytest.approx(latency(engine, prompt_id, index))
    assert batch.wall_s == pytest.approx(max(at for *_, at in reward.calls))


def test_synchronous_baseline_scores_after_the_step() -> None:
    engine, reward = LoggingEngine(seed=1), RecordingReward()
    batch = run_virtual(scheduler(engine, reward, reward_on_completion=False).rollout_step())
    slowest = max(engine.latency(r) for r, _ in engine.submitted)
    assert len(batch.groups) == 10 and len(reward.calls) == 10 * N
    assert all(at == pytest.approx(slowest) for *_, at in reward.calls)


def test_early_abort_at_90_percent_defers_the_slowest_group() -> None:
    engine = LoggingEngine(seed=2)
    sched = scheduler(engine, complete_fraction=0.9)
    times = group_times(engine, sched, 10)
    order = by_time(times)
    stop, slow = times[order[8]], order[9]
    running = [i for i in range(N) if latency(engine, slow, i) > stop]

    first, second = two_steps(sched, engine)
    assert first.wall_s == pytest.approx(stop)  # stopped when the 9th group completed
    assert sorted(first.prompt_ids) == sorted(order[:9])
    assert first.aborted_requests == len(running) > 0  # the slow group's running requests
    source = make_prompts(40)[int(slow.split("/")[1])].source
    assert first.aborted == first.deferred == {source: 1}
    # the next step re-issues the slow group first, for its missing samples only, as new attempts
    assert [(r.prompt_id, r.index, r.attempt) for r, _ in engine.submitted[: len(running)]] == [
        (slow, i, 1) for i in running
    ]
    assert second.reissued == 1
    assert all(r.prompt_id != slow for r, _ in engine.submitted[len(running) :])


def test_early_abort_by_time() -> None:
    engine = LoggingEngine(seed=3)
    probe = scheduler(engine)
    times = group_times(engine, probe, 10)
    order = by_time(times)
    timeout = (times[order[3]] + times[order[4]]) / 2
    batch = run_virtual(scheduler(engine, step_timeout_s=timeout).rollout_step())
    assert batch.wall_s == pytest.approx(timeout)
    assert sorted(batch.prompt_ids) == sorted(order[:4]) and sum(batch.deferred.values()) == 6
    assert batch.time_to_fraction(0.4) == pytest.approx(times[order[3]])
    assert batch.time_to_fraction(0.5) == math.inf


def test_finished_surplus_groups_are_cached_and_used_next() -> None:
    # rewards take 100 s and generation at most ~7 s: when the 10th group is scored, the other
    # two have finished generating and are being scored; they complete and are cached as surplus
    engine = LoggingEngine(seed=4, sigma=0.5)
    sched = scheduler(engine, RecordingReward(delay_s=100.0), oversample=2)
    first, second = two_steps(sched, engine)
    assert len(first.groups) == 10 and first.surplus_cached == 2 and first.aborted_requests == 0
    assert second.surplus_used == 2 and second.reissued == 0
    assert len(engine.submitted) == 10 * N  # the surplus groups need no request
    surplus = [g for g in second.groups if g.deferrals == 1]
    assert len(surplus) == 2 and all(g.completed_at == second.started_at for g in surplus)
    assert sched.totals["completed_after_deferral"] == 2


def test_engine_errors_are_retried_and_never_hang_a_step() -> None:
    engine = LoggingEngine(seed=5, failure_rate=0.3)
    batch = run_virtual(scheduler(engine, max_request_retries=10).rollout_step())
    assert len(batch.groups) == 10 and batch.failed_requests > 0
    assert batch.requests == 10 * N + batch.failed_requests

    no_retry = scheduler(LoggingEngine(seed=5, failure_rate=0.3), max_request_retries=0)
    batch = run_virtual(no_retry.rollout_step())  # groups with a failed request cannot complete
    assert 0 < len(batch.groups) < 10 and sum(batch.deferred.values()) == 10 - len(batch.groups)
    assert batch.aborted_requests == 0  # it stopped because nothing was left in flight


def test_reward_failures_give_nan_not_a_crash() -> None:
    def flaky(sample: Sample, response: str, metadata: dict) -> float:
        if metadata["index"] == 0:
            raise ValueError("verifier crashed")
        return 1.0

    batch = run_virtual(scheduler(SimulatedEngine(), RewardFunction(flaky)).rollout_step())
    assert len(batch.groups) == 10
    failed = [s for s in batch.samples if s.failure]
    assert len(failed) == 10 and all(math.isnan(s.reward) and s.index == 0 for s in failed)
    assert failed[0].failure == "reward raised ValueError: verifier crashed"
    metrics = batch.metrics()
    assert metrics["verifier_failures/count"] == 10.0 and metrics["reward/mean"] == 1.0


@pytest.mark.parametrize("on_stale", ["reissue", "drop"])
def test_groups_older_than_max_staleness(on_stale: str) -> None:
    engine = LoggingEngine(seed=2)
    sched = scheduler(engine, complete_fraction=0.9, max_staleness=1, on_stale=on_stale)

    async def main() -> RolloutBatch:
        await sched.rollout_step()
        engine.submitted.clear()
        sched.version = 2  # two policy updates later the deferred group is 2 versions old
        return await sched.rollout_step()

    second = run_virtual(main())
    slow = sched.dropped[0] if on_stale == "drop" else engine.submitted[0][0].prompt_id
    if on_stale == "reissue":  # restarted: every sample issued again under version 2
        assert [(r.prompt_id, r.index, r.version) for r, _ in engine.submitted[:N]] == [
            (slow, i, 2) for i in range(N)
        ]
        assert sched.cache.stale_reissued == 1 and second.issued_groups == 10
    else:
        assert second.stale_dropped == [slow] and all(r.prompt_id != slow for r, _ in engine.submitted)
        assert second.issued_groups == 10 and sched.totals["stale_dropped"] == 1


def test_epochs_visit_every_prompt_once_in_a_seeded_order() -> None:
    sched = scheduler(SimulatedEngine(), prompts=12, groups_per_step=5, num_epochs=2, complete_fraction=0.8)

    async def main() -> list[str]:
        ids: list[str] = []
        while not sched.finished:
            ids += (await sched.rollout_step()).prompt_ids
        with pytest.raises(RuntimeError, match="every prompt of the 2 epoch"):
            await sched.rollout_step()
        return ids

    ids = run_virtual(main())
    assert sorted(ids) == sorted(f"{e}/{i}" for e in (0, 1) for i in range(12))
    assert list(sched.order(0)) != list(sched.order(1))
    assert sorted(sched.order(0)) == list(range(12))


def test_state_dict_mid_step_and_mismatched_resume() -> None:
    sched = scheduler(SimulatedEngine(), complete_fraction=0.9)
    state = run_virtual(_state_after(sched, steps=1))
    assert json.loads(json.dumps(state)) == state
    assert state["step"] == 1 and state["cursor"] == 10
    other = scheduler(SimulatedEngine(), prompts=41)
    with pytest.raises(ValueError, match="num_prompts=40 but this scheduler has num_prompts=41"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="unknown rollout state format 7"):
        scheduler(SimulatedEngine()).load_state_dict({**state, "format": 7})


async def _state_after(sched: RolloutScheduler, steps: int) -> dict:
    for _ in range(steps):
        await sched.rollout_step()
    return sched.state_dict()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"group_size": 0}, "group_size must be an int >= 1, got 0"),
        ({"groups_per_step": 2.5}, "groups_per_step must be an int >= 1, got 2.5"),
        ({"oversample": -1}, "oversample must be >= 0, got -1"),
        ({"complete_fraction": 0}, r"complete_fraction must be in \(0, 1\], got 0"),
        ({"num_epochs": 0}, "num_epochs must be >= 1 or None, got 0"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    args = {"group_size": N, "groups_per_step": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        RolloutScheduler(SimulatedEngine(), RecordingReward(), make_prompts(4), **args)


def test_bad_components() -> None:
    with pytest.raises(TypeError, match="engine must be a RolloutEngine, got str"):
        RolloutScheduler("vllm", RecordingReward(), make_prompts(4), group_size=2, groups_per_step=2)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"reward must have an async score_async\(sample, response, metadata\)"
    ):
        RolloutScheduler(SimulatedEngine(), len, make_prompts(4), group_size=2, groups_per_step=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prompts is empty"):
        RolloutScheduler(SimulatedEngine(), RecordingReward(), [], group_size=2, groups_per_step=2)
