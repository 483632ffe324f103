"""The per-request reward: result shapes, and failures that never stop the rollout."""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace

import pytest

from glmkit.rl.rollout import (
    Completion,
    CompletionReward,
    RewardFunction,
    RolloutRequest,
    reward_value,
    run_virtual,
    score_completion,
)
from tests.rl.rollout.toys import RecordingReward, make_prompts

SAMPLE = make_prompts(3)[2]
COMPLETION = Completion(
    RolloutRequest("0/2", 1, SAMPLE, version=4, attempt=1), "2", response_tokens=7, weights_version=5
)


def test_result_shapes() -> None:
    assert reward_value(0.5) == (0.5, None)
    assert reward_value(True) == (1.0, None)
    assert reward_value({"reward": 1, "failure": "judge fell back"}) == (1.0, "judge fell back")
    assert reward_value(SimpleNamespace(reward=0.25, breakdown={"iou": 0.25})) == (0.25, None)
    value, failure = reward_value(None)
    assert math.isnan(value) and failure == "no reward"
    with pytest.raises(TypeError, match="needs a 'reward' key, got keys \\['score'\\]"):
        reward_value({"score": 1.0})
    with pytest.raises(TypeError, match="a reward must be a number.*got str 'high'"):
        reward_value("high")


def test_protocol_and_function_adapter() -> None:
    assert isinstance(RecordingReward(), CompletionReward)
    assert not isinstance(object(), CompletionReward)

    async def judge(sample: object, response: str, metadata: object) -> float:
        await asyncio.sleep(1)
        return 0.75

    sync = RewardFunction(lambda s, r, m: float(r == s.answer))
    assert isinstance(sync, CompletionReward)
    assert run_virtual(sync.score_async(SAMPLE, "2", {})) == 1.0
    assert run_virtual(RewardFunction(judge).score_async(SAMPLE, "2", {})) == 0.75
    with pytest.raises(TypeError, match="fn must be callable, got int"):
        RewardFunction(3)  # type: ignore[arg-type]


def test_score_completion_passes_metadata_and_keeps_the_result() -> None:
    seen = {}

    def fn(sample: object, response: str, metadata: dict) -> dict:
        seen.update(metadata)
        return {"reward": 1.0, "parts": [1.0]}

    scored = run_virtual(score_completion(RewardFunction(fn), COMPLETION))
    assert seen == {
        "prompt_id": "0/2",
        "index": 1,
        "source": SAMPLE.source,
        "finish_reason": "stop",
        "response_tokens": 7,
        "version": 4,
        "weights_version": 5,
    }
    assert (scored.reward, scored.failure, scored.source, scored.version, scored.attempt) == (
        1.0,
        None,
        SAMPLE.source,
        4,
        1,
    )
    assert scored.result == {"reward": 1.0, "parts": [1.0]}


def test_failures_give_nan_and_a_reason() -> None:
    def raises(*_: object) -> float:
        raise ZeroDivisionError("division by zero")

    async def hangs(*_: object) -> float:
        await asyncio.sleep(1e6)
        return 1.0

    cases = [
        (RewardFunction(raises), None, "reward raised ZeroDivisionError: division by zero"),
        (RewardFunction(hangs), 30.0, "reward timed out after 30.0 s"),
        (RewardFunction(lambda *_: "garbage"), None, "bad reward result: a reward must be a number"),
        (RewardFunction(lambda *_: math.inf), None, "infinite reward inf"),
    ]
    for reward, timeout, reason in cases:
        scored = run_virtual(score_completion(reward, COMPLETION, timeout_s=timeout))
        assert math.isnan(scored.reward) and not scored.scored
        assert scored.failure is not None and scored.failure.startswith(reason)
