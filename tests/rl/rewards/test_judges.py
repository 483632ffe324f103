"""Model judges in the reward system against a real OpenAI-compatible server on loopback: the
concurrency limit (counted by the server), deadlines and per-request timeouts, retries on 5xx,
garbage replies under each failure policy, the answer-length cap, and scoring as rollouts finish."""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from typing import Any

import pytest

from glmkit.eval.metrics import JudgeScorer
from glmkit.eval.metrics.answer_format import AnswerFormat
from glmkit.rl.rewards import CategoryRewards, Gated, RewardSystem
from glmkit.scoring import Sample
from tests.helpers.openai_server import ScriptedOpenAIServer, reply

OK = reply(content='{"score": 1}')


def _sample(i: int = 0, source: str = "vqa") -> Sample:
    return Sample(f"s{i}", "What colour is the car?", "red", category="open_vqa", source=source)


def _system(judge: JudgeScorer, **kw: Any) -> RewardSystem:
    return RewardSystem(
        {"format": AnswerFormat(), "judge": judge},
        {"open_vqa": CategoryRewards(format=["format"], verifiers=["judge"], aggregator=Gated())},
        **kw,
    )


class InFlight:
    """A server script entry that holds each request ``delay`` s and records the peak in flight."""

    def __init__(self, delay: float, content: str = '{"score": 1}') -> None:
        self.delay, self.content = delay, content
        self.now = self.peak = self.total = 0
        self.lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.now += 1
            self.total += 1
            self.peak = max(self.peak, self.now)
        time.sleep(self.delay)
        with self.lock:
            self.now -= 1
        return reply(content=self.content)


@pytest.mark.parametrize(("limit", "least"), [(2, 2), (6, 3)])
def test_concurrency_limit_is_respected(limit: int, least: int) -> None:
    counter = InFlight(delay=0.3)
    with ScriptedOpenAIServer([counter]) as srv:
        rs = _system(JudgeScorer(judge_url=srv.base_url, timeout=30), judge_concurrency=limit)
        samples = [_sample(i) for i in range(12)]
        results = rs.score_batch(samples, ["<answer>red</answer>"] * 12)
    assert [r.reward for r in results] == [1.0] * 12
    assert counter.total == 12
    assert least <= counter.peak <= limit  # never above the limit, and concurrent up to it


def test_the_deadline_bounds_a_slow_judge() -> None:
    with ScriptedOpenAIServer([InFlight(delay=3.0)]) as srv:
        rs = _system(JudgeScorer(judge_url=srv.base_url, timeout=30), judge_deadline=0.3, fallback_reward=0.2)
        start = time.monotonic()
        out = rs.score(_sample(), "<answer>red</answer>")
        elapsed = time.monotonic() - start
    assert elapsed < 2.5
    assert out.reward == 0.2 and out.policy == "fallback"
    assert out.breakdown["judge"].failure_kind == "timeout"
    assert out.failures == {"judge": "judge did not answer within 0.3 s"}


def test_per_request_timeout_and_retries_of_the_eval_judge() -> None:
    # a server that accepts and never answers: each request times out after 0.2 s, is retried once,
    # and the judge reports the failure; the reward system applies the source's policy
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1@judge"
        judge = JudgeScorer(judge_url=url, timeout=0.2, http_retries=1, backoff=0.01)
        rs = _system(judge, sources={"vqa": {"on_failure": "exclude"}})
        out = rs.score(_sample(), "<answer>red</answer>")
    assert out.excluded and math.isnan(out.reward)
    outcome = out.breakdown["judge"]
    assert outcome.failure_kind == "reported"
    assert "ReadTimeout" in (outcome.failure or "") and "after 2 attempt(s)" in (outcome.failure or "")


def test_5xx_is_retried_with_backoff() -> None:
    with ScriptedOpenAIServer([500, 502, OK]) as srv:
        rs = _system(JudgeScorer(judge_url=srv.base_url, http_retries=2, backoff=0.05))
        start = time.monotonic()
        out = rs.score(_sample(), "<answer>red</answer>")
        elapsed, asked = time.monotonic() - start, len(srv.requests)
    assert out.reward == 1.0 and not out.failed and asked == 3
    assert elapsed >= 0.05 + 0.1  # backoff 0.05 s, then doubled
    with ScriptedOpenAIServer([503]) as srv:
        rs = _system(JudgeScorer(judge_url=srv.base_url, http_retries=2, backoff=0.01), fallback_reward=0.3)
        out = rs.score(_sample(), "<answer>red</answer>")
        asked = len(srv.requests)
    assert asked == 3 and out.reward == 0.3
    assert "HTTP 503" in out.failures["judge"] and out.breakdown["judge"].failure_kind == "reported"


