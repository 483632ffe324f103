"""``small_text``: unreadable at the given resolution (measured on the pixels), readable after
``crop_image`` through the agent's turn logic, solved end to end only by a policy that crops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from glmkit.agent.turns import initial_messages, take_turn
from glmkit.rl.gym import TASK_CATEGORIES, TaskEnvironment, build_reward_system, run_episode
from glmkit.rl.gym.categories.small_text import MIN_READABLE_PX, label_crop
from glmkit.tools.base import ToolContext
from tests.rl.gym.conftest import make
from tests.rl.gym.policies import CORNER_BOXES, ReadingPolicy, hermes_call, images_in, ink_height

INDICES = range(4)


@pytest.fixture
def category(tmp_path: Path):
    return make("small_text", tmp_path)


@pytest.mark.parametrize("index", INDICES)
def test_the_text_is_too_small_to_read_in_the_given_image(category, index: int) -> None:
    record = category.record(index)
    sample, image = record["sample"], record["images"][0]
    x1, y1, x2, y2 = sample.metadata["label_box"]
    measured = ink_height(image.crop((x1, y1, x2, y2)))
    assert 0 < measured < MIN_READABLE_PX == sample.metadata["min_readable_px"]
    assert measured <= sample.metadata["text_height_px"] + 1
    assert ink_height(image) == measured  # the label is the only text in the scene


@pytest.mark.parametrize("index", INDICES)
def test_crop_image_through_take_turn_makes_it_readable(category, index: int) -> None:
    record = category.record(index)
    sample = record["sample"]
    context = ToolContext()
    initial_messages(sample.question, record["images"], context)
    box = CORNER_BOXES[sample.metadata["corner"]]
    turn = take_turn(
        hermes_call("crop_image", {"image": "img_0", "bbox": box, "zoom": 4}),
        "hermes",
        category.tools(sample),
        context,
    )
    assert not turn.done and turn.calls[0].executed and turn.calls[0].result.ok
    (crop,) = turn.new_images.values()
    assert ink_height(crop) >= MIN_READABLE_PX
    assert turn.observations[-1]["role"] == "user"  # the crop comes back as an image message


@pytest.mark.parametrize("index", INDICES)
def test_only_a_policy_that_crops_solves_it(category, index: int) -> None:
    env = TaskEnvironment(category, reward=build_reward_system([category]))
    sample = category.sample(index)

    cropping = ReadingPolicy(sample, use_tools=True)
    solved = run_episode(env, index, cropping)
    assert solved.reward == 1.0 and solved.end_reason == "answer" and solved.turns == 2
    assert solved.tool_calls == {"crop_image": 1} and solved.response == f"<answer>{sample.answer}</answer>"
    assert max(cropping.seen_heights) >= MIN_READABLE_PX

    looking = ReadingPolicy(sample, use_tools=False)
    unsolved = run_episode(env, index, looking)
    assert unsolved.reward == 0.0 and unsolved.tool_calls == {} and unsolved.turns == 1
    assert looking.seen_heights and max(looking.seen_heights) < MIN_READABLE_PX


def test_a_policy_that_never_answers_hits_the_turn_limit(category) -> None:
    env = TaskEnvironment(category, reward=build_reward_system([category]))
    call = hermes_call("crop_image", {"image": "img_0", "bbox": [0, 0, 500, 500]})
    episode = run_episode(env, 0, lambda messages: call)
    assert episode.end_reason == "max_turns" and episode.turns == category.max_turns == 4
    assert episode.response == "" and episode.reward == 0.0
    assert episode.tool_calls == {"crop_image": 4}


def replay(replies: list) -> Any:
    """A policy that gives ``replies`` in turn and records each image it is shown."""
    turns = iter(replies)
    seen: list = []

    def policy(messages: list[dict[str, Any]]) -> Any:
        seen.extend(images_in(messages[-1]))
        return next(turns)

    policy.seen = seen  # type: ignore[attr-defined]
    return policy


@pytest.mark.parametrize("index", INDICES)
def test_the_oracle_trajectory_crops_the_text_and_earns_full_marks(category, index: int) -> None:
    sample = category.sample(index)
    replies = category.oracle_trajectory(sample)
    assert len(replies) == 2 and replies[-1] == category.oracle(sample)
    policy = replay(replies)
    env = TaskEnvironment(category, reward=build_reward_system([category]))
    episode = run_episode(env, sample, policy)
    assert episode.reward == 1.0 and episode.end_reason == "answer" and episode.turns == 2
    assert episode.tool_calls == {"crop_image": 1} and episode.parse_errors == 0 == episode.tool_errors
    crop = policy.seen[-1]  # the observation: the label, readable
    assert ink_height(crop) >= 2 * MIN_READABLE_PX - 2
    assert ink_height(crop) >= sample.metadata["text_height_px"] * label_crop(sample)["zoom"] - 2


def test_the_oracle_trajectory_is_written_in_the_tool_format(category) -> None:
    sample = category.sample(0)
    (call, _), (native, _) = (
        category.oracle_trajectory(sample, "glm45"),
        category.oracle_trajectory(sample, "openai"),
    )
    assert "<tool_call>crop_image" in call and "<arg_key>bbox</arg_key>" in call
    assert native["tool_calls"][0]["function"]["name"] == "crop_image"
    env = TaskEnvironment(category, tool_format="glm45", reward=build_reward_system([category]))
    assert run_episode(env, sample, replay(category.oracle_trajectory(sample, "glm45"))).reward == 1.0
    assert TASK_CATEGORIES.get("counting")(data_dir=str(category.data_dir)).oracle_trajectory(sample) is None
