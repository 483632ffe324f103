"""The transport-free turn logic: replies in, calls, observations and the episode's end out; no server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from PIL import Image

from glmkit.agent.context import image_ref
from glmkit.agent.formats import ToolCallError
from glmkit.agent.trajectory import TrajectoryLogger, read_trajectory
from glmkit.agent.turns import TRUNCATED_CALL, initial_messages, take_turn
from glmkit.tools import resolve_tools
from glmkit.tools.base import Tool, ToolContext, ToolResult
from tests.agent.toy_tools import toy_tools


class CountingTool(Tool):
    """Records every run, so a test can tell whether a call was executed."""

    name = "count"
    description = "Count calls."
    parameters = {"type": "object", "properties": {}, "additionalProperties": False}

    def __init__(self) -> None:
        self.runs = 0

    def run(self, context: ToolContext, **_: Any) -> ToolResult:
        self.runs += 1
        return ToolResult(text=f"run {self.runs}")


@pytest.fixture
def tools() -> dict[str, Tool]:
    return resolve_tools(toy_tools())


def hermes_call(name: str, arguments: dict[str, Any]) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


def test_a_reply_without_calls_ends_the_episode_with_its_text(tools):
    turn = take_turn("It is blue. <tool_call> is how I would call a tool.", "hermes", tools, ToolContext())
    assert turn.done and turn.end_reason == "answer"
    assert turn.final_answer == "It is blue. <tool_call> is how I would call a tool."  # a tag in prose
    assert turn.calls == [] and turn.observations == []
    assert turn.message == {"role": "assistant", "content": turn.final_answer}


def test_a_text_call_runs_and_is_answered_by_a_tool_message(tools):
    reply = "Let me repeat it.\n" + hermes_call("echo", {"text": "hi", "times": 2})
    turn = take_turn(reply, "hermes", tools, ToolContext(), turn=3)
    assert not turn.done and turn.end_reason is None and turn.final_answer is None
    assert turn.parsed.content == "Let me repeat it."
    assert [c.id for c in turn.calls] == ["call_3_0"] and turn.calls[0].executed
    assert turn.calls[0].result.data == {"length": 4}
    assert turn.observations == [{"role": "tool", "tool_call_id": "call_3_0", "content": "hi hi"}]
    assert turn.message["content"] == reply  # the history keeps the reply as the model wrote it


def test_native_calls_without_ids_get_them_in_the_message_too(tools):
    reply = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"type": "function", "function": {"name": "echo", "arguments": '{"text": "a"}'}},
            {"id": "given", "type": "function", "function": {"name": "echo", "arguments": '{"text": "b"}'}},
        ],
        "reasoning_content": "kept for the log",
    }
    turn = take_turn(reply, "openai", tools, ToolContext(), turn=2)
    assert [c["id"] for c in turn.message["tool_calls"]] == ["call_2_0", "given"]
    assert [m["tool_call_id"] for m in turn.observations] == ["call_2_0", "given"]
    assert [m["content"] for m in turn.observations] == ["a", "b"]
    assert turn.message["reasoning_content"] == "kept for the log"
    assert "id" not in reply["tool_calls"][0]  # the caller's reply is not modified


def test_tool_images_come_back_in_one_user_message_after_the_tool_messages(tools):
    context = ToolContext()
    reply = hermes_call("make_image", {"width": 8, "height": 4, "color": "blue"}) + hermes_call(
        "echo", {"text": "x"}
    )
    turn = take_turn(reply, "hermes", tools, context)
    tool_messages, image_message = turn.observations[:2], turn.observations[2]
    assert [m["role"] for m in tool_messages] == ["tool", "tool"]
    assert all(isinstance(m["content"], str) for m in tool_messages)  # images never in role: tool
    assert "New images: img_0" in tool_messages[0]["content"]
    assert image_message["role"] == "user"
    assert image_message["content"][1] == {"type": "text", "text": "img_0 (from make_image (call_1_0)):"}
    ref = image_message["content"][2]
    assert ref["image_id"] == "img_0" and ref["image"].size == (8, 4)
    assert set(turn.new_images) == {"img_0"} and context.images["img_0"] is ref["image"]


def test_malformed_calls_and_tool_errors_are_observations_and_counted(tools):
    reply = (
        "<tool_call>\n{not json}\n</tool_call>"
        + hermes_call("teleport", {})
        + hermes_call("image_size", {"image": "img_9"})
        + hermes_call("echo", {"text": "ok"})
    )
    turn = take_turn(reply, "hermes", tools, ToolContext())
    assert [isinstance(c.item, ToolCallError) for c in turn.calls] == [True, True, False, False]
    assert turn.parse_errors == 2 and turn.tool_errors == 1 and not turn.done
    texts = [m["content"] for m in turn.observations]
    assert texts[0].startswith("Error: invalid tool call") and "unknown tool 'teleport'" in texts[1]
    assert texts[2].startswith("Error: unknown image id 'img_9'") and texts[3] == "ok"


def test_a_reply_cut_off_by_the_length_limit_runs_none_of_its_calls():
    counter = CountingTool()
    reply = hermes_call("count", {}) + hermes_call("count", {})
    turn = take_turn(reply, "hermes", {"count": counter}, ToolContext(), finish_reason="length")
    assert counter.runs == 0 and turn.parse_errors == 2 and not turn.done
    assert [m["content"] for m in turn.observations] == [TRUNCATED_CALL, TRUNCATED_CALL]
    assert take_turn(reply, "hermes", {"count": counter}, ToolContext()).parse_errors == 0
    assert counter.runs == 2


def test_an_episode_driven_by_a_plain_generator(tools):
    """What an RL rollout does: its own generation, this module's turns, glm45 calls."""
    context = ToolContext()
    messages = initial_messages(
        "How large is the image?", [Image.new("RGB", (20, 10))], context, system_prompt="Be brief."
    )
    assert messages[1]["content"][0] == {"type": "text", "text": "img_0:"}
    replies = iter(
        [
            "<tool_call>image_size\n<arg_key>image</arg_key>\n<arg_value>img_0</arg_value>\n</tool_call>",
            "It is 20x10.",
        ]
    )
    for number in range(1, 5):
        turn = take_turn(next(replies), "glm45", tools, context, turn=number)
        messages.append(turn.message)
        if turn.done:
            break
        messages.extend(turn.observations)
    assert turn.final_answer == "It is 20x10." and number == 2
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert messages[3]["content"] == "20x10"


