"""Verifiers that misbehave on purpose, importable by worker processes (only glmkit.scoring)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from glmkit.scoring import Sample, Scores, Verifier


class Constant(Verifier):
    """Always ``value``; counts its calls (in the process that runs it)."""

    name = "constant"

    def __init__(self, value: float = 1.0, key: str | None = None) -> None:
        super().__init__(key)
        self.value = value
        self.calls = 0

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        self.calls += 1
        return self._out(self.value, {"pid": os.getpid()})


class Raises(Verifier):
    """Raises on every call."""

    name = "raises"

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        raise RuntimeError("verifier exploded")


class Garbage(Verifier):
    """Returns something unusable: ``what`` is ``text``, ``nan``, ``missing``, ``big`` or ``string``."""

    name = "garbage"

    def __init__(self, what: str = "text", key: str | None = None) -> None:
        super().__init__(key)
        self.what = what

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Any:
        if self.what == "text":
            return "definitely a score"
        if self.what == "nan":
            return self._out(float("nan"))
        if self.what == "missing":
            return Scores(scores={"something_else": 1.0})
        if self.what == "big":
            return self._out(7.0)
        return Scores(scores={self.key: "high"})  # type: ignore[dict-item]


class Reports(Verifier):
    """Returns a score with ``failure`` set, as a judge that fell back does."""

    name = "reports"

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        out = self._out(0.0)
        out.failure = "could not render the page"
        return out


class SleepsForever(Verifier):
    """Never returns (sleeps)."""

    name = "sleeps_forever"

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        time.sleep(3600)
        return self._out(1.0)


class BusyLoop(Verifier):
    """Never returns (spins on the CPU, as a runaway sympy simplification does)."""

    name = "busy_loop"

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        n = 0
        while True:
            n += 1


class ExitsWorker(Verifier):
    """Kills the process it runs in (a segfaulting extension)."""

    name = "exits_worker"

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        os._exit(3)


class Echo(Verifier):
    """The length of the response over 10, and the metadata it was given (to check what was sent)."""

    name = "echo"

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        return self._out(min(1.0, len(response) / 10), {"metadata": dict(metadata or {}), "pid": os.getpid()})
