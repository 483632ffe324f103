"""Multi-step episodes on the server engine: token in, token out through SGLang's native /generate.

The loopback server implements SGLang's ``/generate`` and ``/abort_request`` by running a real tiny
glmkit VLM on the ids and images it receives (``InProcessEngine.generate(prompt=TokenPrompt)``), so
an episode through the server engine can be compared token for token with one in-process.
"""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from typing import Any

import numpy as np
import pytest
from PIL import Image

from glmkit.rl.rollout import (
    Completion,
    EpisodeRunner,
    InProcessEngine,
    RolloutRequest,
    SamplingParams,
    TokenPrompt,
)
from glmkit.rl.rollout.inprocess import ChatPrompts
from glmkit.rl.rollout.server import OpenAIServerEngine
from glmkit.scoring import Sample
from tests.helpers.openai_server import ScriptedOpenAIServer, reply
from tests.models.test_vlm import make_vlm
from tests.rl.rollout.episodes.kit import crop_call, forcing, run_requests

UNUSED = [reply(content="the chat route is not used here")]


def _decode(url: str) -> Image.Image:
    header, data = url.split(",", 1)
    assert header == "data:image/png;base64"  # lossless: the server sees the trainer's pixels
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image


def _same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))


class SGLangGenerate:
    """SGLang's ``POST /generate`` on a glmkit VLM: ``input_ids`` and ``image_data`` (data URLs,
    loaded as SGLang's ``load_image`` does: RGB) continued by an in-process engine with the
    request's ``sampling_params``; the reply carries ``text``, ``output_ids`` and ``meta_info``
    (``output_token_logprobs`` as ``[logprob, token_id, None]``, ``finish_reason.type``). ``allowed``
    steers generation server-side (a ``prefix_allowed_tokens_fn``, which JSON cannot carry)."""

    def __init__(self, model: Any, processor: Any, allowed: Any = None) -> None:
        self.model, self.processor, self.allowed = model, processor, allowed
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, body: dict[str, Any]) -> tuple[int, Any]:
        self.bodies.append(body)
        sp = body["sampling_params"]
        extra = {"prefix_allowed_tokens_fn": self.allowed} if self.allowed is not None else {}
        params = SamplingParams(sp["max_new_tokens"], sp["temperature"], sp["top_p"], extra=extra)
        images = tuple(_decode(url).convert("RGB") for url in body.get("image_data") or [])
        engine = InProcessEngine(
            self.model, self.processor, in_thread=False, stop_token_ids=sp.get("stop_token_ids")
        )
        request = RolloutRequest(body["rid"], 0, Sample(id="served", question="", answer=""), params)

        async def one() -> Completion:
            try:
                return await engine.generate(request, prompt=TokenPrompt(tuple(body["input_ids"]), images))
            finally:
                await engine.close()

        done = asyncio.run(one())
        ids = done.token_ids or []
        return 200, {
            "text": done.response,
            "output_ids": ids,
            "meta_info": {
                "id": body["rid"],
                "finish_reason": {"type": done.finish_reason},
                "prompt_tokens": len(body["input_ids"]),
                "completion_tokens": len(ids),
                "output_token_logprobs": [
                    [lp, t, None] for lp, t in zip(done.logprobs or [], ids, strict=True)
                ],
            },
        }


