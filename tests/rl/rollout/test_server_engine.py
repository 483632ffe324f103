"""OpenAIServerEngine against a real HTTP server on loopback: requests, callbacks, limits, aborts, weights,
and the prompt a server renders from its requests against the trainer's (ChatPrompts)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from glmkit.registry import registry
from glmkit.rl.rollout import Completion, RolloutRequest, RolloutScheduler, SamplingParams
from glmkit.rl.rollout.group import ScoredSample
from glmkit.rl.rollout.server import OpenAIServerEngine, VLLMWeightLoader, WeightUpdateError
from glmkit.scoring import Sample
from tests.helpers.openai_server import ScriptedOpenAIServer, reply
from tests.rl.rollout.toys import RecordingReward, make_prompts

PROMPTS = make_prompts(8)


def request(prompt: int, index: int = 0, **kw: Any) -> RolloutRequest:
    return RolloutRequest(prompt_id=f"0/{prompt}", index=index, sample=PROMPTS[prompt], **kw)


def number(body: dict[str, Any]) -> int:
    """The prompt number of a request body ("question 3" -> 3)."""
    text = body["messages"][-1]["content"]
    return int(text.rsplit(" ", 1)[1])


def delayed(seconds: dict[int, float], default: float = 0.0) -> Any:
    """A script entry that answers prompt ``i`` with ``str(i)`` after ``seconds.get(i, default)``."""

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        i = number(body)
        time.sleep(seconds.get(i, default))
        return reply(content=str(i))

    return answer


def engine(srv: ScriptedOpenAIServer, **kw: Any) -> OpenAIServerEngine:
    return OpenAIServerEngine(srv.base_url, model="policy", **kw)


def ok(body: dict[str, Any]) -> tuple[int, Any]:
    return 200, {"success": True, "message": "ok"}


class TinyPolicy:
    """A stand-in for a transformers model: ``save_pretrained`` writes a config and one safetensors file."""

    def __init__(self) -> None:
        import torch

        self.state = {"embed.weight": torch.arange(6.0).reshape(3, 2), "head.bias": torch.ones(3)}
        self.saved: list[str] = []

    def save_pretrained(self, path: str) -> None:
        from safetensors.torch import save_file

        Path(path).mkdir(parents=True)
        (Path(path) / "config.json").write_text(json.dumps({"model_type": "tiny"}))
        save_file(self.state, str(Path(path) / "model.safetensors"))
        self.saved.append(path)


# -- requests -------------------------------------------------------------------------------------------


def test_registered_and_bad_arguments_are_named() -> None:
    assert registry("rollout_engines").get("openai_server") is OpenAIServerEngine
    with pytest.raises(
        ValueError, match=r"flavour must be one of \('vllm', 'sglang', 'generic'\), got 'vlm'"
    ):
        OpenAIServerEngine("http://localhost:1/v1", flavour="vlm")
    with pytest.raises(ValueError, match="max_concurrency must be an int >= 1, got 0"):
        OpenAIServerEngine("http://localhost:1/v1", max_concurrency=0)
    with pytest.raises(ValueError, match="base_url must be an http"):
        OpenAIServerEngine("localhost:8000")


@pytest.mark.parametrize("flavour", ["sglang", "vllm", "generic"])
def test_request_body_carries_images_and_sampling_params(tmp_path: Path, flavour: str) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    sample = Sample(id="s", question="what is shown?", answer="x", images=[tmp_path / "a.png"], source="ocr")
    params = SamplingParams(
        max_new_tokens=7, temperature=0.7, top_p=0.9, stop=("</answer>",), extra={"top_k": 5, "seed": 3}
    )
    req = RolloutRequest("0/0", 1, sample, params, attempt=2)
    with ScriptedOpenAIServer([reply(content="a cat")]) as srv:
        eng = engine(srv, flavour=flavour, system_prompt="be brief")
        completion = asyncio.run(_one(eng, req))
    assert completion.response == "a cat" and completion.finish_reason == "stop"
    (body,) = srv.requests
    assert body["model"] == "policy"
    assert {
        k: body[k] for k in ("max_tokens", "temperature", "top_p", "stop", "logprobs", "top_k", "seed")
    } == {
        "max_tokens": 7,
        "temperature": 0.7,
        "top_p": 0.9,
        "stop": ["</answer>"],
        "logprobs": True,
        "top_k": 5,
        "seed": 3,
    }
    rid = eng.server_rid(req)
    assert rid.endswith("0/0#1@2") and completion.metadata["rid"] == rid
    assert body.get("rid") == (rid if flavour == "sglang" else None)
    assert body.get("request_id") == (rid if flavour == "vllm" else None)
    assert body.get("return_token_ids") == (True if flavour != "generic" else None)
    system, user = body["messages"]
    assert system == {"role": "system", "content": "be brief"}
    texts = [p["text"] for p in user["content"] if p["type"] == "text"]
    assert texts[-1] == "what is shown?"
    (image,) = [p for p in user["content"] if p["type"] == "image_url"]
    header, data = image["image_url"]["url"].split(",", 1)
    assert header == "data:image/png;base64"
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
    np.testing.assert_array_equal(decoded, pixels)  # the image arrives losslessly


async def _one(eng: OpenAIServerEngine, req: RolloutRequest) -> Completion:
    try:
        return await eng.submit(req)
    finally:
        await eng.close()


def test_logprobs_and_token_ids_are_parsed() -> None:
    script = [
        reply(content="ab", logprobs=[("a", -0.5), ("b", -1.25)], token_ids=[7, 9], completion_tokens=2),
        reply(content="ab", logprobs=[("token_id:11", -0.1), ("token_id:12", -0.2)], completion_tokens=0),
        reply(content="ab"),  # a server that returns none
    ]
    with ScriptedOpenAIServer(script) as srv:
        eng = engine(srv, flavour="vllm")

        async def main() -> list[Completion]:
            out = [await eng.submit(request(i)) for i in range(3)]
            await eng.close()
            return out

        given, as_strings, none = asyncio.run(main())
    assert given.logprobs == [-0.5, -1.25] and given.token_ids == [7, 9] and given.response_tokens == 2
    # vLLM's return_tokens_as_token_ids strings; the count falls back to the tokens seen
    assert as_strings.logprobs == [-0.1, -0.2] and as_strings.token_ids == [11, 12]
    assert as_strings.response_tokens == 2
    assert none.logprobs is None and none.token_ids is None and none.response_tokens == 5


def test_the_stop_token_a_server_names_is_kept() -> None:
    """vLLM's ``stop_reason`` and SGLang's ``matched_stop`` name the id that ended a reply; a stop
    string, an EOS (``None``) or no such field leaves it unknown."""
    script = [
        reply(content="a", choice_fields={"stop_reason": 151336}),  # vLLM, a stop token id
        reply(content="b", choice_fields={"matched_stop": 7}),  # SGLang
        reply(content="c", choice_fields={"stop_reason": "</answer>"}),  # a stop string
        reply(content="d", choice_fields={"stop_reason": None}),  # vLLM's EOS
        reply(content="e", choice_fields={"matched_stop": True}),  # not an id
        reply(content="f"),
    ]
    with ScriptedOpenAIServer(script) as srv:
        eng = engine(srv, flavour="vllm")

        async def main() -> list[Completion]:
            out = [await eng.submit(request(i)) for i in range(len(script))]
            await eng.close()
            return out

        done = asyncio.run(main())
    assert [c.metadata.get("stop_token_id") for c in done] == [151336, 7, None, None, None, None]
    scored = ScoredSample.from_completion(done[0], 1.0)
    assert scored.stop_token_id == 151336
    back = ScoredSample.from_state(json.loads(json.dumps(scored.to_state())), scored.prompt_id, scored.source)
    assert back.stop_token_id == 151336  # through a checkpoint
    assert "stop_token_id" not in ScoredSample.from_completion(done[5], 1.0).to_state()


def test_finish_reasons_are_mapped_and_failures_keep_their_reason() -> None:
    script: list[Any] = [
        reply(content="cut", finish_reason="length"),
        reply(content="partial", finish_reason="abort"),
        400,
        {"choices": []},
    ]
    with ScriptedOpenAIServer(script) as srv:
        eng = engine(srv)
        seen: list[Completion] = []

        async def main() -> list[Completion]:
            out = [await eng.submit(request(i), seen.append) for i in range(4)]
            await eng.close()
            return out

        length, aborted, refused, malformed = asyncio.run(main())
    assert seen == [length, aborted, refused, malformed]  # every one reached its callback
    assert length.finish_reason == "length" and length.response == "cut"
    assert aborted.finish_reason == "error" and aborted.response == ""
    assert aborted.error == "server ended request 0/1#0 with finish_reason='abort'"
    assert aborted.metadata["partial_response"] == "partial"
    assert refused.finish_reason == "error" and "HTTP 400: " in str(refused.error)
    assert "scripted status 400" in str(refused.error)
    assert malformed.finish_reason == "error" and "malformed chat completion" in str(malformed.error)


# -- the server's prompt is the trainer's ----------------------------------------------------------------


@pytest.fixture(scope="module")
def processor() -> Any:
    """The policy's processor: the packaged test tokenizer, 8-pixel patches, at most 64 per image."""
    from glmkit.data.vlm_samples import packaged_tokenizer
    from glmkit.models.vlm_processor import VLMProcessor

    return VLMProcessor(packaged_tokenizer(), patch_size=8, merge_size=2, max_num_patches=64)


