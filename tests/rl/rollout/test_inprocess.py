"""The in-process engine: batching, sampling parameters, log-probabilities, abort, errors, weights."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import torch

from glmkit.data.vlm_samples import packaged_tokenizer
from glmkit.models.vlm import VisionLanguageModel
from glmkit.models.vlm_processor import VLMProcessor
from glmkit.rl.gym.categories import OCR, Counting
from glmkit.rl.rollout import ROLLOUT_ENGINES, Completion, RolloutRequest, SamplingParams
from glmkit.rl.rollout.inprocess import ChatPrompts, InProcessEngine, token_logprobs
from glmkit.scoring import Sample
from tests.models.test_vlm import llm_config, make_vlm


@pytest.fixture(scope="module")
def processor() -> VLMProcessor:
    return VLMProcessor(packaged_tokenizer(), patch_size=8, merge_size=2, max_num_patches=64)


def tiny_vlm(processor: VLMProcessor, seed: int = 0) -> VisionLanguageModel:
    """The VLM tests' tiny random Llama VLM (eval mode)."""
    return make_vlm(processor, seed=seed)


@pytest.fixture(scope="module")
def vlm(processor: VLMProcessor) -> VisionLanguageModel:
    return tiny_vlm(processor)


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    root = tmp_path_factory.mktemp("gym")
    counting, ocr = Counting(seed=0, data_dir=str(root)), OCR(seed=0, data_dir=str(root))
    return [(counting if i % 2 else ocr).sample(i) for i in range(4)]


def _requests(samples: list[Sample], params: SamplingParams) -> list[RolloutRequest]:
    return [RolloutRequest(f"p{i}", 0, s, params) for i, s in enumerate(samples)]


async def _all(engine: InProcessEngine, requests: list[RolloutRequest]) -> list[Completion]:
    done: list[Completion] = []
    futures = [engine.submit(r, done.append) for r in requests]
    out = await asyncio.gather(*futures)
    assert len(done) == len(requests)  # every completion's callback ran
    await engine.close()
    return list(out)


def _naive_logprobs(model: torch.nn.Module, prompts: ChatPrompts, sample: Sample, ids: list[int], t: float):
    """One sample, one plain forward over prompt + response: the reference the engine must equal."""
    batch = prompts.encode([sample])
    n = batch["input_ids"].shape[1]
    full = torch.cat([batch["input_ids"], torch.tensor([ids])], dim=1)
    inputs = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}
    with torch.no_grad():
        logits = model(input_ids=full, attention_mask=torch.ones_like(full), **inputs).logits[0]
    logp = torch.log_softmax(logits.double() / t, dim=-1)
    return [float(logp[n - 1 + j, tok]) for j, tok in enumerate(ids)]


def test_registered() -> None:
    assert ROLLOUT_ENGINES.get("transformers") is InProcessEngine


def test_batched_greedy_equals_one_by_one(vlm, processor, samples) -> None:
    params = SamplingParams(max_new_tokens=6, temperature=0.0)
    batched = InProcessEngine(vlm, processor, max_batch_size=8)
    out = asyncio.run(_all(batched, _requests(samples, params)))
    assert batched.batch_sizes == [len(samples)]  # one generate call for the concurrent requests
    single = InProcessEngine(vlm, processor, max_batch_size=1)
    ref = asyncio.run(_all(single, _requests(samples, params)))
    assert single.batch_sizes == [1] * len(samples)
    for a, b in zip(out, ref, strict=True):
        assert a.token_ids == b.token_ids and a.response == b.response
        assert a.finish_reason == "length" and a.response_tokens == 6 == len(a.token_ids)
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_logprobs_equal_a_teacher_forced_forward(vlm, processor, samples, temperature) -> None:
    params = SamplingParams(max_new_tokens=5, temperature=temperature, top_p=0.9)
    out = asyncio.run(_all(InProcessEngine(vlm, processor, seed=3), _requests(samples, params)))
    prompts = ChatPrompts(processor)
    t = temperature or 1.0
    for c, s in zip(out, samples, strict=True):
        assert c.logprobs == pytest.approx(_naive_logprobs(vlm, prompts, s, c.token_ids, t), abs=1e-4)
    # the trainer's batched teacher forcing gives the same numbers
    batch, ids, mask = prompts.teacher_forcing_batch(samples, [c.token_ids for c in out])
    with torch.no_grad():
        batched = token_logprobs(vlm, batch, ids, mask, temperature=temperature)
    for b, c in enumerate(out):
        assert batched[b, : len(c.token_ids)].tolist() == pytest.approx(c.logprobs, abs=1e-4)


