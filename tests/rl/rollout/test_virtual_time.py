"""The virtual-clock event loop: timers fire in order, and the clock reads their times exactly."""

from __future__ import annotations

import asyncio

from glmkit.rl.rollout import run_virtual


def test_sleeps_advance_the_virtual_clock_in_order() -> None:
    async def main() -> list[tuple[str, float]]:
        loop, log = asyncio.get_running_loop(), []

        async def sleeper(name: str, seconds: float) -> None:
            await asyncio.sleep(seconds)
            log.append((name, loop.time()))

        await asyncio.gather(sleeper("day", 86400.0), sleeper("hour", 3600.0), sleeper("now", 0))
        return log

    assert run_virtual(main()) == [("now", 0.0), ("hour", 3600.0), ("day", 86400.0)]


def test_timeouts_and_threads() -> None:
    async def main() -> tuple[bool, float, int]:
        try:
            await asyncio.wait_for(asyncio.sleep(100), timeout=5)
            timed_out = False
        except asyncio.TimeoutError:
            timed_out = True
        at = asyncio.get_running_loop().time()
        value = await asyncio.to_thread(lambda: 7)  # real I/O wakes the loop (no timer pending)
        return timed_out, at, value

    assert run_virtual(main()) == (True, 5.0, 7)


def test_pending_tasks_are_cancelled_at_exit() -> None:
    cancelled = []

    async def forever() -> None:
        try:
            await asyncio.sleep(1e9)
        finally:
            cancelled.append(True)

    async def main() -> str:
        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0)
        return "done"

    assert run_virtual(main()) == "done" and cancelled == [True]