@pytest.fixture(scope="module")
def prompt_samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Sample]:
    """A single-image, a multi-image and a text-only sample. The multi-image one holds a JPEG whose
    EXIF orientation turns it upright (48x16 stored, 16x48 shown), a PNG with transparent pixels over
    coloured ones and a small PNG: images of different sizes, so their order shows in the tokens."""
    folder = tmp_path_factory.mktemp("prompt_images")
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(folder / "one.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to show
    Image.fromarray(rng.integers(0, 256, (16, 48, 3), dtype=np.uint8)).save(
        folder / "rotated.jpg", "JPEG", exif=exif.tobytes()
    )
    rgba = rng.integers(0, 256, (32, 32, 4), dtype=np.uint8)
    rgba[:16, :, 3] = 0  # transparent top half: the trainer shows it white
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    Image.fromarray(rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)).save(folder / "small.png")
    return {
        "single": Sample(id="single", question="What is shown?", answer="x", images=[folder / "one.png"]),
        "multi": Sample(
            id="multi",
            question="  Compare the three images.\n",  # whitespace is kept as it is
            answer="x",
            images=[folder / "rotated.jpg", folder / "alpha.png", folder / "small.png"],
        ),
        "text": Sample(id="text", question="What is 2 + 3?", answer="5"),
    }