def test_sampling_is_seeded(vlm, processor, samples) -> None:
    params = SamplingParams(max_new_tokens=6, temperature=1.0)
    runs = [
        asyncio.run(_all(InProcessEngine(vlm, processor, seed=s), _requests(samples, params)))
        for s in (1, 1, 2)
    ]
    ids = [[c.token_ids for c in run] for run in runs]
    assert ids[0] == ids[1] and ids[0] != ids[2]


def test_stop_token_and_stop_string(vlm, processor, samples) -> None:
    greedy = SamplingParams(max_new_tokens=6, temperature=0.0)
    (first,) = asyncio.run(_all(InProcessEngine(vlm, processor), _requests(samples[:1], greedy)))
    # a stop token: the response ends with it, its text is empty
    stopper = InProcessEngine(vlm, processor, stop_token_ids=[first.token_ids[2]])
    (stopped,) = asyncio.run(_all(stopper, _requests(samples[:1], greedy)))
    assert stopped.finish_reason == "stop" and stopped.token_ids == first.token_ids[:3]
    assert stopped.response == processor.tokenizer.decode(first.token_ids[:2], skip_special_tokens=False)
    # a stop string: the text stops before it, the tokens include the one that completed it
    tail = processor.tokenizer.decode(first.token_ids[3:4], skip_special_tokens=False).strip()
    params = SamplingParams(max_new_tokens=6, temperature=0.0, stop=(tail,))
    (cut,) = asyncio.run(_all(InProcessEngine(vlm, processor), _requests(samples[:1], params)))
    assert cut.finish_reason == "stop" and tail not in cut.response
    assert first.response.startswith(cut.response) and cut.token_ids == first.token_ids[: len(cut.token_ids)]
    assert len(cut.token_ids) <= 4 and cut.logprobs == pytest.approx(first.logprobs[: len(cut.token_ids)])


def test_abort_cancels_queued_and_generating_requests(vlm, processor, samples) -> None:
    async def run() -> tuple[list, list, float, InProcessEngine]:
        engine = InProcessEngine(vlm, processor, max_batch_size=2)
        params = SamplingParams(max_new_tokens=400, temperature=1.0)
        called: list[Completion] = []
        for r in _requests(samples, params):  # 4 requests: one batch generating, one queued
            engine.submit(r, called.append)
        while not engine.batch_sizes:  # the first batch has started generating in its thread
            await asyncio.sleep(0.001)
        start = time.perf_counter()
        aborted = await engine.abort()
        while not engine.batch_tokens and time.perf_counter() - start < 60:  # the thread's batch ends
            await asyncio.sleep(0.01)
        await engine.close()
        return aborted, called, time.perf_counter() - start, engine

    aborted, called, _, engine = asyncio.run(run())
    assert sorted(r.prompt_id for r in aborted) == ["p0", "p1", "p2", "p3"]
    assert called == [] and engine.outstanding == []
    assert engine.batch_sizes == [2]  # the queued batch never started
    assert engine.batch_tokens and engine.batch_tokens[0] < 400  # the generating batch stopped early


def test_engine_errors_finish_with_error(vlm, processor, samples, tmp_path: Path) -> None:
    broken = Sample(id="gone", question="?", answer="1", images=[tmp_path / "missing.png"], source="counting")
    params = SamplingParams(max_new_tokens=3, temperature=0.0)
    requests = [*_requests(samples[:2], params), RolloutRequest("bad", 0, broken, params)]
    out = asyncio.run(_all(InProcessEngine(vlm, processor), requests))
    assert [c.finish_reason for c in out] == ["length", "length", "error"]
    assert "missing.png" in out[2].error and out[2].response == ""

    class Exploding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def generate(self, **kwargs):
            raise RuntimeError("out of memory (simulated)")

    out = asyncio.run(_all(InProcessEngine(Exploding(), processor), _requests(samples[:2], params)))
    assert [c.finish_reason for c in out] == ["error", "error"]
    assert all("out of memory" in c.error for c in out)