def test_garbage_replies_fall_back_or_exclude_per_source_and_are_counted() -> None:
    with ScriptedOpenAIServer([reply(content="I like turtles")]) as srv:
        judge = JudgeScorer(judge_url=srv.base_url, max_attempts=2, backoff=0.01)
        rs = _system(
            judge,
            sources={"flaky": {"on_failure": "exclude"}, "steady": {"fallback_reward": 0.5}},
        )
        results = rs.score_batch(
            [_sample(0, "flaky"), _sample(1, "steady"), _sample(2, "other")], ["<answer>red</answer>"] * 3
        )
        asked = len(srv.requests)
    assert asked == 6  # each judgement re-asked once
    flaky, steady, other = results
    assert flaky.excluded and math.isnan(flaky.reward)
    assert steady.reward == 0.5 and other.reward == 0.0 and not steady.excluded
    for r in results:
        assert "unparseable judge reply" in r.failures["judge"] and "turtles" in r.failures["judge"]
        assert r.breakdown["format"].score == 1.0
    counts = rs.log_dict()
    assert counts["rewards/failures/flaky/judge/count"] == 1 and counts["rewards/failures/count"] == 3
    assert counts["rewards/excluded/flaky/count"] == 1 and counts["rewards/fallback/steady/count"] == 1
    assert counts["rewards/failure_kind/reported/count"] == 3


def test_judge_not_asked_on_long_empty_or_malformed_answers() -> None:
    with ScriptedOpenAIServer([OK]) as srv:
        rs = _system(JudgeScorer(judge_url=srv.base_url), max_answer_chars=20)
        long = rs.score(_sample(), "<answer>" + "red " * 20 + "</answer>")
        empty = RewardSystem(  # no gate: the empty answer reaches the content verifiers
            {"judge": JudgeScorer(judge_url=srv.base_url)}, {"*": {"verifiers": ["judge"]}}
        ).score(_sample(), "<think>hmm</think>")
        malformed = rs.score(_sample(), "red")  # the gate (format) is closed
        asked_before = len(srv.requests)
        short = rs.score(_sample(), "<answer>red</answer>")
        asked = len(srv.requests)
    assert asked_before == 0 and asked == 1
    assert long.reward == 0.0 and long.breakdown["judge"].status == "capped" and not long.failed
    assert "exceeds max_answer_chars=20" in long.breakdown["judge"].details["reason"]
    assert empty.reward == 0.0 and empty.breakdown["judge"].status == "empty" and empty.empty_answer
    assert malformed.reward == 0.0 and malformed.breakdown["judge"].status == "skipped"
    assert short.reward == 1.0


def test_scored_as_each_rollout_finishes() -> None:
    # Rollouts finish at different times; each one's reward starts when it finishes (a completion
    # callback), so the fast rollouts are scored while the slow one is still generating.
    with ScriptedOpenAIServer([InFlight(delay=0.05)]) as srv:
        rs = _system(JudgeScorer(judge_url=srv.base_url, timeout=30), judge_concurrency=4)
        scored_at: dict[str, float] = {}

        async def rollout(i: int, seconds: float) -> float:
            await asyncio.sleep(seconds)  # generation
            result = await rs.score_async(_sample(i), "<answer>red</answer>")
            scored_at[result.sample_id] = time.monotonic()
            return result.reward

        async def main() -> list[float]:
            return list(await asyncio.gather(rollout(0, 0.0), rollout(1, 0.0), rollout(2, 1.5)))

        start = time.monotonic()
        rewards = asyncio.run(main())
    assert rewards == [1.0, 1.0, 1.0]
    assert scored_at["s0"] - start < 1.0 and scored_at["s1"] - start < 1.0  # before s2 finished
    assert scored_at["s2"] - start >= 1.5


def test_sync_score_inside_a_loop_points_to_score_async() -> None:
    rs = _system(JudgeScorer(judge_url="http://127.0.0.1:9/v1"))

    async def main() -> None:
        rs.score(_sample(), "<answer>red</answer>")

    with pytest.raises(RuntimeError, match=r"use `await score_async\(...\)`"):
        asyncio.run(main())