def test_continued_conversations_make_their_image_ids_known():
    context = ToolContext()
    image = Image.new("RGB", (3, 3))
    history = [{"role": "user", "content": [image_ref("photo_1", image), {"type": "text", "text": "?"}]}]
    messages = initial_messages(history, (), context)
    assert messages == history and messages[0] is not history[0]
    assert context.images == {"photo_1": image}
    with pytest.raises(ValueError, match="image part without an 'image_id'"):
        initial_messages([{"role": "user", "content": [{"type": "image", "image": image}]}], (), context)
    with pytest.raises(ValueError, match="pass images inside the messages"):
        initial_messages(history, [image], context)


def test_the_log_gets_the_turn_in_order(tools, tmp_path):
    log = TrajectoryLogger(tmp_path / "run.jsonl")
    reply = "<tool_call>{broken</tool_call>" + hermes_call("make_image", {})
    take_turn(reply, "hermes", tools, ToolContext(), turn=1, usage={"total_tokens": 7}, logger=log)
    events = read_trajectory(log.path)
    assert [e["event"] for e in events] == ["assistant", "parse_error", "tool_call", "image", "tool_result"]
    assert events[0]["usage"] == {"total_tokens": 7} and events[4]["image_ids"] == ["img_0"]


def test_a_cut_off_reply_without_calls_ends_as_truncated_not_as_an_answer():
    from glmkit.tools.base import ToolContext
    from tests.agent.toy_tools import EchoTool

    step = take_turn("The answer is", "glm45", {"echo": EchoTool()}, ToolContext(), finish_reason="length")
    assert step.done and step.truncated and step.end_reason == "truncated"
    assert step.final_answer == "The answer is"
    assert take_turn("Done.", "glm45", {"echo": EchoTool()}, ToolContext()).end_reason == "answer"
