"""Multi-step episodes as rollout requests: token in, token out, masks, observation images, endings."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest
import torch
from PIL import Image

from glmkit.models.vlm_processor import VLMProcessor
from glmkit.rl.gym.categories import Counting, SmallText
from glmkit.rl.rollout import (
    Completion,
    EpisodeRunner,
    InProcessEngine,
    RolloutEngine,
    RolloutRequest,
    SamplingParams,
    TokenPrompt,
)
from glmkit.rl.rollout.episodes import EpisodeCompletion
from glmkit.rl.rollout.group import ScoredSample
from glmkit.rl.rollout.inprocess import ChatPrompts, token_logprobs
from glmkit.rl.rollout.reward import completion_metadata
from glmkit.scoring import Sample
from tests.models.test_vlm import make_vlm
from tests.rl.rollout.episodes.kit import crop_call, episode_processor, forcing, run_requests


class ScriptedEngine(RolloutEngine):
    """Replies with ``replies[k]`` in turn ``k`` of each request: its canonical token ids, ended by
    ``<|observation|>`` while it calls tools and by EOS after; records the prompts it was given.
    ``fail_at`` raises in that turn; ``length_at`` cuts that turn off (no stop token);
    ``stop_token_ids`` are the engine's configured turn ends (None: the processor's)."""

    def __init__(
        self,
        processor: VLMProcessor,
        replies: Sequence[str],
        fail_at: int | None = None,
        length_at: int | None = None,
        delay_s: float = 0.0,
        stop_token_ids: Sequence[int] | None = None,
    ) -> None:
        super().__init__(stop_token_ids)
        self.processor, self.replies = processor, list(replies)
        self.prompts = ChatPrompts(processor)
        self.fail_at, self.length_at, self.delay_s = fail_at, length_at, delay_s
        self.seen: list[TokenPrompt | None] = []
        self.turns: dict[str, int] = {}

    async def generate(self, request: RolloutRequest, prompt: TokenPrompt | None = None) -> Completion:
        turn = self.turns.get(request.request_id, 0)
        self.turns[request.request_id] = turn + 1
        self.seen.append(prompt)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if turn == self.fail_at:
            raise RuntimeError("out of memory (simulated)")
        text = self.replies[min(turn, len(self.replies) - 1)]
        ids = self.processor.tokenizer.encode(text, add_special_tokens=False)
        calls = "<tool_call>" in text
        finish = "length" if turn == self.length_at else "stop"
        if finish == "stop":
            ids.append(
                self.processor.token_id("<|observation|>") if calls else self.processor.tokenizer.eos_token_id
            )
        return Completion(
            request, text, finish, len(ids), self.weights_version, token_ids=ids, logprobs=[-0.5] * len(ids)
        )


@pytest.fixture(scope="module")
def counting(small_text: SmallText) -> Counting:
    return Counting(data_dir=str(small_text.data_dir))


def _leaves(value: Any) -> list[Any]:
    """Every leaf of nested dicts and lists."""
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list | tuple):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def _answer_and_call(sample: Sample) -> list[str]:
    return [crop_call(sample.metadata["corner"]), str(sample.answer)]


def test_episode_tokens_equal_the_template_rendering(processor, small_text) -> None:
    sample = small_text.sample(0)
    engine = ScriptedEngine(processor, _answer_and_call(sample))
    runner = EpisodeRunner(engine, [small_text], tool_format="hermes")
    (done,) = run_requests(runner, [RolloutRequest("p0", 0, sample, SamplingParams(max_new_tokens=64))])
    # the reward sees the final answer and the episode's record
    assert done.finish_reason == "stop" and done.response == str(sample.answer)
    meta = done.metadata
    assert meta["turns"] == 2 and meta["end_reason"] == "answer" and meta["tool_calls"] == {"crop_image": 1}
    assert meta["parse_errors"] == 0 == meta["tool_errors"] and meta["turn_finish_reasons"] == [
        "stop",
        "stop",
    ]
    trace = done.trace  # the trainer's view travels on the completion, not in the reward's metadata
    assert isinstance(done, EpisodeCompletion) and trace is not None
    assert done.token_ids == trace.token_ids and done.logprobs == trace.logprobs
    assert done.token_mask == trace.mask and done.observation_images == trace.images
    assert runner.opening(sample) == trace.prompt  # rebuilt from the sample alone (after a resume)
    assert not any(isinstance(v, Image.Image) for v in _leaves(completion_metadata(done)))
    # token in, token out: prompt + response region is the template's rendering of the whole
    # conversation (the final EOS is the policy's; the template writes no turn end after the last turn)
    prompts = ChatPrompts(processor)
    first = prompts.token_prompt(trace.prompt)
    shown = runner.tool_format.prepare_messages(
        trace.messages, [t.schema() for t in small_text.tools(sample).values()]
    )
    rendered = processor.apply_chat_template(shown, add_generation_prompt=False, tokenize=True)
    sequence = [*first.token_ids, *trace.token_ids]
    assert sequence[-1] == processor.tokenizer.eos_token_id
    assert sequence[:-1] == rendered["input_ids"][0].tolist()
    # the mask marks exactly the generated tokens: the call (with the <|observation|> that ended it)
    # and the answer (with EOS); everything between is the environment's
    call = processor.tokenizer.encode(crop_call(sample.metadata["corner"]), add_special_tokens=False)
    answer = processor.tokenizer.encode(str(sample.answer), add_special_tokens=False)
    n1, n2 = len(call) + 1, len(answer) + 1
    assert trace.mask == [True] * n1 + [False] * (len(trace.mask) - n1 - n2) + [True] * n2
    assert trace.token_ids[:n1] == [*call, processor.token_id("<|observation|>")]
    assert trace.token_ids[-n2:] == [*answer, processor.tokenizer.eos_token_id]
    assert done.response_tokens == n1 + n2 and meta["observation_tokens"] == len(trace.mask) - n1 - n2
    # the second turn continued from every id and image so far, ending at the processor's turn ends
    assert engine.seen[1] == TokenPrompt(
        (*first.token_ids, *trace.token_ids[: len(trace.token_ids) - n2]),
        (*first.images, *trace.images),
        tuple(sorted(processor.stop_token_ids())),
    )
    # the crop is an observation image: 4x zoom of a corner, in the teacher-forcing batch
    (crop,) = trace.images
    assert crop.size != sample.load_images()[0].size
    batch, ids, mask = prompts.teacher_forcing_batch(
        [trace.prompt], [trace.token_ids], [trace.mask], [trace.images]
    )
    assert batch["grid_thw"].shape[0] == 2 and batch["visual_batch_index"].tolist() == [0, 0]
    placeholders = int((batch["input_ids"] == processor.image_token_id).sum())
    assert placeholders == sum(int(t * h * w) // 4 for t, h, w in batch["grid_thw"].tolist())
    assert mask[0].tolist() == trace.mask and ids[0].tolist() == trace.token_ids
    assert batch["attention_mask"].all()  # observations are attended, only not scored


def test_single_step_samples_pass_through_unchanged(processor, small_text, counting) -> None:
    sample = counting.sample(1)
    engine = ScriptedEngine(processor, ["3"])
    runner = EpisodeRunner(engine, [small_text, counting])
    (done,) = run_requests(runner, [RolloutRequest("p0", 0, sample, SamplingParams(max_new_tokens=8))])
    assert engine.seen == [None]  # the inner engine got the request itself
    assert done.response == "3" and done.metadata == {} and not isinstance(done, EpisodeCompletion)


def test_turn_limit_ends_the_episode_without_an_answer(processor, small_text) -> None:
    sample = small_text.sample(1)
    engine = ScriptedEngine(processor, [crop_call(sample.metadata["corner"])])  # calls forever
    runner = EpisodeRunner(engine, [small_text])
    (done,) = run_requests(runner, [RolloutRequest("p0", 0, sample, SamplingParams(max_new_tokens=64))])
    assert done.response == "" and done.finish_reason == "stop"
    assert done.metadata["end_reason"] == "max_turns" and done.metadata["turns"] == 3
    assert done.metadata["tool_calls"] == {"crop_image": 3}
    trace = done.trace
    assert len(trace.images) == 2  # the last turn's call is not answered: the episode ended
    assert trace.token_ids[-1] == processor.token_id("<|observation|>") and trace.mask[-1]
    runner = EpisodeRunner(engine, [small_text], max_turns=2)  # the override
    (done,) = run_requests(runner, [RolloutRequest("p1", 0, sample, SamplingParams(max_new_tokens=64))])
    assert done.metadata["turns"] == 2


def test_cut_off_turns(processor, small_text) -> None:
    sample = small_text.sample(2)
    # a call cut off by the length limit is refused, the episode goes on; the answer ends it
    engine = ScriptedEngine(processor, _answer_and_call(sample), length_at=0)
    runner = EpisodeRunner(engine, [small_text])
    (done,) = run_requests(runner, [RolloutRequest("p0", 0, sample, SamplingParams(max_new_tokens=64))])
    assert done.metadata["turn_finish_reasons"] == ["length", "stop"]
    assert done.metadata["parse_errors"] == 1 and done.metadata["tool_calls"] == {}
    trace = done.trace
    assert trace.images == [] and done.response == str(sample.answer)  # no crop ran
    # the observation opens with the template's <|observation|>: the policy did not write it
    call = processor.tokenizer.encode(crop_call(sample.metadata["corner"]), add_special_tokens=False)
    assert trace.token_ids[len(call)] == processor.token_id("<|observation|>") and not trace.mask[len(call)]
    # an answer cut off by the length limit ends the episode with finish_reason "length"
    engine = ScriptedEngine(processor, _answer_and_call(sample), length_at=1)
    runner = EpisodeRunner(engine, [small_text])
    (done,) = run_requests(runner, [RolloutRequest("p0", 0, sample, SamplingParams(max_new_tokens=64))])
    assert done.finish_reason == "length" and done.metadata["turns"] == 2


def test_engine_error_in_a_middle_turn_finishes_the_episode(processor, small_text) -> None:
    sample = small_text.sample(3)
    engine = ScriptedEngine(processor, _answer_and_call(sample), fail_at=1)
    runner = EpisodeRunner(engine, [small_text])
    (done,) = run_requests(runner, [RolloutRequest("p0", 0, sample, SamplingParams(max_new_tokens=64))])
    assert done.finish_reason == "error" and "out of memory" in done.error and "turn 2" in done.error
    assert done.metadata["turns"] == 1 and done.metadata["end_reason"] == "error"
    assert not isinstance(done, EpisodeCompletion) and runner.outstanding == []


def test_abort_cancels_the_whole_episode(processor, small_text) -> None:
    sample = small_text.sample(4)
    engine = ScriptedEngine(processor, _answer_and_call(sample), delay_s=0.05)

    async def run() -> tuple[list, list, list]:
        runner = EpisodeRunner(engine, [small_text])
        called: list[Completion] = []
        future = runner.submit(RolloutRequest("p0", 0, sample, SamplingParams()), called.append)
        while len(engine.seen) < 2:  # the second turn is generating
            await asyncio.sleep(0.01)
        aborted = await runner.abort()
        await asyncio.sleep(0.1)
        assert future.cancelled()
        return aborted, called

    aborted, called = asyncio.run(run())
    assert [r.request_id for r in aborted] == ["p0#0"] and called == []
    assert len(engine.seen) == 2  # no turn after the abort


def test_runner_needs_an_engine_that_continues_from_tokens(small_text) -> None:
    from glmkit.rl.rollout import SimulatedEngine

    with pytest.raises(TypeError, match="token ids"):
        EpisodeRunner(SimulatedEngine(), [small_text], processor=episode_processor())


def test_turns_end_at_the_engines_stop_ids_else_the_processors(processor, small_text) -> None:
    """The runner asks the inner engine which ids end a turn: the ones it was given, else the
    policy processor's turn ends; every later turn's prompt carries them."""
    sample = small_text.sample(0)
    observation = processor.token_id("<|observation|>")
    for given, expected in (
        ([observation, 3], [observation, 3]),
        (None, processor.stop_token_ids()),
    ):
        engine = ScriptedEngine(processor, _answer_and_call(sample), stop_token_ids=given)
        runner = EpisodeRunner(engine, [small_text])
        assert runner.stop_token_ids() == expected == engine.stop_token_ids(runner.prompts)
        (done,) = run_requests(runner, [RolloutRequest("p0", 0, sample, SamplingParams(max_new_tokens=64))])
        assert done.finish_reason == "stop" and done.metadata["turns"] == 2
        assert engine.seen[0] is not None and engine.seen[1] is not None
        assert engine.seen[1].stop_token_ids == tuple(sorted(expected))


def test_runner_asks_the_engine_for_its_stop_ids(processor, small_text) -> None:
    """An engine whose stop_token_ids says otherwise is heard; one without it is refused by name."""

    class OwnStops(ScriptedEngine):
        def stop_token_ids(self, prompts: Any = None, default: Sequence[int] = ()) -> list[int]:
            return [11, 4]

    assert EpisodeRunner(OwnStops(processor, ["1"]), [small_text]).stop_token_ids() == [11, 4]

    class NoStops:  # continues from token ids, but is no RolloutEngine
        prompts = ChatPrompts(processor)
        weights_version = 0

        async def generate(self, request: RolloutRequest, prompt: TokenPrompt | None = None) -> Completion:
            raise NotImplementedError

    with pytest.raises(TypeError, match=r"NoStops has no stop_token_ids\(prompts\)"):
        EpisodeRunner(NoStops(), [small_text])  # type: ignore[arg-type]


def test_weights_reach_the_inner_engine(processor, small_text) -> None:
    engine = ScriptedEngine(processor, ["1"])
    runner = EpisodeRunner(engine, [small_text])
    asyncio.run(runner.update_weights(3))
    assert runner.weights_version == 3 == engine.weights_version


def test_logprobs_equal_a_teacher_forced_forward_over_the_episode(processor, small_text, counting) -> None:
    sample, single = small_text.sample(5), counting.sample(0)
    tokenizer = processor.tokenizer
    call = [*tokenizer.encode(crop_call(sample.metadata["corner"]), add_special_tokens=False)]
    call.append(processor.token_id("<|observation|>"))
    answer = [*tokenizer.encode(str(sample.answer), add_special_tokens=False), tokenizer.eos_token_id]
    vlm = make_vlm(processor, llm={"max_position_embeddings": 2048})  # episodes outgrow 512
    params = SamplingParams(
        max_new_tokens=len(call) + 2,
        temperature=0.0,
        extra={"prefix_allowed_tokens_fn": forcing(processor, [call, answer], only_with_tools=True)},
    )
    runner = EpisodeRunner(InProcessEngine(vlm, processor, max_batch_size=4), [small_text, counting])
    done, other = run_requests(
        runner, [RolloutRequest("p0", 0, sample, params), RolloutRequest("p1", 0, single, params)]
    )
    assert done.metadata["turns"] == 2 and done.metadata["tool_calls"] == {"crop_image": 1}
    assert done.response == str(sample.answer) and done.finish_reason == "stop"
    trace = done.trace
    assert len(trace.images) == 1 and not all(trace.mask)
    # teacher forcing over the whole episode (and a single-step sample beside it, padded differently)
    prompts = ChatPrompts(processor)
    batch, ids, mask = prompts.teacher_forcing_batch(
        [trace.prompt, single], [trace.token_ids, other.token_ids], [trace.mask, None], [trace.images, []]
    )
    assert batch["visual_batch_index"].tolist() == [0, 0, 1]
    with torch.no_grad():
        logp = token_logprobs(vlm, batch, ids, mask)
    generated = torch.tensor(trace.mask)
    sampled = torch.tensor(trace.logprobs)
    assert logp[0, : len(trace.mask)][generated].tolist() == pytest.approx(
        sampled[generated].tolist(), abs=1e-4
    )
    assert (logp[0, : len(trace.mask)][~generated] == 0).all()  # observations: no log-prob, no loss
    assert logp[1, : len(other.token_ids)].tolist() == pytest.approx(other.logprobs, abs=1e-4)


def test_text_tool_call_format_is_required(processor, small_text) -> None:
    with pytest.raises(ValueError, match="text tool-call format"):
        EpisodeRunner(ScriptedEngine(processor, ["1"]), [small_text], tool_format="openai")


def test_a_gui_trajectory_runs_through_the_runner(processor, small_text) -> None:
    """The GUI ladder's trajectory level: the replies a clicking policy gives in the gym, written
    as token ids, give the same episode through the runner, each new screenshot an observation."""
    from glmkit.rl.gym.categories import GuiTrajectory
    from glmkit.rl.gym.environment import TaskEnvironment, run_episode
    from tests.rl.gym.policies import ClickingPolicy

    category = GuiTrajectory(data_dir=str(small_text.data_dir))
    sample = category.sample(0)
    policy, replies = ClickingPolicy(sample), []

    def recording(messages: list[dict[str, Any]]) -> str:
        replies.append(policy(messages))
        return replies[-1]

    reference = run_episode(TaskEnvironment(category), sample, recording)
    runner = EpisodeRunner(ScriptedEngine(processor, replies), [category, small_text])
    (done,) = run_requests(runner, [RolloutRequest("p0", 0, sample, SamplingParams(max_new_tokens=64))])
    assert done.response == reference.response and done.metadata["turns"] == reference.turns
    assert done.metadata["tool_calls"] == reference.tool_calls == {"click": reference.turns - 1}
    trace = done.trace
    assert len(trace.images) == reference.turns - 1  # a screenshot after each click
    first = ChatPrompts(processor).token_prompt(trace.prompt)
    shown = runner.tool_format.prepare_messages(
        trace.messages, [t.schema() for t in category.tools(sample).values()]
    )
    rendered = processor.apply_chat_template(shown, add_generation_prompt=False, tokenize=True)
    assert [*first.token_ids, *trace.token_ids][:-1] == rendered["input_ids"][0].tolist()


def test_the_scored_sample_keeps_the_mask_and_images_through_a_checkpoint(processor, small_text) -> None:
    """An episode's sample carries its mask and crops through the prompt cache's plain-Python state
    (JSON, images as PNG): after a resume it trains exactly as before."""
    sample = small_text.sample(6)
    runner = EpisodeRunner(ScriptedEngine(processor, _answer_and_call(sample)), [small_text])
    (done,) = run_requests(runner, [RolloutRequest("0/3", 1, sample, SamplingParams(max_new_tokens=64))])
    scored = ScoredSample.from_completion(done, 1.0)
    assert scored.token_mask == done.trace.mask and len(scored.observation_images) == 1
    state = json.loads(json.dumps(scored.to_state()))
    back = ScoredSample.from_state(state, "0/3", sample.source)
    assert back.token_mask == scored.token_mask and back.token_ids == scored.token_ids
    (before,), (after,) = scored.observation_images, back.observation_images
    assert after.size == before.size and after.mode == before.mode
    assert torch.equal(torch.from_numpy(_pixels(after)), torch.from_numpy(_pixels(before)))
    single = ScoredSample("0/1", 0, "counting", "3", 1.0, token_ids=[5, 6])
    assert "token_mask" not in single.to_state()  # single-step samples: nothing more to save
    assert ScoredSample.from_state(single.to_state(), "0/1", "counting").token_mask is None


def _pixels(image: Image.Image) -> Any:
    import numpy as np

    return np.asarray(image).copy()