def served_prompt(processor: Any, messages: list[dict[str, Any]]) -> Any:
    """What a vLLM or SGLang server computes from a request's messages with the policy's processor:
    every ``image_url`` data URL decoded back into an image part (as the server's media loader
    reads it: PIL, RGB), the chat template applied with the generation prompt, the text tokenized
    without special tokens and each image's placeholder expanded for its size."""
    parsed = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = [
                {"type": "image", "image": _decode_data_url(part["image_url"]["url"])}
                if part["type"] == "image_url"
                else part
                for part in content
            ]
        parsed.append({**message, "content": content})
    return processor.apply_chat_template(parsed, add_generation_prompt=True, tokenize=True)


def _decode_data_url(url: str) -> Image.Image:
    header, data = url.split(",", 1)
    assert header == "data:image/png;base64"  # lossless, so the server sees the trainer's pixels
    return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")


def _assert_same_prompt(served: Any, trainer: dict[str, Any], name: str) -> None:
    """Token ids, and the visual input behind the image placeholders, equal."""
    assert served["input_ids"][0].tolist() == trainer["input_ids"][0].tolist(), name
    assert ("grid_thw" in served) == ("grid_thw" in trainer), name
    if "grid_thw" in trainer:
        assert served["grid_thw"].tolist() == trainer["grid_thw"].tolist(), name
        assert _same_tensor(served["patches"], trainer["patches"]), name


