"""Shared helpers of the rollout tests: prompts with source tags and a recording reward."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from glmkit.rl.rollout import Completion, RolloutRequest, SimulatedEngine
from glmkit.scoring import Sample


def make_prompts(n: int, sources: tuple[str, ...] = ("count", "ocr")) -> list[Sample]:
    """``n`` prompts whose answer is their index, tagged round-robin with ``sources``."""
    return [
        Sample(id=f"p{i}", question=f"question {i}", answer=str(i), source=sources[i % len(sources)])
        for i in range(n)
    ]


class RecordingReward:
    """1.0 for the reference answer, else 0.0; records (prompt id, index, loop time) of each call
    and, with ``delay_s``, takes that long (an async judge)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls: list[tuple[str, int, float]] = []

    async def score_async(self, sample: Sample, response: str, metadata: Mapping[str, Any]) -> float:
        self.calls.append((metadata["prompt_id"], metadata["index"], asyncio.get_running_loop().time()))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return float(response == sample.answer)


class LoggingEngine(SimulatedEngine):
    """A :class:`SimulatedEngine` that logs each submission as (request, loop time)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.submitted: list[tuple[RolloutRequest, float]] = []

    def submit(self, request: RolloutRequest, on_complete: Any = None) -> asyncio.Future[Completion]:
        self.submitted.append((request, asyncio.get_running_loop().time()))
        return super().submit(request, on_complete)
