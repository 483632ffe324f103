"""The environment interface drives scripted policies end to end, single- and multi-step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glmkit.rl.gym import (
    ENVIRONMENTS,
    Environment,
    TaskEnvironment,
    TaskMix,
    build_reward_system,
    run_episode,
)
from tests.rl.gym.conftest import make
from tests.rl.gym.policies import CORNER_BOXES, hermes_call, images_in

SINGLE = [
    "counting",
    "grounding",
    "pointing",
    "ocr",
    "chart_values",
    "arithmetic",
    "gui_perception",
    "gui_action",
]


def test_the_environment_is_registered_with_its_base() -> None:
    assert ENVIRONMENTS.get("task") is TaskEnvironment
    assert ENVIRONMENTS.base is Environment


def test_single_step_episodes_end_at_the_first_reply_with_the_reward(tmp_path: Path) -> None:
    categories = [make(name, tmp_path) for name in SINGLE]
    mix = TaskMix(categories, num_samples=24, seed=1)
    env = mix.environment(reward=mix.reward_system())
    seen = set()
    for index in range(len(mix)):
        record = mix.record(index)
        category = env.by_source[record["source"]]
        messages = env.reset(record)
        (user,) = messages
        assert user["content"][0] == {"type": "text", "text": "img_0:"} and len(images_in(user)) == 1
        assert user["content"][-1]["text"] == record["sample"].question
        assert env.tool_schemas() == []
        result = env.step(category.oracle(record["sample"]))
        assert result.done and result.observations == [] and result.reward == pytest.approx(1.0)
        assert result.info["end_reason"] == "answer" and not result.info["reward_result"].failed
        assert env.episode.messages[-1]["role"] == "assistant"
        seen.add(record["source"])
    assert len(seen) >= 6
    wrong = run_episode(env, mix.record(0), lambda messages: "no idea")
    assert wrong.reward == 0.0 and wrong.turns == 1 and wrong.end_reason == "answer"


def test_multi_step_episodes_answer_with_observations_holding_images(tmp_path: Path) -> None:
    category = make("small_text", tmp_path)
    env = TaskEnvironment(category, reward=build_reward_system([category]), system_prompt="You see images.")
    messages = env.reset(2)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert [s["function"]["name"] for s in env.tool_schemas()] == ["crop_image"]
    sample = env.episode.sample
    call = hermes_call(
        "crop_image", {"image": "img_0", "bbox": CORNER_BOXES[sample.metadata["corner"]], "zoom": 4}
    )
    first = env.step(call)
    assert not first.done and first.reward is None
    assert first.info == {"turn": 1, "tool_calls": {"crop_image": 1}, "parse_errors": 0, "tool_errors": 0}
    tool, shown = first.observations
    assert tool["role"] == "tool" and tool["content"].startswith("Cropped img_0")
    assert shown["role"] == "user" and len(images_in(shown)) == 1
    last = env.step(f"The code is <answer>{sample.answer}</answer>")
    assert last.done and last.reward == 1.0 and last.info["end_reason"] == "answer"
    assert env.episode.metadata() == {
        "source": "small_text",
        "category": "small_text",
        "turns": 2,
        "end_reason": "answer",
        "tool_calls": {"crop_image": 1},
        "parse_errors": 0,
        "tool_errors": 0,
    }
    assert [m["role"] for m in env.episode.messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "user",
        "assistant",
    ]


@pytest.mark.parametrize("tool_format", ["glm45", "openai"])
def test_other_tool_call_formats_drive_the_same_tools(tool_format: str, tmp_path: Path) -> None:
    category = make("small_text", tmp_path)
    env = TaskEnvironment(category, tool_format=tool_format, reward=build_reward_system([category]))
    env.reset(0)
    sample = env.episode.sample
    args = {"image": "img_0", "bbox": CORNER_BOXES[sample.metadata["corner"]], "zoom": 4}
    if tool_format == "glm45":
        reply: object = (
            "<tool_call>crop_image"
            + "".join(
                f"<arg_key>{k}</arg_key><arg_value>{json.dumps(v) if not isinstance(v, str) else v}</arg_value>"
                for k, v in args.items()
            )
            + "</tool_call>"
        )
    else:
        reply = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "crop_image", "arguments": json.dumps(args)},
                }
            ],
        }
    step = env.step(reply)  # type: ignore[arg-type]
    assert step.info["tool_calls"] == {"crop_image": 1} and step.info["parse_errors"] == 0
    assert env.step(str(sample.answer)).reward == 1.0


def test_malformed_calls_are_observations_and_a_cut_off_reply_runs_nothing(tmp_path: Path) -> None:
    category = make("small_text", tmp_path)
    env = TaskEnvironment(category)
    env.reset(0)
    bad = env.step("<tool_call>\n{not json}\n</tool_call>")
    assert (
        not bad.done
        and bad.info["parse_errors"] == 1
        and "invalid tool call" in bad.observations[0]["content"]
    )
    cut = env.step(
        hermes_call("crop_image", {"image": "img_0", "bbox": [0, 0, 10, 10]}), finish_reason="length"
    )
    assert cut.info["tool_calls"] == {} and cut.info["parse_errors"] == 1
    assert env.episode.reward is None  # no reward configured


def test_max_turns_overrides_the_category(tmp_path: Path) -> None:
    category = make("small_text", tmp_path)
    env = TaskEnvironment(category, max_turns=1)
    env.reset(0)
    step = env.step(hermes_call("crop_image", {"image": "img_0", "bbox": [0, 0, 10, 10]}))
    assert step.done and step.info["end_reason"] == "max_turns" and env.episode.response == ""


def test_reset_takes_a_sample_from_disk(tmp_path: Path) -> None:
    category = make("counting", tmp_path)
    env = TaskEnvironment(category, reward=build_reward_system([category]))
    sample = category.sample(3)
    env.reset(sample)
    assert env.images[0].size == tuple(sample.metadata["image_size"])
    assert env.step(category.oracle(sample)).reward == 1.0


def test_misuse_is_explained(tmp_path: Path) -> None:
    counting, ocr = make("counting", tmp_path), make("ocr", tmp_path)
    env = TaskEnvironment([counting, ocr])
    with pytest.raises(RuntimeError, match="call reset"):
        env.step("4")
    with pytest.raises(ValueError, match="ambiguous; pass a record or a Sample"):
        env.reset(0)
    env.reset(counting.record(0))
    env.step("4")
    with pytest.raises(RuntimeError, match="has ended; call reset"):
        env.step("5")
    stranger = make("arithmetic", tmp_path).sample(0)
    with pytest.raises(KeyError, match="belongs to none of this environment's categories"):
        env.reset(stranger)
    with pytest.raises(ValueError, match="source name 'counting'"):
        TaskEnvironment([counting, make("counting", tmp_path / "x")])
    with pytest.raises(TypeError, match="score"):
        TaskEnvironment(counting, reward=object())  # type: ignore[arg-type]
