"""The rollout-engine interface: callbacks on completion, aborts, errors, weight versions, registry."""

from __future__ import annotations

import asyncio

import pytest

from glmkit.registry import RegistryError, registry
from glmkit.rl.rollout import (
    ROLLOUT_ENGINES,
    Completion,
    RolloutEngine,
    RolloutRequest,
    SamplingParams,
    SimulatedEngine,
    run_virtual,
)
from tests.rl.rollout.toys import make_prompts

PROMPTS = make_prompts(4)


def request(prompt: int, index: int = 0, **kw: object) -> RolloutRequest:
    return RolloutRequest(prompt_id=f"0/{prompt}", index=index, sample=PROMPTS[prompt], **kw)  # type: ignore[arg-type]


class FixedEngine(RolloutEngine):
    """Latency = 1 + prompt number (seconds); prompt 3 fails; records abort_requests calls."""

    def __init__(self) -> None:
        super().__init__()
        self.told_to_abort: list[str] = []
        self.loaded: list[object] = []

    async def generate(self, request: RolloutRequest) -> Completion:
        number = int(request.prompt_id.split("/")[1])
        await asyncio.sleep(1 + number)
        if number == 3:
            raise RuntimeError("server said no")
        return Completion(request, "ok", response_tokens=5, weights_version=self.weights_version)

    async def abort_requests(self, requests: list[RolloutRequest]) -> None:
        self.told_to_abort += [r.request_id for r in requests]

    async def load_weights(self, weights: object) -> None:
        self.loaded.append(weights)


def test_registry() -> None:
    assert registry("rollout_engines") is ROLLOUT_ENGINES
    assert ROLLOUT_ENGINES.get("simulated") is SimulatedEngine
    with pytest.raises(RegistryError, match="is not a glmkit.rl.rollout.engine.RolloutEngine"):
        ROLLOUT_ENGINES.register("not_an_engine")(dict)


def test_callback_runs_when_each_request_finishes() -> None:
    async def main() -> tuple[list[tuple[str, float]], list[str]]:
        engine, loop, heard = FixedEngine(), asyncio.get_running_loop(), []
        futures = [
            engine.submit(request(p), lambda c: heard.append((c.request.request_id, loop.time())))
            for p in (2, 0, 1)
        ]
        assert [r.request_id for r in engine.outstanding] == ["0/2#0", "0/0#0", "0/1#0"]
        results = await asyncio.gather(*futures)
        return heard, [c.request.request_id for c in results]

    heard, results = run_virtual(main())
    assert heard == [("0/0#0", 1.0), ("0/1#0", 2.0), ("0/2#0", 3.0)]  # each at its own finish time
    assert results == ["0/2#0", "0/0#0", "0/1#0"]


def test_abort_cancels_without_callbacks_and_tells_the_backend() -> None:
    async def main() -> None:
        engine, heard = FixedEngine(), []
        futures = {p: engine.submit(request(p), heard.append) for p in range(3)}
        await asyncio.sleep(1.5)  # prompt 0 finished
        aborted = await engine.abort(["0/1#0", "0/0#0", "never-submitted"])
        assert [r.request_id for r in aborted] == ["0/1#0"]
        assert engine.told_to_abort == ["0/1#0"]
        assert futures[1].cancelled() and [r.request_id for r in engine.outstanding] == ["0/2#0"]
        rest = await engine.abort()  # everything outstanding
        assert [r.request_id for r in rest] == ["0/2#0"] and engine.outstanding == []
        await asyncio.sleep(10)
        assert [c.request.request_id for c in heard] == ["0/0#0"]

    run_virtual(main())


def test_engine_error_finishes_the_request_with_its_message() -> None:
    async def main() -> Completion:
        engine = FixedEngine()
        return await engine.submit(request(3))

    completion = run_virtual(main())
    assert completion.finish_reason == "error" and completion.response == ""
    assert completion.error == "RuntimeError: server said no"


def test_duplicate_submit_is_refused() -> None:
    async def main() -> None:
        engine = FixedEngine()
        engine.submit(request(1))
        with pytest.raises(ValueError, match="'0/1#0' is already in flight"):
            engine.submit(request(1))
        await engine.close()
        assert engine.outstanding == []

    run_virtual(main())


def test_weights_version() -> None:
    async def main() -> None:
        engine = FixedEngine()
        await engine.update_weights(3, weights={"w": 1})
        assert engine.weights_version == 3 and engine.loaded == [{"w": 1}]
        assert (await engine.submit(request(0))).weights_version == 3
        with pytest.raises(ValueError, match="weights version must be an int >= the current 3, got 2"):
            await engine.update_weights(2)
        with pytest.raises(NotImplementedError, match="SimulatedEngine cannot load weights"):
            await SimulatedEngine().update_weights(1, weights={"w": 1})

    run_virtual(main())


def test_validation_messages() -> None:
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1, got 0"):
        SamplingParams(max_new_tokens=0)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\], got 1.5"):
        SamplingParams(top_p=1.5)
    with pytest.raises(ValueError, match="finish_reason must be one of"):
        Completion(request(0), "x", finish_reason="done")
