"""The agent loop end to end against a scripted OpenAI-compatible HTTP server."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from glmkit.agent.context import ImageWindowPolicy
from glmkit.agent.loop import AgentLoop
from glmkit.agent.models import OpenAIChatModel
from glmkit.agent.trajectory import read_trajectory
from tests.agent.toy_tools import EchoTool, MakeImageTool, toy_tools
from tests.helpers.openai_server import ScriptedOpenAIServer, reply, tool_call


def decode_data_url(url: str) -> Image.Image:
    header, _, payload = url.partition(",")
    assert header == "data:image/png;base64"
    return Image.open(io.BytesIO(base64.b64decode(payload)))


def image_parts(message: dict) -> list[dict]:
    content = message.get("content")
    return [p for p in content if p.get("type") == "image_url"] if isinstance(content, list) else []


def run_scripted(script, question="What is in the image?", images=(), **loop_kwargs):
    fmt = loop_kwargs.pop("tool_format", "openai")
    with ScriptedOpenAIServer(script) as srv:
        model = OpenAIChatModel(base_url=srv.base_url, model="scripted", tool_format=fmt)
        loop = AgentLoop(model, loop_kwargs.pop("tools", toy_tools()), **loop_kwargs)
        result = loop.run(question, images=images)
    return result, srv.requests


def test_tool_calls_then_final_answer():
    script = [
        reply(tool_calls=[tool_call("echo", {"text": "hi", "times": 2}, "call_a")]),
        reply(tool_calls=[tool_call("make_image", {"width": 40, "height": 30, "color": "blue"}, "call_b")]),
        reply(content="It is blue."),
    ]
    result, requests = run_scripted(script)
    assert result.final_answer == "It is blue."
    assert result.stop_reason == "answer"
    assert result.turns == 3 and len(requests) == 3
    assert result.tool_calls == {"echo": 1, "make_image": 1}
    assert result.usage == {"prompt_tokens": 30, "completion_tokens": 15, "total_tokens": 45}
    assert result.parse_errors == 0 and result.tool_errors == 0
    # native tools parameter carries the schemas
    assert [t["function"]["name"] for t in requests[0]["tools"]] == ["echo", "make_image", "image_size"]
    second = requests[1]["messages"]
    assert second[-2]["role"] == "assistant" and second[-2]["tool_calls"][0]["id"] == "call_a"
    assert second[-1] == {"role": "tool", "tool_call_id": "call_a", "content": "hi hi"}
    assert set(result.images) == {"img_0"}


def test_tool_images_go_in_a_user_message_never_in_the_tool_message():
    script = [
        reply(tool_calls=[tool_call("make_image", {"width": 40, "height": 30, "color": "blue"}, "call_b")]),
        reply(content="done"),
    ]
    question_image = Image.new("RGB", (20, 10), "green")
    result, requests = run_scripted(script, images=[question_image])
    first_user = requests[0]["messages"][0]
    assert first_user["content"][0] == {"type": "text", "text": "img_0:"}
    assert decode_data_url(image_parts(first_user)[0]["image_url"]["url"]).size == (20, 10)

    messages = requests[1]["messages"]
    tool_message, image_message = messages[-2], messages[-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_b"
    assert isinstance(tool_message["content"], str) and "img_1" in tool_message["content"]
    assert image_message["role"] == "user"
    parts = image_parts(image_message)
    assert len(parts) == 1
    crop = decode_data_url(parts[0]["image_url"]["url"])
    assert crop.size == (40, 30) and crop.convert("RGB").getpixel((0, 0)) == (0, 0, 255)
    assert any(p.get("text", "").startswith("img_1 (from make_image") for p in image_message["content"])
    for request in requests:
        for msg in request["messages"]:
            if msg["role"] == "tool":
                assert isinstance(msg["content"], str)
    assert set(result.images) == {"img_0", "img_1"}


def test_malformed_call_becomes_an_error_observation_and_the_loop_continues():
    bad = {"id": "call_bad", "type": "function", "function": {"name": "echo", "arguments": '{"text": "x"'}}
    unknown = tool_call("teleport", {}, "call_unknown")
    script = [
        reply(tool_calls=[bad, tool_call("echo", {"text": "ok"}, "call_ok"), unknown]),
        reply(tool_calls=[tool_call("echo", {"text": "x"}, "call_retry")]),
        reply(content="final"),
    ]
    result, requests = run_scripted(script)
    assert result.stop_reason == "answer" and result.final_answer == "final"
    assert result.parse_errors == 2
    assert result.tool_calls == {"echo": 2}
    tool_messages = [m for m in requests[1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["call_bad", "call_ok", "call_unknown"]
    assert (
        tool_messages[0]["content"].startswith("Error: invalid tool call")
        and "not valid JSON" in tool_messages[0]["content"]
    )
    assert tool_messages[1]["content"] == "ok"
    assert "unknown tool 'teleport'" in tool_messages[2]["content"] and "echo" in tool_messages[2]["content"]


def test_tool_argument_errors_are_observations_too():
    script = [
        reply(tool_calls=[tool_call("echo", {"text": "x", "times": "many"}, "c1")]),
        reply(content="sorry"),
    ]
    result, requests = run_scripted(script)
    assert result.tool_errors == 1 and result.tool_calls == {"echo": 1}
    message = requests[1]["messages"][-1]
    assert message["role"] == "tool" and message["content"].startswith("Error: echo: invalid argument times")


def test_turn_budget_stops_a_model_that_never_answers():
    script = [reply(tool_calls=[tool_call("echo", {"text": "again"})])]
    result, requests = run_scripted(script, max_turns=3)
    assert result.stop_reason == "max_turns"
    assert result.final_answer is None
    assert result.turns == 3 and len(requests) == 3
    assert result.tool_calls == {"echo": 3}
    assert result.messages[-1]["role"] == "tool"  # the last calls were still answered


@pytest.mark.parametrize(
    ("field", "budget", "turns"), [("total_tokens", 40, 3), ("completion_tokens", 12, 3)]
)
def test_token_budget_from_usage(field, budget, turns):
    # every scripted reply reports 10 prompt + 5 completion tokens
    script = [reply(tool_calls=[tool_call("echo", {"text": "again"})])]
    result, requests = run_scripted(script, max_turns=50, max_tokens=budget, token_budget_field=field)
    assert result.stop_reason == "max_tokens"
    assert result.turns == turns and len(requests) == turns
    assert result.usage[field] >= budget


def test_token_budget_counts_prompt_and_completion_when_the_server_omits_the_total():
    partial = reply(
        tool_calls=[tool_call("echo", {"text": "again"})], prompt_tokens=1000, completion_tokens=50
    )
    del partial["usage"]["total_tokens"]
    result, requests = run_scripted([partial], max_turns=6, max_tokens=2000)
    assert result.stop_reason == "max_tokens" and result.turns == 2 and len(requests) == 2
    assert result.usage == {"prompt_tokens": 2000, "completion_tokens": 100, "total_tokens": 2100}


def test_truncated_reply_calls_are_not_executed():
    script = [
        reply(tool_calls=[tool_call("echo", {"text": "cut"}, "c1")], finish_reason="length"),
        reply(content="ok"),
    ]
    result, requests = run_scripted(script)
    assert result.tool_calls == {} and result.parse_errors == 1
    assert "cut off by the length limit" in requests[1]["messages"][-1]["content"]


def test_endpoint_failure_is_a_stop_reason_not_an_exception():
    result, _ = run_scripted([400])
    assert result.stop_reason == "model_error" and "HTTP 400" in result.error
    assert result.turns == 0


def test_text_format_over_an_openai_endpoint():
    text = 'Checking.\n<tool_call>\n{"name": "echo", "arguments": {"text": "hey", "times": 3}}\n</tool_call>'
    script = [reply(content=text), reply(content="hey hey hey")]
    result, requests = run_scripted(script, tool_format="hermes", system_prompt="Be exact.")
    assert result.final_answer == "hey hey hey" and result.tool_calls == {"echo": 1}
    first = requests[0]
    assert "tools" not in first
    system = first["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("Be exact.")
    assert "<tools>" in system["content"] and '"name": "echo"' in system["content"]
    second = requests[1]["messages"]
    # the result goes as role: tool, for the server's chat template to render as the model was trained
    assert [m["role"] for m in second] == ["system", "user", "assistant", "tool"]
    assert second[2]["content"] == text
    assert second[3]["content"] == "hey hey hey" and second[3]["tool_call_id"] == "call_1_0"


def test_text_format_over_an_openai_endpoint_with_user_observations():
    text = '<tool_call>\n{"name": "echo", "arguments": {"text": "hey"}}\n</tool_call>'
    with ScriptedOpenAIServer([reply(content=text), reply(content="hey")]) as srv:
        model = OpenAIChatModel(base_url=srv.base_url, tool_format="hermes", observation_role="user")
        AgentLoop(model, toy_tools()).run("Say hey.")
    second = srv.requests[1]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[3]["content"] == "<tool_response>\nhey\n</tool_response>"


def test_a_reply_cut_off_without_calls_is_reported_as_truncated():
    script = [reply(content="The answer is forty", finish_reason="length"), reply(content="-two.")]
    result, requests = run_scripted(script)
    assert result.stop_reason == "truncated" and result.truncated == 1
    assert result.final_answer == "The answer is forty" and len(requests) == 1

    result, requests = run_scripted(script, on_truncation="continue")
    assert result.stop_reason == "answer" and result.final_answer == "-two." and result.truncated == 1
    assert requests[1]["messages"][-1]["content"].startswith("Your reply was cut off by the length limit")
    with pytest.raises(ValueError, match="on_truncation"):
        AgentLoop(OpenAIChatModel(base_url="http://127.0.0.1:9/v1"), on_truncation="ignore")


def test_coerced_arguments_run_and_the_model_is_told():
    script = [reply(tool_calls=[tool_call("echo", {"text": "hi", "times": "2"}, "c1")]), reply(content="ok")]
    result, requests = run_scripted(script)
    assert result.tool_errors == 0 and result.tool_calls == {"echo": 1}
    observation = requests[1]["messages"][-1]["content"]
    assert observation.startswith("Note: argument 'times': the string \"2\" was read as")
    assert observation.endswith("hi hi")


def test_a_text_only_server_is_warned_about_once_and_sent_placeholders():
    """vLLM serving a text-only model answers 400 "At most 0 image(s) may be provided in one request"."""
    from glmkit.agent.models import TextOnlyServerWarning

    class Refusing(ScriptedOpenAIServer):
        def __enter__(self):
            super().__enter__()
            handler = self._server.RequestHandlerClass
            send = handler._send

            def refuse_images(handler_self, status, payload):
                body = self.requests[-1]
                has_image = any(
                    isinstance(m.get("content"), list)
                    and any(p.get("type") == "image_url" for p in m["content"])
                    for m in body["messages"]
                )
                if has_image:
                    status, payload = (
                        400,
                        {"error": {"message": "At most 0 image(s) may be provided in one request."}},
                    )
                send(handler_self, status, payload)

            handler._send = refuse_images
            return self

    with Refusing([reply(content="I cannot see it.")]) as srv:
        model = OpenAIChatModel(base_url=srv.base_url)
        loop = AgentLoop(model, toy_tools())
        with pytest.warns(TextOnlyServerWarning, match="does not take images"):
            result = loop.run("What is it?", [Image.new("RGB", (8, 8))])
        result_again = loop.run("And now?", [Image.new("RGB", (8, 8))])  # no second warning, no refusal
    assert result.final_answer == "I cannot see it." and result_again.final_answer == "I cannot see it."
    assert model.text_only and len(srv.requests) == 3
    assert (
        "[image img_0: not shown, this model reads text only]" in srv.requests[-1]["messages"][0]["content"]
    )


def test_glm_text_format_types_arguments_from_the_schema():
    text = "<tool_call>echo\n<arg_key>text</arg_key>\n<arg_value>07</arg_value>\n<arg_key>times</arg_key>\n<arg_value>2</arg_value>\n</tool_call>"
    script = [reply(content=text), reply(content="done")]
    result, requests = run_scripted(script, tool_format="glm45")
    assert result.tool_errors == 0 and result.tool_calls == {"echo": 1}
    # "07" stayed a string (text is string-typed), "2" became an int
    assert "07 07" in requests[1]["messages"][-1]["content"]


def test_jsonl_trajectory_records_every_event_without_pixels(tmp_path):
    log = tmp_path / "runs" / "traj.jsonl"
    bad = {"id": "c_bad", "type": "function", "function": {"name": "echo", "arguments": "{"}}
    script = [
        reply(tool_calls=[tool_call("make_image", {"width": 12, "height": 8}, "c_img"), bad]),
        reply(content="fine"),
    ]
    result, _ = run_scripted(script, images=[Image.new("RGB", (16, 16), "white")], trajectory_path=log)
    assert result.trajectory_path == log
    text = log.read_text()
    assert "base64" not in text and "data:image" not in text
    events = read_trajectory(log, run_id=result.run_id)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "stop"
    assert kinds.count("request") == 2 and kinds.count("assistant") == 2
    assert {"image", "tool_call", "tool_result", "parse_error"} <= set(kinds)

    call = next(e for e in events if e["event"] == "tool_call")
    assert (
        call["name"] == "make_image"
        and call["arguments"] == {"width": 12, "height": 8}
        and call["id"] == "c_img"
    )
    res = next(e for e in events if e["event"] == "tool_result")
    assert res["image_ids"] == ["img_1"] and res["error"] is None and "12x8" in res["text"]
    saved = Image.open(log.parent / res["image_paths"][0])
    assert saved.format == "PNG" and saved.size == (12, 8)
    question = next(e for e in events if e["event"] == "image" and e["image_id"] == "img_0")
    assert question["source"] == "question" and (log.parent / question["path"]).is_file()
    error = next(e for e in events if e["event"] == "parse_error")
    assert error["id"] == "c_bad" and "not valid JSON" in error["reason"]
    request = next(e for e in events if e["event"] == "request")
    image_part = request["messages"][0]["content"][1]
    assert image_part == {"type": "image", "image_id": "img_0", "path": question["path"]}
    stop = events[-1]
    assert stop["reason"] == "answer" and stop["final_answer"] == "fine"
    assert stop["tool_calls"] == {"make_image": 1} and stop["usage"]["total_tokens"] == 30
    # The stop event records exactly the outcome the result holds.
    recorded = ("turns", "final_answer", "tool_calls", "usage", "parse_errors", "tool_errors", "error")
    assert {k: stop[k] for k in recorded} == {k: getattr(result, k) for k in recorded}
    assert stop["reason"] == result.stop_reason and result.parse_errors == 1
    for line in text.splitlines():
        json.loads(line)


def test_two_runs_share_a_log_with_distinct_run_ids(tmp_path):
    log = tmp_path / "traj.jsonl"
    with ScriptedOpenAIServer([reply(content="a")]) as srv:
        loop = AgentLoop(OpenAIChatModel(base_url=srv.base_url), [EchoTool()], trajectory_path=log)
        first, second = loop.run("q1"), loop.run("q2")
    assert first.run_id != second.run_id
    assert len(read_trajectory(log)) == len(read_trajectory(log, first.run_id)) * 2


def test_20_turn_image_trajectory_with_a_context_window(tmp_path):
    turns = 20
    script = [
        reply(tool_calls=[tool_call("make_image", {"width": 8 + t, "height": 8}, f"c{t}")])
        for t in range(turns)
    ] + [reply(content="seen them all")]
    result, requests = run_scripted(
        script,
        images=[Image.new("RGB", (10, 10))],
        tools=[MakeImageTool()],
        max_turns=turns + 1,
        context_policy=ImageWindowPolicy(keep_last=3),
        trajectory_path=tmp_path / "t.jsonl",
    )
    assert result.stop_reason == "answer" and result.tool_calls == {"make_image": turns}
    last = requests[-1]["messages"]
    sizes = [decode_data_url(p["image_url"]["url"]).size for m in last for p in image_parts(m)]
    assert sizes == [(10, 10), (8 + 17, 8), (8 + 18, 8), (8 + 19, 8)]
    placeholders = [
        p["text"]
        for m in last
        if isinstance(m["content"], list)
        for p in m["content"]
        if "omitted" in p.get("text", "")
    ]
    assert placeholders == [f"[image img_{t} omitted]" for t in range(1, 18)]
    # the full history keeps every image
    assert len(result.images) == turns + 1
    for request in requests:
        assert sum(len(image_parts(m)) for m in request["messages"]) <= 4


def test_tools_by_registered_name_and_bad_arguments():
    with pytest.raises(ValueError, match="max_turns"):
        AgentLoop(OpenAIChatModel(base_url="http://127.0.0.1:9/v1"), [], max_turns=0)
    with pytest.raises(ValueError, match="two tools"):
        AgentLoop(OpenAIChatModel(base_url="http://127.0.0.1:9/v1"), [EchoTool(), EchoTool()])
    pytest.importorskip("glmkit.tools.image")
    loop = AgentLoop(OpenAIChatModel(base_url="http://127.0.0.1:9/v1"), ["crop_image"])
    assert list(loop.tools) == ["crop_image"]


def test_integration_with_the_real_crop_image_tool():
    pytest.importorskip("glmkit.tools.image")
    script = [
        reply(tool_calls=[tool_call("crop_image", {"image": "img_0", "bbox": [0, 0, 500, 500]}, "c1")]),
        reply(content="red in the corner"),
    ]
    image = Image.new("RGB", (200, 100), "white")
    image.paste((255, 0, 0), (0, 0, 100, 50))
    result, requests = run_scripted(script, images=[image], tools=["crop_image"])
    assert result.tool_errors == 0 and result.tool_calls == {"crop_image": 1}
    crop_message = requests[1]["messages"][-1]
    assert crop_message["role"] == "user"
    crop = decode_data_url(image_parts(crop_message)[0]["image_url"]["url"]).convert("RGB")
    assert crop.size == (100, 50)
    assert crop.getpixel((50, 25)) == (255, 0, 0)


def test_native_calls_without_ids_get_ids_that_match_their_results():
    call = {"type": "function", "function": {"name": "echo", "arguments": '{"text": "a"}'}}
    script = [reply(tool_calls=[call, dict(call)]), reply(content="ok")]
    result, requests = run_scripted(script)
    assistant, first, second = requests[1]["messages"][-3:]
    ids = [c["id"] for c in assistant["tool_calls"]]
    assert ids == ["call_1_0", "call_1_1"]
    assert [first["tool_call_id"], second["tool_call_id"]] == ids


def test_continuing_a_conversation_given_as_messages():
    from glmkit.agent.context import image_ref

    picture = Image.new("RGB", (30, 40))
    history = [
        {
            "role": "user",
            "content": [image_ref("photo", picture), {"type": "text", "text": "How big is photo?"}],
        },
    ]
    script = [reply(tool_calls=[tool_call("image_size", {"image": "photo"}, "c1")]), reply(content="30x40")]
    result, requests = run_scripted(script, question=history)
    assert result.tool_errors == 0 and requests[1]["messages"][-1]["content"] == "30x40"
    assert image_parts(requests[0]["messages"][0])[0]["image_url"]["url"].startswith("data:image/png")
    with pytest.raises(ValueError, match="inside the messages"):
        AgentLoop(OpenAIChatModel(base_url="http://127.0.0.1:9/v1")).run(history, images=[picture])


def test_extra_reply_fields_are_kept_in_the_history_but_not_sent():
    first = reply(tool_calls=[tool_call("echo", {"text": "a"}, "c1")])
    first["choices"][0]["message"]["reasoning_content"] = "thinking..."
    result, requests = run_scripted([first, reply(content="fine")])
    assert result.messages[0]["role"] == "user"
    assert result.messages[1]["reasoning_content"] == "thinking..."
    sent = requests[1]["messages"][1]
    assert sent["role"] == "assistant" and "reasoning_content" not in sent


def raw_completion(message, usage=None):
    """A chat-completion body whose fields may be malformed (the server's script sends it as is)."""
    return {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "usage": usage}


@pytest.mark.parametrize("message", [None, "hi", ["hi"]])
def test_a_reply_without_a_message_object_is_a_model_error(message):
    result, requests = run_scripted([raw_completion(message)])
    assert result.stop_reason == "model_error" and result.turns == 0 and len(requests) == 1
    assert "ChatClientError" in result.error and "message must be an object" in result.error


def test_a_custom_model_returning_a_non_dict_message_is_a_model_error():
    from glmkit.agent.client import ChatCompletion

    class BadModel:
        tool_format = OpenAIChatModel(base_url="http://127.0.0.1:9/v1").tool_format

        def chat(self, messages, tools=None):
            return ChatCompletion(message=None)

    result = AgentLoop(BadModel(), toy_tools()).run("hi")
    assert (
        result.stop_reason == "model_error"
        and "BadModel.chat returned a message of type NoneType" in result.error
    )


def test_non_numeric_usage_is_ignored_not_fatal():
    first = reply(tool_calls=[tool_call("echo", {"text": "a"}, "c1")])
    first["usage"] = {
        "prompt_tokens": "n/a",
        "completion_tokens": None,
        "total_tokens": "12",
        "prompt_tokens_details": {"cached_tokens": 3},
    }
    second = raw_completion({"role": "assistant", "content": "done"}, usage=["not", "a", "dict"])
    result, _ = run_scripted([first, second])
    assert result.stop_reason == "answer" and result.final_answer == "done"
    assert result.usage == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 12}


def test_an_image_part_without_an_id_is_a_clear_error():
    history = [{"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (4, 4))}]}]
    model = OpenAIChatModel(base_url="http://127.0.0.1:9/v1")
    with pytest.raises(
        ValueError, match=r"question message 0 \(user\) has an image part without an 'image_id'"
    ):
        AgentLoop(model, toy_tools(), system_prompt="Be brief.").run(history)