def test_stop_token_ids_are_the_given_ones_else_the_processors_else_eos(vlm, processor, samples) -> None:
    engine = InProcessEngine(vlm, processor)
    assert engine.stop_token_ids(engine.prompts) == processor.stop_token_ids()
    given = InProcessEngine(vlm, processor, stop_token_ids=(7, 5))
    assert given.stop_token_ids(given.prompts) == [7, 5] == given.stop_token_ids()
    # a tokenizer without the processor's turn ends: its EOS (one id or several)
    for eos, expected in ((3, [3]), ([3, 4], [3, 4])):
        assert engine.stop_token_ids(ChatPrompts(_Tokenizer(eos))) == expected
    with pytest.raises(
        ValueError, match="_Tokenizer has no eos_token_id; give the rollout engine stop_token_ids"
    ):
        engine.stop_token_ids(ChatPrompts(_Tokenizer(None)))
    assert given.stop_token_ids(ChatPrompts(_Tokenizer(None))) == [7, 5]  # given ids need no EOS

    # generation ends at whatever stop_token_ids says: it is the one place the ids come from
    greedy = SamplingParams(max_new_tokens=6, temperature=0.0)
    (first,) = asyncio.run(_all(InProcessEngine(vlm, processor), _requests(samples[:1], greedy)))

    class ThirdTokenStops(InProcessEngine):
        def stop_token_ids(self, prompts=None, default=()):
            return [first.token_ids[2]]

    (stopped,) = asyncio.run(_all(ThirdTokenStops(vlm, processor), _requests(samples[:1], greedy)))
    assert stopped.finish_reason == "stop" and stopped.token_ids == first.token_ids[:3]


class _Tokenizer:
    """A tokenizer with an EOS (or none) and nothing else."""

    def __init__(self, eos: int | list[int] | None) -> None:
        self.eos_token_id = eos


def test_load_weights_and_version(vlm, processor, samples) -> None:
    engine = InProcessEngine(tiny_vlm(processor, seed=1), processor)
    asyncio.run(engine.update_weights(3, vlm.state_dict()))
    assert engine.weights_version == 3
    for key, value in vlm.state_dict().items():
        assert torch.equal(engine.model.state_dict()[key], value)
    params = SamplingParams(max_new_tokens=4, temperature=0.0)
    a = asyncio.run(_all(engine, _requests(samples[:1], params)))[0]
    b = asyncio.run(_all(InProcessEngine(vlm, processor), _requests(samples[:1], params)))[0]
    assert a.token_ids == b.token_ids and a.weights_version == 3
    with pytest.raises(TypeError, match="state dict"):
        asyncio.run(engine.load_weights("weights.pt"))


def test_text_causal_lm_with_its_tokenizer() -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    tokenizer = packaged_tokenizer()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        AutoConfig.for_model(**llm_config("llama", len(tokenizer), num_hidden_layers=2))
    ).eval()
    prompts = [Sample(id=f"t{i}", question="count to " + "three " * i, answer="3") for i in range(3)]
    params = SamplingParams(max_new_tokens=5, temperature=0.0)
    sep = tokenizer.sep_token_id  # MiniLM (BERT) has no EOS
    out = asyncio.run(
        _all(InProcessEngine(model, tokenizer, stop_token_ids=[sep]), _requests(prompts, params))
    )
    one = [
        asyncio.run(_all(InProcessEngine(model, tokenizer, stop_token_ids=[sep]), _requests([p], params)))[0]
        for p in prompts
    ]
    assert [c.token_ids for c in out] == [c.token_ids for c in one]
    image_sample = Sample(id="img", question="?", answer="1", images=[Path("x.png")])
    with pytest.raises(ValueError, match="text tokenizer"):
        ChatPrompts(tokenizer).text(image_sample)


def test_a_conversation_and_a_token_prompt_render_as_the_sample(vlm, processor, samples) -> None:
    """A sample's prompt is the one-message conversation; as token ids (how an episode continues)
    it encodes and generates the same, batched beside a sample's prompt."""
    prompts = ChatPrompts(processor)
    for sample in samples[:2]:
        plain = prompts.encode([sample])
        for other in (
            prompts.encode([prompts.messages(sample)]),
            prompts.encode_tokens([prompts.token_prompt(sample)]),
        ):
            assert other.keys() == plain.keys()
            assert all(torch.equal(other[k], plain[k]) for k in plain)
    params = SamplingParams(max_new_tokens=4, temperature=0.0)
    engine = InProcessEngine(vlm, processor, max_batch_size=4)

    async def run() -> list[Completion]:
        a = engine.generate(RolloutRequest("a", 0, samples[0], params))
        b = engine.generate(
            RolloutRequest("b", 0, samples[1], params), prompt=prompts.token_prompt(samples[1])
        )
        out = await asyncio.gather(a, b)
        await engine.close()
        return list(out)

    mixed = asyncio.run(run())
    assert engine.batch_sizes == [2]  # one generate call for both kinds of prompt
    ref = asyncio.run(_all(InProcessEngine(vlm, processor), _requests(samples[:2], params)))
    assert [c.token_ids for c in mixed] == [c.token_ids for c in ref]
    assert mixed[1].logprobs == pytest.approx(ref[1].logprobs, abs=1e-4)
