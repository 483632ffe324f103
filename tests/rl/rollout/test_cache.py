"""The prompt cache: oldest first, version stamps with an age cap, and a checkpoint round trip."""

from __future__ import annotations

import json

import pytest

from glmkit.rl.rollout import PromptCache, RolloutGroup, ScoredSample
from tests.rl.rollout.toys import make_prompts

PROMPTS = make_prompts(6)


def group(index: int, version: int = 0, done: tuple[int, ...] = ()) -> RolloutGroup:
    g = RolloutGroup(0, index, PROMPTS[index], group_size=3, version=version)
    for i in done:
        g.samples[i] = ScoredSample(g.prompt_id, i, g.source, "r", reward=1.0, version=version)
        g.attempts[i] = 1
    return g


def ids(groups: list[RolloutGroup]) -> list[str]:
    return [g.prompt_id for g in groups]


def test_oldest_first_and_put_front() -> None:
    cache = PromptCache()
    for i in range(4):
        cache.put(group(i))
    taken, dropped = cache.take(2, version=0)
    assert ids(taken) == ["0/0", "0/1"] and dropped == []
    cache.put_front(taken)
    assert ids(list(cache)) == ["0/0", "0/1", "0/2", "0/3"]
    assert ids(cache.take(10, version=0)[0]) == ["0/0", "0/1", "0/2", "0/3"] and len(cache) == 0


def test_stale_groups_are_reissued_from_scratch() -> None:
    cache = PromptCache(max_staleness=2)
    cache.put(group(0, version=1, done=(0, 2)))
    cache.put(group(1, version=0, done=(1,)))
    taken, _ = cache.take(2, version=3)
    fresh_enough, stale = taken
    assert fresh_enough.missing() == [1] and fresh_enough.version == 1  # 3 - 1 = 2: kept
    assert stale.missing() == [0, 1, 2] and stale.version == 3  # 3 - 0 = 3 > 2: restarted
    assert stale.attempts == [0, 1, 0]  # attempts still count (a re-issue draws a new latency)
    assert cache.stale_reissued == 1


def test_stale_groups_are_dropped_and_reported() -> None:
    cache = PromptCache(max_staleness=0, on_stale="drop")
    for i, version in enumerate((0, 1, 0)):
        cache.put(group(i, version=version))
    taken, dropped = cache.take(2, version=1)
    assert ids(taken) == ["0/1"] and ids(dropped) == ["0/0", "0/2"] and cache.stale_dropped == 2


def test_state_round_trip_through_json() -> None:
    cache = PromptCache(max_staleness=4)
    cache.put(group(4, version=2, done=(1,)))
    cache.put(group(5, version=3, done=(0, 1, 2)))
    extra = group(0, version=3, done=(2,))
    state = json.loads(json.dumps(cache.state_dict(extra_first=[extra])))
    restored = PromptCache(max_staleness=4)
    restored.load_state_dict(state, PROMPTS.__getitem__, group_size=3)
    assert ids(list(restored)) == ["0/0", "0/4", "0/5"]
    for before, after in zip([extra, *cache], restored, strict=True):
        assert after.sample is PROMPTS[after.prompt_index]
        assert (after.version, after.attempts, after.samples) == (
            before.version,
            before.attempts,
            before.samples,
        )
    with pytest.raises(ValueError, match="group 0/0 has 3 samples but group_size is 2; .*another group_size"):
        PromptCache().load_state_dict(state, PROMPTS.__getitem__, group_size=2)
    state["groups"][0]["attempts"] = []
    with pytest.raises(ValueError, match="group 0/0: sample index 2 is outside 0..1"):
        PromptCache().load_state_dict(state, PROMPTS.__getitem__, group_size=2)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_staleness must be >= 0 or None, got -1"):
        PromptCache(max_staleness=-1)
    with pytest.raises(ValueError, match=r"on_stale must be one of \('reissue', 'drop'\), got 'keep'"):
        PromptCache(on_stale="keep")