def test_an_episode_on_sglang_equals_the_in_process_episode(processor, small_text) -> None:
    """A 2-turn small-text episode (a forced crop call, then a free greedy turn over the crop)
    gives the same ids, mask, log-probs and answer through the server as in-process, and the
    server received exactly the episode's ids and images."""
    sample = small_text.sample(0)
    tokenizer = processor.tokenizer
    call = [*tokenizer.encode(crop_call(sample.metadata["corner"]), add_special_tokens=False)]
    call.append(processor.token_id("<|observation|>"))
    vlm = make_vlm(processor, llm={"max_position_embeddings": 2048})  # episodes outgrow 512
    steer = forcing(processor, [call])  # turn 1 writes the call, turn 2 is the model's own
    greedy = SamplingParams(max_new_tokens=len(call) + 2, temperature=0.0)
    reference_params = SamplingParams(
        max_new_tokens=len(call) + 2, temperature=0.0, extra={"prefix_allowed_tokens_fn": steer}
    )
    local = EpisodeRunner(InProcessEngine(vlm, processor), [small_text])
    (reference,) = run_requests(local, [RolloutRequest("p0", 0, sample, reference_params)])

    served = SGLangGenerate(vlm, processor, allowed=steer)
    with ScriptedOpenAIServer(UNUSED, routes={"/generate": served}) as srv:
        # no stop_token_ids: the runner's prompts carry the processor's turn ends
        engine = OpenAIServerEngine(srv.base_url, flavour="sglang", timeout_s=60)
        runner = EpisodeRunner(engine, [small_text], processor=processor)
        (done,) = run_requests(runner, [RolloutRequest("p0", 0, sample, greedy)])

    # (1) the same episode, token for token
    assert done.finish_reason == reference.finish_reason, done.error
    assert done.metadata["turns"] == 2 == reference.metadata["turns"]
    assert done.metadata["tool_calls"] == {"crop_image": 1} == reference.metadata["tool_calls"]
    assert done.response == reference.response
    assert done.token_ids == reference.token_ids and done.token_mask == reference.token_mask
    assert done.logprobs == pytest.approx(reference.logprobs, abs=1e-5)
    assert done.token_ids[: len(call)] == call and not all(done.token_mask)
    (crop,) = done.observation_images
    assert _same_pixels(crop, reference.observation_images[0])

    # (2) the server got the episode's ids and images, the rid and the policy's stop ids
    first = ChatPrompts(processor).token_prompt(done.trace.prompt)
    turn2 = len(done.token_mask) - done.token_mask[::-1].index(False)  # where the second turn starts
    expected = [
        (list(first.token_ids), list(first.images)),
        ([*first.token_ids, *done.token_ids[:turn2]], [*first.images, crop]),
    ]
    assert len(served.bodies) == 2
    for body, (ids, images) in zip(served.bodies, expected, strict=True):
        assert body["input_ids"] == ids
        received = [_decode(url) for url in body["image_data"]]
        assert len(received) == len(images) and all(map(_same_pixels, received, images))
        assert body["rid"] == engine.server_rid(RolloutRequest("p0", 0, sample))
        assert body["return_logprob"] is True
        assert body["sampling_params"] == {
            "max_new_tokens": len(call) + 2,
            "temperature": 0.0,
            "top_p": 1.0,
            "skip_special_tokens": False,
            "spaces_between_special_tokens": False,
            "stop_token_ids": sorted(processor.stop_token_ids()),
        }


def test_vllm_takes_text_token_prompts_and_refuses_images_by_name(processor, small_text) -> None:
    engine = OpenAIServerEngine("http://127.0.0.1:9/v1", flavour="vllm", stop_token_ids=[7])
    EpisodeRunner(engine, [small_text], processor=processor)  # text-only episodes can run
    request = RolloutRequest("p0", 0, small_text.sample(0), SamplingParams(max_new_tokens=4))
    image = Image.new("RGB", (16, 16), (10, 20, 30))
    with pytest.raises(
        ValueError, match="flavour 'vllm' cannot continue request p0#0 from token ids with 1 image"
    ):
        engine.token_request(request, TokenPrompt((1, 2, 3), (image,)))
    # through the runner: the episode ends with that error, named
    runner = EpisodeRunner(engine, [small_text], processor=processor)
    (done,) = run_requests(runner, [request])
    assert done.finish_reason == "error" and "flavour 'vllm'" in done.error and "no images" in done.error

    # a text-only token prompt goes to /v1/completions with the ids as the prompt
    def completions(body: dict[str, Any]) -> tuple[int, Any]:
        choice = {
            "index": 0,
            "text": "ok",
            "finish_reason": "stop",
            "token_ids": [5, 7],
            "logprobs": {"tokens": ["token_id:5", "token_id:7"], "token_logprobs": [-0.5, -0.25]},
        }
        return 200, {"id": "cmpl-1", "object": "text_completion", "model": "policy", "choices": [choice]}

    with ScriptedOpenAIServer(UNUSED, routes={"/v1/completions": completions}) as srv:
        engine = OpenAIServerEngine(srv.base_url, model="policy", flavour="vllm", stop_token_ids=[7])

        async def main() -> Completion:
            try:
                return await engine.generate(request, prompt=TokenPrompt((1, 2, 3)))
            finally:
                await engine.close()

        text = asyncio.run(main())
    (_, body), *_ = srv.calls
    assert body["prompt"] == [1, 2, 3] and body["stop_token_ids"] == [7] and body["logprobs"] == 1
    assert body["return_token_ids"] is True and body["request_id"] == engine.server_rid(request)
    assert text.token_ids == [5, 7] and text.logprobs == [-0.5, -0.25] and text.response == "ok"


