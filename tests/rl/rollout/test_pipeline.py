"""The asynchronous pipeline: rollouts overlap training, and a resume loses and repeats no prompt."""

from __future__ import annotations

import asyncio
import json

import pytest

from glmkit.rl.rollout import RolloutPipeline, RolloutScheduler, SimulatedEngine, run_virtual
from tests.rl.rollout.toys import LoggingEngine, RecordingReward, make_prompts

N = 4  # samples per group
PROMPTS = 30


def pipeline(engine: SimulatedEngine, max_ahead: int = 1, **kw: object) -> RolloutPipeline:
    settings: dict = {
        "group_size": N,
        "groups_per_step": 4,
        "num_epochs": 1,
        "complete_fraction": 0.75,
        **kw,
    }
    scheduler = RolloutScheduler(engine, RecordingReward(delay_s=0.5), make_prompts(PROMPTS), **settings)
    return RolloutPipeline(scheduler, max_ahead=max_ahead)


@pytest.mark.parametrize("max_ahead", [1, 0])
def test_next_rollout_starts_before_the_batch_is_consumed(max_ahead: int) -> None:
    engine = LoggingEngine(seed=0)
    pipe = pipeline(engine, max_ahead=max_ahead)

    async def main() -> tuple[bool, float, float]:
        first = await pipe.next_batch()  # the trainer now holds batch 0 and has not finished it
        assert first is not None

        async def next_rollout_started() -> None:
            while not any(r.step == 1 for r, _ in engine.submitted):
                await asyncio.sleep(1.0)

        try:  # a generous virtual-time bound: step 0 took a few seconds
            await asyncio.wait_for(next_rollout_started(), timeout=1000.0)
            started = True
        except asyncio.TimeoutError:
            started = False
        began = min((at for r, at in engine.submitted if r.step == 1), default=float("nan"))
        await pipe.close()
        return started, began, first.finished_at

    started, began, first_done = run_virtual(main())
    if max_ahead == 1:  # rollout 1 began the moment rollout 0 ended, while batch 0 was being consumed
        assert started and began == pytest.approx(first_done)
    else:  # the synchronous loop waits for the trainer to ask for batch 1
        assert not started


async def train(
    pipe: RolloutPipeline, trained: list[str], train_s: float, stop_after: int | None
) -> dict | None:
    """Consume batches like a trainer: take, train (sleep), push new weights; maybe checkpoint and stop."""
    steps = 0
    while (batch := await pipe.next_batch()) is not None:
        for group in batch.groups:
            assert group.complete and sorted(s.index for s in group.scored_samples()) == list(range(N))
        trained += batch.prompt_ids
        await asyncio.sleep(train_s)
        await pipe.update_weights(pipe.scheduler.version + 1)
        steps += 1
        if steps == stop_after:
            state = pipe.state_dict()  # a checkpoint between training steps
            await pipe.close()  # ... and the process dies
            return state
    return None


@pytest.mark.parametrize("max_ahead", [0, 1])
@pytest.mark.parametrize("checkpoint_after", [1, 3])
@pytest.mark.parametrize("train_s", [0.1, 50.0])  # next rollout in flight / already queued at the checkpoint
def test_every_prompt_is_trained_exactly_once_across_abort_and_resume(
    max_ahead: int, checkpoint_after: int, train_s: float
) -> None:
    settings = {"oversample": 1, "max_staleness": 2}
    before: list[str] = []
    first = pipeline(SimulatedEngine(seed=7), max_ahead, **settings)
    state = run_virtual(train(first, before, train_s, stop_after=checkpoint_after))
    assert state is not None and len(before) > 0
    assert first.scheduler.totals["aborted_requests"] > 0  # early abort did happen before the checkpoint
    if max_ahead == 1:  # the step in flight or the queued batch is part of the checkpoint
        assert state["cache"]["groups"]
    state = json.loads(json.dumps(state))  # a checkpoint is plain data

    after: list[str] = []
    resumed = pipeline(SimulatedEngine(seed=7), max_ahead, **settings)
    resumed.load_state_dict(state)
    assert run_virtual(train(resumed, after, train_s, stop_after=None)) is None
    every = [f"0/{i}" for i in range(PROMPTS)]
    assert sorted(before + after) == sorted(every)  # each prompt of the epoch, exactly once
    assert resumed.scheduler.finished and resumed.scheduler.dropped == []
    totals = first.scheduler.totals + resumed.scheduler.totals
    assert totals["deferred"] > 0 and totals["completed_after_deferral"] > 0


def test_producer_errors_reach_the_consumer() -> None:
    engine = SimulatedEngine(failure_rate=1.0)
    pipe = pipeline(engine, max_request_retries=0)

    async def main() -> None:
        with pytest.raises(
            RuntimeError, match="3 rollout steps in a row gave no complete group .*16 engine errors of 16"
        ):
            await pipe.next_batch()
        assert await pipe.next_batch() is None

    run_virtual(main())


def test_usage_errors() -> None:
    with pytest.raises(ValueError, match="max_ahead must be >= 0, got -1"):
        pipeline(SimulatedEngine(), max_ahead=-1)
    pipe = pipeline(SimulatedEngine())

    async def main() -> None:
        async with pipe:
            with pytest.raises(RuntimeError, match="load the rollout state before the pipeline starts"):
                pipe.load_state_dict({})

    run_virtual(main())
