"""The simulated engine: seeded log-normal latencies that do not depend on submission order."""

from __future__ import annotations

import asyncio
import math
import statistics

import pytest

from glmkit.rl.rollout import Completion, RolloutRequest, SimulatedEngine, run_virtual
from tests.rl.rollout.toys import make_prompts

PROMPTS = make_prompts(8)


def request(prompt: int, index: int = 0, attempt: int = 0) -> RolloutRequest:
    return RolloutRequest(f"0/{prompt}", index, PROMPTS[prompt], attempt=attempt)


def test_latency_is_a_function_of_the_request_key() -> None:
    engine = SimulatedEngine(seed=3)
    assert engine.latency(request(1, 2)) == SimulatedEngine(seed=3).latency(request(1, 2))
    assert engine.latency(request(1, 2)) != engine.latency(request(1, 2, attempt=1))  # a re-issue redraws
    assert engine.latency(request(1, 2)) != SimulatedEngine(seed=4).latency(request(1, 2))


def test_lognormal_shape() -> None:
    engine = SimulatedEngine(median_latency_s=2.0, sigma=0.5)
    logs = [math.log(engine.latency(request(p % 8, p))) for p in range(4000)]
    # seeded draws: the sample median and spread of log-latency are log(2) and 0.5 up to noise
    assert statistics.median(logs) == pytest.approx(math.log(2.0), abs=0.05)
    assert statistics.stdev(logs) == pytest.approx(0.5, abs=0.03)


def test_completions_arrive_at_their_latencies_whatever_the_submission_order() -> None:
    async def run(order: list[int]) -> dict[str, float]:
        engine, loop, finished = SimulatedEngine(seed=1), asyncio.get_running_loop(), {}

        def record(c: Completion) -> None:
            finished[c.request.request_id] = loop.time()

        await asyncio.gather(*(engine.submit(request(p), record) for p in order))
        return finished

    forward = run_virtual(run(list(range(8))))
    backward = run_virtual(run(list(range(7, -1, -1))))
    engine = SimulatedEngine(seed=1)
    assert forward == backward == {f"0/{p}#0": pytest.approx(engine.latency(request(p))) for p in range(8)}


def test_max_concurrency_queues_requests() -> None:
    async def main() -> list[float]:
        engine, loop, times = SimulatedEngine(sigma=0.0, max_concurrency=2), asyncio.get_running_loop(), []
        await asyncio.gather(
            *(engine.submit(request(p), lambda c: times.append(loop.time())) for p in range(5))
        )
        return times

    assert run_virtual(main()) == [1.0, 1.0, 2.0, 2.0, 3.0]  # two at a time, 1 s each


def test_responses_tokens_and_failures() -> None:
    async def main() -> list[Completion]:
        engine = SimulatedEngine(correct_prob=1.0, tokens_per_s=10, sigma=0.0, median_latency_s=2.0)
        right = await engine.submit(request(5))
        wrong = await SimulatedEngine(correct_prob=0.0).submit(request(5))
        failed = await SimulatedEngine(failure_rate=1.0).submit(request(5))
        return [right, wrong, failed]

    right, wrong, failed = run_virtual(main())
    assert right.response == "5" and right.response_tokens == 20 and right.finish_reason == "stop"
    assert right.metadata["latency_s"] == 2.0
    assert wrong.response == "not 5"
    assert failed.finish_reason == "error" and "simulated engine failure on 0/5#0" in (failed.error or "")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"median_latency_s": 0}, "median_latency_s must be > 0, got 0"),
        ({"sigma": -1}, "sigma and prompt_sigma must be >= 0"),
        ({"max_concurrency": 0}, "max_concurrency must be >= 1 or None, got 0"),
        ({"correct_prob": 2}, r"correct_prob must be in \[0, 1\], got 2"),
    ],
)
def test_bad_arguments(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulatedEngine(**kwargs)  # type: ignore[arg-type]
