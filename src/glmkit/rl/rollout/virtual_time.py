"""An asyncio event loop on a virtual clock: timers fire in order at once, no wall time passes.

Tests of a rollout pipeline must not depend on the machine being fast: "the step stopped after
90% of its groups" or "the next rollout began before this batch was consumed" should hold on a
loaded 2-core machine exactly as on an idle one. Under :func:`run_virtual`, ``loop.time()``
starts at 0 and jumps straight to the next timer whenever nothing is ready to run, so
``asyncio.sleep(3600)`` returns immediately and ``loop.time()`` then reads 3600. Coroutines see
the same ordering as on the real clock, exactly and reproducibly.

Real I/O still works (the loop polls it without blocking before each jump; with no timer
pending it waits for I/O as usual). Time spent in threads or CPU work is invisible to the virtual
clock, and while a thread works the clock may jump to the next timer: do not race executor work
against a virtual timeout.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _JumpingSelector(selectors.BaseSelector):
    """Wraps a real selector: a wait for a timer advances the loop's virtual clock instead."""

    def __init__(self, loop_clock: list[float]) -> None:
        self._real = selectors.DefaultSelector()
        self._clock = loop_clock

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:  # no timer pending: wait for real I/O (a thread waking the loop)
            return self._real.select(None)
        events = self._real.select(0)
        if not events and timeout > 0:
            self._clock[0] += timeout  # jump to the next timer
        return events

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.get_key(fileobj)

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose ``time()`` is virtual (module docstring)."""

    def __init__(self) -> None:
        self._virtual_now = [0.0]
        super().__init__(_JumpingSelector(self._virtual_now))

    def time(self) -> float:
        """The virtual time in seconds (0 at creation)."""
        return self._virtual_now[0]


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a fresh :class:`VirtualTimeLoop` (like ``asyncio.run``)."""
    loop = VirtualTimeLoop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
