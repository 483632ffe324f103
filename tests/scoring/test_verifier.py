"""The verifier interface itself: sync and async scores, the defaults, and a dependency-free import."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import pytest

from glmkit.scoring import Sample, Scores, Verifier


class LengthAtMost(Verifier):
    """1 when the response is at most ``limit`` characters; the length as a distance sub-score."""

    name = "length_at_most"
    lower_is_better = ("chars",)

    def __init__(self, limit: int = 5, key: str | None = None) -> None:
        super().__init__(key)
        self.limit = limit
        self.metadata_seen: list[Mapping[str, Any] | None] = []

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        self.metadata_seen.append(metadata)
        if not response:
            out = self._out(0.0, chars=0)
            out.failure = "empty response"
            return out
        return self._out(float(len(response) <= self.limit), {"response": response}, chars=len(response))


SAMPLE = Sample("s1", "Say hi.", ["hi", "hello"], category="chat", source="synthetic")


def test_scores_name_the_key_and_sub_scores() -> None:
    out = LengthAtMost(key="short").score(SAMPLE, "hello!")
    assert out == Scores({"short": 0.0, "short.chars": 6.0}, {"response": "hello!"}, None)
    assert LengthAtMost().describe() == {"name": "length_at_most", "key": "length_at_most"}
    assert LengthAtMost().oracle(SAMPLE) == "hi"  # the first reference


def test_async_default_gives_the_sync_scores_and_passes_metadata() -> None:
    verifier = LengthAtMost()
    meta = {"turns": 2}
    for response in ("hi", "far too long", ""):
        sync = verifier.score(SAMPLE, response, meta)
        asynchronous = asyncio.run(verifier.ascore(SAMPLE, response, meta))
        assert asynchronous == sync
    assert verifier.metadata_seen == [meta] * 6
    assert asyncio.run(verifier.ascore(SAMPLE, "")).failure == "empty response"


def test_many_async_scores_run_in_one_event_loop() -> None:
    verifier = LengthAtMost(limit=3)

    async def score_all() -> list[Scores]:
        return await asyncio.gather(*(verifier.ascore(SAMPLE, "x" * n) for n in range(6)))

    assert [s.scores["length_at_most"] for s in asyncio.run(score_all())] == [0.0, 1, 1, 1, 0, 0]


def test_a_verifier_must_implement_score() -> None:
    class NoScore(Verifier):
        name = "no_score"

    with pytest.raises(TypeError, match="abstract"):
        NoScore()  # type: ignore[abstract]


def test_the_seam_imports_without_torch_lightning_or_eval() -> None:
    code = (
        "import sys, glmkit.scoring; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'lightning', 'torchmetrics') "
        "or m.startswith(('glmkit.eval', 'glmkit.stages', 'glmkit.data'))]; print(bad); sys.exit(1 if bad else 0)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