def _same_tensor(a: Any, b: Any) -> bool:
    import torch

    return a.shape == b.shape and bool(torch.equal(a, b))


@pytest.mark.parametrize("name", ["single", "multi", "text"])
def test_the_server_renders_the_trainers_prompt_tokens(processor, prompt_samples, name: str) -> None:
    """The messages the engine sends, rendered as a server renders them, give the token ids (and
    image patches) that ChatPrompts gives the trainer for teacher forcing."""
    from glmkit.rl.rollout.inprocess import ChatPrompts

    sample = prompt_samples[name]
    messages = OpenAIServerEngine("http://127.0.0.1:9/v1", flavour="vllm").messages(sample)
    assert [m["role"] for m in messages] == ["user"]
    _assert_same_prompt(served_prompt(processor, messages), ChatPrompts(processor).encode([sample]), name)


def test_a_system_prompt_is_the_one_difference_and_is_warned_about(
    processor, prompt_samples, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``system_prompt`` the server's prompt is the trainer's with a system message first:
    what ChatPrompts would have to render for the two to agree."""
    from glmkit.rl.rollout.inprocess import ChatPrompts

    sample = prompt_samples["multi"]
    eng = OpenAIServerEngine("http://127.0.0.1:9/v1", system_prompt="Answer briefly.")
    assert "does not render" in caplog.text
    served = served_prompt(processor, eng.messages(sample))
    trainer = ChatPrompts(processor)
    with_system = [{"role": "system", "content": "Answer briefly."}, *trainer.messages(sample)]
    _assert_same_prompt(served, processor.apply_chat_template(with_system, tokenize=True), "with system")
    assert served["input_ids"].shape[1] > trainer.encode([sample])["input_ids"].shape[1]


def test_prompt_token_ids_from_the_server_are_recorded(processor, prompt_samples) -> None:
    """A server that returns the prompt's ids (vLLM, ``return_token_ids``): they reach
    ``Completion.metadata`` and equal the trainer's."""
    from glmkit.rl.rollout.inprocess import ChatPrompts

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        ids = served_prompt(processor, body["messages"])["input_ids"][0].tolist()
        return {**reply(content="ok", token_ids=[5]), "prompt_token_ids": ids}

    sample = prompt_samples["multi"]
    with ScriptedOpenAIServer([answer, reply(content="ok")]) as srv:
        eng = engine(srv, flavour="vllm")

        async def main() -> list[Completion]:
            out = [await eng.submit(RolloutRequest("0/0", k, sample)) for k in range(2)]
            await eng.close()
            return out

        served, silent = asyncio.run(main())
    assert srv.requests[0]["return_token_ids"] is True
    trainer_ids = ChatPrompts(processor).encode([sample])["input_ids"][0].tolist()
    assert served.metadata["prompt_token_ids"] == trainer_ids
    assert "prompt_token_ids" not in silent.metadata  # a server that returns none


# -- callbacks, concurrency, timeouts, aborts ---------------------------------------------------------


def test_callbacks_fire_as_each_request_finishes() -> None:
    delays = {0: 1.2, 1: 0.05, 2: 0.5}
    with ScriptedOpenAIServer([delayed(delays)]) as srv:
        eng = engine(srv)
        heard: list[tuple[str, float]] = []

        async def main() -> float:
            loop = asyncio.get_running_loop()
            start = loop.time()
            futures = [
                eng.submit(request(i), lambda c: heard.append((c.response, loop.time() - start)))
                for i in range(3)
            ]
            await asyncio.gather(*futures)
            await eng.close()
            return loop.time() - start

        total = asyncio.run(main())
    assert [r for r, _ in heard] == ["1", "2", "0"]  # in finishing order, not submission order
    times = dict(heard)
    assert times["1"] < 0.6  # heard long before the batch (the 1.2 s request) ends
    assert times["2"] < 1.0 <= 1.2 <= times["0"] + 0.05 and total >= 1.2


def test_concurrency_limit_holds_at_the_server() -> None:
    with ScriptedOpenAIServer([delayed({}, default=0.15)]) as srv:
        eng = engine(srv, max_concurrency=3)

        async def main() -> list[Completion]:
            out = await asyncio.gather(*(eng.submit(request(i)) for i in range(8)))
            await eng.close()
            return list(out)

        done = asyncio.run(main())
    assert [c.response for c in done] == [str(i) for i in range(8)]
    assert srv.max_active == 3 and len(srv.requests) == 8


def test_timeout_finishes_the_request_with_the_reason() -> None:
    with ScriptedOpenAIServer([delayed({0: 3.0}, default=0.0)]) as srv:
        eng = engine(srv, timeout_s=0.3)
        heard: list[Completion] = []

        async def main() -> tuple[Completion, Completion, float]:
            loop = asyncio.get_running_loop()
            start = loop.time()
            slow, fast = await asyncio.gather(eng.submit(request(0), heard.append), eng.submit(request(1)))
            elapsed = loop.time() - start
            await eng.close()
            return slow, fast, elapsed

        slow, fast, elapsed = asyncio.run(main())
    assert heard == [slow] and slow.finish_reason == "error"
    assert slow.error == (
        f"TimeoutError: request 0/0#0 got no completion from {srv.base_url}/chat/completions within timeout_s=0.3"
    )
    assert fast.finish_reason == "stop" and elapsed < 2.0


@pytest.mark.parametrize("flavour", ["sglang", "vllm"])
def test_abort_cancels_outstanding_requests_and_their_callbacks_never_fire(flavour: str) -> None:
    routes = {"/abort_request": lambda body: (200, {})}
    with ScriptedOpenAIServer([delayed({0: 0.0}, default=2.0)], routes=routes) as srv:
        eng = engine(srv, flavour=flavour)
        heard: list[Completion] = []

        async def main() -> tuple[list[RolloutRequest], list[asyncio.Future[Completion]], float]:
            loop = asyncio.get_running_loop()
            futures = [eng.submit(request(i), heard.append) for i in range(4)]
            await futures[0]  # prompt 0 answers at once; 1-3 are still generating
            start = loop.time()
            aborted = await eng.abort()
            took = loop.time() - start
            await asyncio.sleep(0.1)
            await eng.close()
            return aborted, futures, took

        aborted, futures, took = asyncio.run(main())
    assert [r.request_id for r in aborted] == ["0/1#0", "0/2#0", "0/3#0"]
    assert [c.response for c in heard] == ["0"]  # only the finished request was reported
    assert all(f.cancelled() for f in futures[1:]) and took < 1.0  # not waiting for the 2 s replies
    assert eng.outstanding == []
    if flavour == "sglang":
        assert sorted((path, body["rid"]) for path, body in srv.calls) == [
            ("/abort_request", eng.server_rid(r)) for r in aborted
        ]
    else:  # vLLM aborts a request when its client disconnects
        assert srv.calls == []


def test_failed_abort_post_is_counted_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    routes = {"/abort_request": lambda body: (500, {"error": "scheduler busy"})}
    with ScriptedOpenAIServer([delayed({}, default=2.0)], routes=routes) as srv:
        eng = engine(srv, flavour="sglang")

        async def main() -> list[RolloutRequest]:
            for i in range(2):
                eng.submit(request(i))
            await asyncio.sleep(0.2)
            aborted = await eng.abort()
            await eng.close()
            return aborted

        aborted = asyncio.run(main())
    assert len(aborted) == 2 and eng.abort_failures == 2
    assert "could not abort" in caplog.text and "HTTP 500" in caplog.text


# -- the scheduler ---------------------------------------------------------------------------------------


def test_scheduler_runs_a_step_end_to_end() -> None:
    """Prompt i's samples answer correctly when i is even; prompt 5 is slow and gets deferred."""

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        i = number(body)
        time.sleep(3.0 if i == 5 else 0.02)
        return reply(content=str(i) if i % 2 == 0 else "wrong", logprobs=[("x", -0.5)])

    routes = {"/abort_request": lambda body: (200, {})}
    with ScriptedOpenAIServer([answer], routes=routes) as srv:
        eng = engine(srv, flavour="sglang", max_concurrency=8)
        reward = RecordingReward()
        sched = RolloutScheduler(
            eng, reward, make_prompts(6), group_size=2, groups_per_step=5, oversample=1, shuffle=False
        )

        async def main() -> Any:
            batch = await sched.rollout_step()
            await eng.close()
            return batch

        batch = asyncio.run(main())
    # prompts 0-4 complete and fill the batch; prompt 5 (slow) is aborted and cached for later
    assert sorted(g.prompt_id for g in batch.groups) == [f"0/{i}" for i in range(5)]
    for group in batch.groups:
        i = group.prompt_index
        assert [s.reward for s in group.scored_samples()] == [float(i % 2 == 0)] * 2
        assert all(s.logprobs == [-0.5] for s in group.scored_samples())
    assert batch.aborted_requests == 2 and len(sched.cache) == 1
    assert sorted(body["rid"] for _, body in srv.calls) == sorted(
        eng.server_rid(request(5, k)) for k in range(2)
    )
    assert len(reward.calls) == 10  # every finished request was scored, none of the aborted ones


# -- weights ---------------------------------------------------------------------------------------------


def test_sglang_push_saves_the_policy_and_bumps_the_version_on_success(tmp_path: Path) -> None:
    with ScriptedOpenAIServer([reply(content="x")], routes={"/update_weights_from_disk": ok}) as srv:
        eng = engine(srv, flavour="sglang", weights_dir=tmp_path, keep_weights=1)
        policy = TinyPolicy()

        async def main() -> None:
            await eng.update_weights(3, policy)
            await eng.update_weights(4, policy)
            await eng.close()

        asyncio.run(main())
    assert eng.weights_version == 4
    assert srv.calls == [
        ("/update_weights_from_disk", {"model_path": str(tmp_path / "policy-v3"), "weight_version": "3"}),
        ("/update_weights_from_disk", {"model_path": str(tmp_path / "policy-v4"), "weight_version": "4"}),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy-v4"]  # keep_weights=1 dropped v3
    assert (tmp_path / "policy-v4" / "model.safetensors").is_file()


def test_refused_push_raises_and_keeps_the_version(tmp_path: Path) -> None:
    routes = {
        "/update_weights_from_disk": lambda body: (
            400,
            {"success": False, "message": "shape mismatch in lm_head"},
        )
    }
    with ScriptedOpenAIServer([reply(content="x")], routes=routes) as srv:
        eng = engine(srv, flavour="sglang", weights_dir=tmp_path)

        async def main() -> None:
            try:
                await eng.update_weights(1, str(tmp_path / "ckpt"))
            finally:
                await eng.close()

        with pytest.raises(WeightUpdateError, match="HTTP 400: shape mismatch in lm_head"):
            asyncio.run(main())
    assert eng.weights_version == 0
    assert srv.calls == [
        ("/update_weights_from_disk", {"model_path": str(tmp_path / "ckpt"), "weight_version": "1"})
    ]


def test_vllm_push_calls_the_worker_extension_then_resets_the_prefix_cache(tmp_path: Path) -> None:
    routes = {"/collective_rpc": lambda body: (200, {"results": [2, 2]}), "/reset_prefix_cache": ok}
    with ScriptedOpenAIServer([reply(content="x")], routes=routes) as srv:
        eng = engine(srv, flavour="vllm", weights_dir=tmp_path)

        async def main() -> None:
            await eng.update_weights(2, TinyPolicy())
            await eng.close()

        asyncio.run(main())
    assert eng.weights_version == 2
    assert srv.calls == [
        (
            "/collective_rpc",
            {"method": "glmkit_load_weights", "kwargs": {"path": str(tmp_path / "policy-v2")}},
        ),
        ("/reset_prefix_cache", {}),
    ]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ((404, {"detail": "Not Found"}), "has no /collective_rpc: start it with VLLM_SERVER_DEV_MODE=1"),
        ((200, {"results": [2, None]}), r"1 of 2 workers did not load the weights"),
        ((500, {"error": "AttributeError: no glmkit_load_weights"}), "HTTP 500"),
    ],
)
def test_vllm_push_that_a_worker_refuses_keeps_the_version(
    tmp_path: Path, answer: tuple[int, Any], message: str
) -> None:
    with ScriptedOpenAIServer([reply(content="x")], routes={"/collective_rpc": lambda body: answer}) as srv:
        eng = engine(srv, flavour="vllm", weights_dir=tmp_path)

        async def main() -> None:
            try:
                await eng.update_weights(1, TinyPolicy())
            finally:
                await eng.close()

        with pytest.raises(WeightUpdateError, match=message):
            asyncio.run(main())
    assert eng.weights_version == 0
    assert [path for path, _ in srv.calls] == ["/collective_rpc"]  # no cache reset after a failed load