def test_a_turn_stops_at_the_engines_ids_else_the_prompts(processor, small_text, caplog) -> None:
    """The ids sent with a token prompt: the engine's, else the prompt's (an episode's prompts carry
    the runner's, which are the processor's turn ends), else none and a warning, once."""
    request = RolloutRequest("p0", 0, small_text.sample(0), SamplingParams(max_new_tokens=4))

    def sent(engine: OpenAIServerEngine, prompt: TokenPrompt) -> list[int] | None:
        return engine.token_request(request, prompt)[1]["sampling_params"].get("stop_token_ids")

    given = OpenAIServerEngine("http://127.0.0.1:9/v1", flavour="sglang", stop_token_ids=[7])
    assert EpisodeRunner(given, [small_text], processor=processor).stop_token_ids() == [7]
    assert sent(given, TokenPrompt((1, 2), (), (5,))) == [7] == sent(given, TokenPrompt((1, 2)))

    own = OpenAIServerEngine("http://127.0.0.1:9/v1", flavour="sglang")
    runner = EpisodeRunner(own, [small_text], processor=processor)
    assert runner.stop_token_ids() == processor.stop_token_ids() == own.stop_token_ids(ChatPrompts(processor))
    assert sent(own, TokenPrompt((1, 2), (), (5, 6))) == [5, 6]
    assert own.stop_token_ids() == []
    with caplog.at_level("WARNING", logger="glmkit.rl.rollout.server"):
        assert sent(own, TokenPrompt((1, 2))) is None and sent(own, TokenPrompt((3,))) is None
    assert caplog.text.count("turns stop at the server's EOS only") == 1

    # none at all, given as such: the server's EOS, even over a prompt's ids
    empty = OpenAIServerEngine("http://127.0.0.1:9/v1", flavour="sglang", stop_token_ids=[])
    assert sent(empty, TokenPrompt((1, 2), (), (5,))) is None


def test_the_generic_flavour_is_refused_by_name(processor, small_text) -> None:
    engine = OpenAIServerEngine("http://127.0.0.1:9/v1", flavour="generic")
    with pytest.raises(TypeError, match="cannot continue an episode from token ids: flavour 'generic'"):
        EpisodeRunner(engine, [small_text], processor=processor)


def test_sglang_finish_reasons_and_malformed_replies(processor) -> None:
    replies = iter(
        [
            {
                "text": "cut",
                "meta_info": {
                    "finish_reason": {"type": "length"},
                    "output_token_logprobs": [[-1.0, 4, None]],
                },
            },
            {
                "text": "",
                "meta_info": {"finish_reason": {"type": "abort", "message": "aborted"}},
                "output_ids": [],
            },
            {"text": "no ids", "meta_info": {"finish_reason": {"type": "stop"}}},
            {
                "text": "ids only",
                "output_ids": [3, 9],
                "meta_info": {"finish_reason": {"type": "stop", "matched": 9}},
            },
        ]
    )
    with ScriptedOpenAIServer(UNUSED, routes={"/generate": lambda body: (200, next(replies))}) as srv:
        engine = OpenAIServerEngine(srv.base_url, flavour="sglang")
        sample = Sample(id="s", question="q", answer="a")

        async def main() -> list[Completion]:
            try:
                return [
                    await engine.generate(RolloutRequest("p", i, sample), prompt=TokenPrompt((1, 2)))
                    for i in range(4)
                ]
            finally:
                await engine.close()

        length, aborted, no_ids, ids_only = asyncio.run(main())
    assert length.finish_reason == "length" and length.token_ids == [4] and length.logprobs == [-1.0]
    assert aborted.finish_reason == "error" and "finish_reason='abort'" in aborted.error
    assert no_ids.finish_reason == "error" and "no token ids" in no_ids.error
    assert ids_only.token_ids == [3, 9] and ids_only.logprobs is None and ids_only.response == "ids only"
    assert "stop_token_ids" not in srv.calls[0][1]["sampling_params"]  # none given: the server's own


def test_abort_reaches_an_in_flight_generate(processor, small_text) -> None:
    arrived, release = threading.Event(), threading.Event()

    def generate(body: dict[str, Any]) -> tuple[int, Any]:
        arrived.set()
        release.wait(5.0)  # a long generation, until the test ends
        return 200, {"text": "", "output_ids": [], "meta_info": {"finish_reason": {"type": "abort"}}}

    routes = {"/generate": generate, "/abort_request": lambda body: (200, {})}
    sample = small_text.sample(1)
    with ScriptedOpenAIServer(UNUSED, routes=routes) as srv:
        engine = OpenAIServerEngine(srv.base_url, flavour="sglang", stop_token_ids=processor.stop_token_ids())
        runner = EpisodeRunner(engine, [small_text], processor=processor)
        heard: list[Completion] = []

        async def main() -> tuple[list[RolloutRequest], asyncio.Future[Completion], float]:
            loop = asyncio.get_running_loop()
            future = runner.submit(
                RolloutRequest("p0", 0, sample, SamplingParams(max_new_tokens=8)), heard.append
            )
            while not arrived.is_set():
                await asyncio.sleep(0.01)
            start = loop.time()
            aborted = await runner.abort()
            took = loop.time() - start
            await runner.close()
            return aborted, future, took

        try:
            aborted, future, took = asyncio.run(main())
        finally:
            release.set()
    (request,) = aborted
    assert future.cancelled() and heard == [] and took < 2.0
    generate_body = next(body for path, body in srv.calls if path == "/generate")
    assert srv.calls[-1] == ("/abort_request", {"rid": engine.server_rid(request)})
    assert generate_body["rid"] == engine.server_rid(request)  # the abort names the request in flight