def test_generic_server_cannot_take_weights_and_a_dead_server_is_an_error(tmp_path: Path) -> None:
    eng = OpenAIServerEngine("http://127.0.0.1:9/v1", flavour="generic")
    with pytest.raises(WeightUpdateError, match="'generic': it has no weight-update API"):
        asyncio.run(eng.update_weights(1, str(tmp_path)))
    dead = OpenAIServerEngine("http://127.0.0.1:9/v1", flavour="sglang", weight_timeout_s=2.0)
    with pytest.raises(
        WeightUpdateError, match="weight push of .* to http://127.0.0.1:9 failed: ConnectError"
    ):
        asyncio.run(dead.update_weights(1, str(tmp_path)))
    assert eng.weights_version == dead.weights_version == 0
    asyncio.run(dead.update_weights(1))  # a version change without weights needs no server
    assert dead.weights_version == 1


def test_vllm_worker_extension_loads_every_saved_tensor(tmp_path: Path) -> None:
    import torch

    policy = TinyPolicy()
    policy.save_pretrained(str(tmp_path / "ckpt"))
    received: dict[str, torch.Tensor] = {}

    class Model:
        def load_weights(self, weights: Any) -> None:
            received.update(weights)

    class Worker(VLLMWeightLoader):
        model_runner = type("Runner", (), {"model": Model()})()

    assert Worker().glmkit_load_weights(str(tmp_path / "ckpt")) == 2
    assert received.keys() == policy.state.keys()
    for name, tensor in policy.state.items():
        torch.testing.assert_close(received[name], tensor)
    with pytest.raises(FileNotFoundError, match=r"no \*.safetensors files in"):
        Worker().glmkit_load_weights(str(tmp_path))


GPU_SERVER = os.environ.get("GLMKIT_TEST_ROLLOUT_SERVER")  # "sglang|vllm@http://host:port/v1@model"


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.slow
@pytest.mark.skipif(not _cuda(), reason="the weight push to a real vLLM/SGLang server needs a GPU")
@pytest.mark.skipif(
    GPU_SERVER is None,
    reason="set GLMKIT_TEST_ROLLOUT_SERVER=<sglang|vllm>@<base_url>@<model> to a server serving a local model dir",
)
def test_weight_push_to_a_real_server(tmp_path: Path) -> None:
    """Push the served checkpoint back (same weights): the server confirms and still answers."""
    from transformers import AutoModelForCausalLM

    flavour, base_url, model = str(GPU_SERVER).split("@", 2)
    policy = AutoModelForCausalLM.from_pretrained(model)
    eng = OpenAIServerEngine(base_url, model=model, flavour=flavour, weights_dir=tmp_path, timeout_s=120)
    sample = Sample(id="q", question="Say hi.", answer="hi")

    async def main() -> Completion:
        await eng.update_weights(1, policy)
        completion = await eng.submit(RolloutRequest("0/0", 0, sample, SamplingParams(max_new_tokens=8)))
        await eng.close()
        return completion

    completion = asyncio.run(main())
    assert eng.weights_version == 1 and completion.finish_reason in ("stop", "length")
    assert completion.weights_version == 1 and completion.logprobs is not None
