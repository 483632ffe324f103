"""Tool-call formats: round trips, schema-aware GLM typing, malformed calls as structured errors."""

from __future__ import annotations

import json

import pytest

from glmkit.agent.formats import (
    TOOL_CALL_FORMATS,
    Glm45ToolCallFormat,
    HermesToolCallFormat,
    OpenAIToolCallFormat,
    ToolCall,
    decode_glm_value,
    encode_glm_value,
    get_tool_call_format,
    schema_types,
    think_spans,
    tool_parameter_schemas,
)
from glmkit.registry import RegistryError
from tests.agent.toy_tools import toy_tools

SEARCH = {
    "type": "object",
    "properties": {
        "query": {"type": "string"},
        "filter": {"type": "string"},
        "record_id": {"type": "string"},
        "number_text": {"type": "string"},
        "count": {"type": "integer"},
        "ratio": {"type": "number"},
        "flag": {"type": "boolean"},
        "boxes": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        "meta": {"type": "object"},
        "note": {"type": "string"},
        "maybe": {"type": ["integer", "null"]},
    },
}
SCHEMAS = {"search": SEARCH, "get_time": {"type": "object", "properties": {}}}

TRICKY = ToolCall(
    "search",
    {
        "query": "a < b && c > d <b>bold</b>",
        "filter": '{"k": [1, 2]}',  # JSON-looking text for a string-typed argument
        "record_id": "10220_3939392",  # ast.literal_eval would read this as an int (sglang PR#28114)
        "number_text": "42",
        "count": 3,
        "ratio": 0.25,
        "flag": False,
        "boxes": [[1, 2.5, 3, 4], [5, 6, 7, 8]],
        "meta": {"lang": "中文", "tags": ["x", "y"], "nested": {"deep": [1, [2, [3]]]}},
        "note": "line one\n  line two: ünïcödé 🚀",
        "maybe": None,
    },
)
FORMATS = [
    OpenAIToolCallFormat(),
    HermesToolCallFormat(),
    Glm45ToolCallFormat(),
    Glm45ToolCallFormat(newlines=False),
]
FORMAT_IDS = ["openai", "hermes", "glm45", "glm47-compact"]


def test_the_three_formats_are_registered():
    assert {"openai", "hermes", "glm45"} <= set(TOOL_CALL_FORMATS.names())
    assert isinstance(get_tool_call_format("glm45"), Glm45ToolCallFormat)
    with pytest.raises(RegistryError, match="glm45"):
        get_tool_call_format("glm4")


@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_round_trip_tricky_values_several_calls(fmt):
    calls = [TRICKY, ToolCall("get_time", {}), ToolCall("search", {"query": "second"})]
    if fmt.native:
        calls = [ToolCall(c.name, c.arguments, f"call_{i}") for i, c in enumerate(calls)]
    message = fmt.render_message(calls, content="Let me look.")
    message = json.loads(json.dumps(message))  # what crosses the wire is JSON
    parsed = fmt.parse_message(message, SCHEMAS)
    assert parsed.errors == []
    assert parsed.content == "Let me look."
    assert [(c.name, c.arguments) for c in parsed.calls] == [(c.name, c.arguments) for c in calls]
    assert type(parsed.calls[0].arguments["count"]) is int
    if fmt.native:
        assert [c.id for c in parsed.calls] == ["call_0", "call_1", "call_2"]


@pytest.mark.parametrize("fmt", FORMATS[1:], ids=FORMAT_IDS[1:])
def test_text_formats_keep_text_around_and_between_calls(fmt):
    text = (
        "before "
        + fmt.render_call(ToolCall("get_time", {}))
        + " middle "
        + fmt.render_call(ToolCall("get_time", {}))
    )
    text += " after"
    parsed = fmt.parse_text(text, SCHEMAS)
    assert len(parsed.calls) == 2
    assert parsed.content.split() == ["before", "middle", "after"]


def test_hermes_literal_close_tag_inside_a_json_string():
    # vLLM#45167: a regex parser cuts the call at the first '</tool_call>'.
    call = ToolCall("search", {"query": "see </tool_call> here", "note": "<tool_call>"})
    fmt = HermesToolCallFormat()
    parsed = fmt.parse_text(fmt.render_call(call), SCHEMAS)
    assert parsed.calls == [call]


def test_hermes_arguments_given_as_a_json_string_are_decoded():
    text = '<tool_call>{"name": "search", "arguments": "{\\"count\\": 2}"}</tool_call>'
    assert HermesToolCallFormat().parse_text(text, SCHEMAS).calls == [ToolCall("search", {"count": 2})]


@pytest.mark.parametrize("text", ["<tool_call>get_time</tool_call>", "<tool_call>get_time\n</tool_call>"])
def test_glm_zero_argument_calls(text):
    # vLLM#32213: zero-argument GLM calls raised and were silently dropped.
    parsed = Glm45ToolCallFormat().parse_text(text, SCHEMAS)
    assert parsed.calls == [ToolCall("get_time", {})]


def test_glm_parses_the_exact_glm45_template_rendering():
    text = (
        "I will search.<tool_call>search\n<arg_key>query</arg_key>\n<arg_value>cats</arg_value>\n"
        "<arg_key>count</arg_key>\n<arg_value>5</arg_value>\n</tool_call>"
    )
    parsed = Glm45ToolCallFormat().parse_text(text, SCHEMAS)
    assert parsed.content == "I will search."
    assert parsed.calls == [ToolCall("search", {"query": "cats", "count": 5})]


@pytest.mark.parametrize(
    ("raw", "schema", "expected"),
    [
        ("42", {"type": "integer"}, 42),
        ("42", {"type": "string"}, "42"),
        (" 42 ", {"type": "string"}, " 42 "),  # strings are verbatim, not stripped
        ("10220_3939392", {"type": "string"}, "10220_3939392"),
        ("10220_3939392", {"type": "integer"}, "10220_3939392"),  # left for validation to reject
        ("[1, 2]", {"type": "string"}, "[1, 2]"),
        ("[1, 2]", {"type": "array"}, [1, 2]),
        ('{"a": "<b>"}', {"type": "object"}, {"a": "<b>"}),
        ("2.5", {"type": "number"}, 2.5),
        ("3", {"type": "number"}, 3),
        ("true", {"type": "boolean"}, True),
        ("True", {"type": "boolean"}, True),
        ("False", {"type": "boolean"}, False),
        ("null", {"type": ["integer", "null"]}, None),
        ("7", {"anyOf": [{"type": "integer"}, {"type": "null"}]}, 7),
        ("2", {"enum": [1, 2, 3]}, 2),
        ("b", {"enum": ["a", "b"]}, "b"),
        ("12", {"type": ["string", "integer"]}, 12),
        ('"quoted"', {"type": ["string", "integer"]}, '"quoted"'),
        ("abc", {"type": "integer"}, "abc"),
        # no schema: only unambiguous JSON containers and quoted strings are decoded
        ("42", None, "42"),
        ("true", {}, "true"),
        ("[1, [2]]", None, [1, [2]]),
        ('"x y"', None, "x y"),
        ("{broken", None, "{broken"),
    ],
)
def test_decode_glm_value_is_schema_aware(raw, schema, expected):
    value = decode_glm_value(raw, schema)
    assert value == expected
    assert type(value) is type(expected)


def test_encode_glm_value_matches_the_template_convention():
    assert encode_glm_value("a < b") == "a < b"
    assert encode_glm_value([1, "中"]) == '[1, "中"]'
    assert encode_glm_value(False) == "false"


def test_schema_types_resolves_unions():
    assert schema_types({"oneOf": [{"type": "string"}, {"type": "array"}]}) == {"string", "array"}
    assert schema_types({"properties": {}}) == {"object"}
    assert schema_types({"description": "anything"}) is None


def test_glm_unknown_argument_of_a_known_tool_is_decoded_conservatively():
    text = "<tool_call>search<arg_key>extra</arg_key><arg_value>7</arg_value></tool_call>"
    assert Glm45ToolCallFormat().parse_text(text, SCHEMAS).calls[0].arguments == {"extra": "7"}


HERMES_BAD = [
    ('<tool_call>{"name": "search", "arguments": {"count": }}</tool_call>', "invalid JSON"),
    ('<tool_call>{"arguments": {}}</tool_call>', "without a 'name'"),
    ('<tool_call>{"name": "nope", "arguments": {}}</tool_call>', "unknown tool 'nope'"),
    ('<tool_call>{"name": "search", "arguments": [1]}</tool_call>', "must be a JSON object"),
    ('<tool_call>["search"]</tool_call>', "must be a JSON object"),
    ('<tool_call>{"name": "search"} trailing</tool_call>', "unexpected text"),
    ('<tool_call>{"name": "search", "arguments": {}}', "unclosed"),
]
GLM_BAD = [
    ("<tool_call>\n<arg_key>a</arg_key><arg_value>1</arg_value></tool_call>", "without a function name"),
    ('<tool_call>{"name": "search"}</tool_call>', "expected a function name"),
    ("<tool_call>nope\n</tool_call>", "unknown tool 'nope'"),
    ("<tool_call>search\n<arg_key>query</arg_key>\n</tool_call>", "has no <arg_value>"),
    ("<tool_call>search\nquery=cats\n</tool_call>", "expected <arg_key>"),
    ("<tool_call>search\n<arg_key>query</arg_key><arg_value>cats</arg_value>", "unclosed"),
]


@pytest.mark.parametrize(
    ("fmt", "bad", "reason"),
    [(HermesToolCallFormat(), b, r) for b, r in HERMES_BAD]
    + [(Glm45ToolCallFormat(), b, r) for b, r in GLM_BAD],
    ids=[f"hermes-{i}" for i in range(len(HERMES_BAD))] + [f"glm45-{i}" for i in range(len(GLM_BAD))],
)
def test_malformed_text_calls_become_errors_and_good_calls_survive(fmt, bad, reason):
    good = fmt.render_call(ToolCall("search", {"query": "ok"}))
    parsed = fmt.parse_text(
        good + "\n" + bad + "\n" + good if "unclosed" not in reason else good + bad, SCHEMAS
    )
    kinds = [type(i).__name__ for i in parsed.items]
    if "unclosed" in reason:
        assert kinds == ["ToolCall", "ToolCallError"]
    else:
        assert kinds == ["ToolCall", "ToolCallError", "ToolCall"]
    error = parsed.errors[0]
    assert reason in error.reason
    assert error.raw.startswith("<tool_call>")
    assert error.raw.strip() in bad
    observation = error.observation()
    assert observation.startswith("Error: invalid tool call") and error.raw in observation


BOTH_FORMATS = pytest.mark.parametrize(
    "fmt", [HermesToolCallFormat(), Glm45ToolCallFormat()], ids=["hermes", "glm45"]
)


@BOTH_FORMATS
def test_tool_call_tags_inside_think_are_reasoning_and_later_calls_still_parse(fmt):
    good = fmt.render_call(ToolCall("search", {"query": "cats", "count": 2}))
    thought = "<think>I will emit a <tool_call> block, maybe <tool_call>search then get_time</think>"
    for text in (thought + "\n" + good, thought + good + "\n<think>done? <tool_call></think>Done."):
        parsed = fmt.parse_text(text, SCHEMAS)
        assert parsed.items == [ToolCall("search", {"query": "cats", "count": 2})]
        assert parsed.content.startswith(thought)
    # a complete call written inside the reasoning is still only reasoning
    parsed = fmt.parse_text("<think>" + good + "</think>The answer is 42.", SCHEMAS)
    assert parsed.items == [] and parsed.content.endswith("The answer is 42.")


@BOTH_FORMATS
def test_think_opened_by_the_template_or_cut_off(fmt):
    good = fmt.render_call(ToolCall("get_time", {}))
    # the prompt ended with '<think>', so the reply only closes it
    parsed = fmt.parse_text("plan: <tool_call> get_time</think>\n" + good, SCHEMAS)
    assert parsed.calls == [ToolCall("get_time", {})] and not parsed.errors
    # the reply was cut off while reasoning
    assert fmt.parse_text("<think>first " + good, SCHEMAS).items == []


@BOTH_FORMATS
@pytest.mark.parametrize(
    "prose",
    [
        "Use the `<tool_call>` tag format to call tools. The answer is 42.",
        "Write <tool_call> and then the call; The answer is 42.",
        "The answer is 42. <tool_call>",
    ],
)
def test_a_tool_call_tag_mentioned_in_prose_is_text(fmt, prose):
    parsed = fmt.parse_text(prose, SCHEMAS)
    assert parsed.items == [] and parsed.content == prose
    good = fmt.render_call(ToolCall("get_time", {}))
    parsed = fmt.parse_text(prose + "\n" + good, SCHEMAS)
    assert parsed.items == [ToolCall("get_time", {})] and parsed.content == prose


def test_think_spans():
    assert think_spans("a<think>b</think>c<think>d") == [(1, 17), (18, 26)]
    assert think_spans("x</think>y<think>z</think>") == [(0, 9), (10, 26)]
    assert think_spans("no reasoning") == []


def test_a_broken_call_does_not_swallow_the_next_one():
    fmt = HermesToolCallFormat()
    text = '<tool_call>{"name": "search", <tool_call>{"name": "get_time"}</tool_call>'
    parsed = fmt.parse_text(text, SCHEMAS)
    assert [type(i).__name__ for i in parsed.items] == ["ToolCallError", "ToolCall"]
    assert "unclosed" in parsed.errors[0].reason


@pytest.mark.parametrize(
    "fmt", [HermesToolCallFormat(allow_unclosed=True), Glm45ToolCallFormat(allow_unclosed=True)]
)
def test_allow_unclosed_accepts_a_final_call_cut_at_the_stop_string(fmt):
    text = fmt.render_call(ToolCall("search", {"query": "x", "count": 2})).removesuffix("</tool_call>")
    assert fmt.parse_text(text, SCHEMAS).calls == [ToolCall("search", {"query": "x", "count": 2})]


OPENAI_BAD = [
    ({"id": "c1", "type": "function", "function": {"name": "search", "arguments": "{bad"}}, "not valid JSON"),
    ({"id": "c1", "type": "function", "function": {"arguments": "{}"}}, "without a function name"),
    ({"id": "c1", "type": "function", "function": {"name": "nope", "arguments": "{}"}}, "unknown tool"),
    ({"id": "c1", "type": "function", "function": {"name": "search", "arguments": "[1]"}}, "JSON object"),
    ({"id": "c1", "type": "function"}, "without a 'function'"),
]


@pytest.mark.parametrize(("item", "reason"), OPENAI_BAD)
def test_openai_malformed_calls_keep_their_id(item, reason):
    message = {"role": "assistant", "content": None, "tool_calls": [item]}
    parsed = OpenAIToolCallFormat().parse_message(message, SCHEMAS)
    assert len(parsed.errors) == 1 and not parsed.calls
    assert reason in parsed.errors[0].reason
    assert parsed.errors[0].id == "c1"


def test_openai_format_never_reads_calls_from_the_text():
    # llama.cpp#18183: parsing bare JSON in prose produces spurious calls.
    message = {"role": "assistant", "content": '{"name": "search", "arguments": {}} <tool_call>x</tool_call>'}
    parsed = OpenAIToolCallFormat().parse_message(message, SCHEMAS)
    assert parsed.items == [] and parsed.content == message["content"]


def test_no_tool_list_accepts_any_name():
    fmt = HermesToolCallFormat()
    assert fmt.parse_text('<tool_call>{"name": "anything"}</tool_call>').calls == [ToolCall("anything", {})]


def test_tool_parameter_schemas_accepts_tools_schemas_and_mappings():
    tools = toy_tools()
    by_tool = tool_parameter_schemas(tools)
    assert by_tool == tool_parameter_schemas([t.schema() for t in tools])
    assert by_tool["echo"]["properties"]["times"]["type"] == "integer"
    assert tool_parameter_schemas(None) is None
    with pytest.raises(ValueError, match="without a 'name'"):
        tool_parameter_schemas([{"type": "function", "function": {"parameters": {}}}])


def test_prepare_messages_for_a_text_format():
    fmt = Glm45ToolCallFormat()
    native = OpenAIToolCallFormat().render_message([ToolCall("echo", {"text": "hi", "times": 2}, "c0")], "ok")
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Repeat hi."},
        native,
        {"role": "tool", "tool_call_id": "c0", "content": "hi hi"},
        {"role": "tool", "tool_call_id": "c1", "content": "second"},
        {"role": "user", "content": [{"type": "text", "text": "Images returned by the tools:"}]},
    ]
    out = fmt.prepare_messages(history, [t.schema() for t in toy_tools()])
    # GLM: the tools are their own first system block; results stay role: tool for the template
    assert [m["role"] for m in out] == ["system", "system", "user", "assistant", "tool", "tool", "user"]
    assert out[0]["content"].startswith("# Tools\n") and '"name": "echo"' in out[0]["content"]
    assert out[1] == history[0] and out[3] == native  # the native call is kept as the model produced it

    fallback = fmt.prepare_messages(history, None, observation_role="user", native_calls="text")
    assert [m["role"] for m in fallback] == ["system", "user", "assistant", "user"]
    assert (
        "<tool_call>echo" in fallback[2]["content"] and "<arg_value>2</arg_value>" in fallback[2]["content"]
    )
    assert "tool_calls" not in fallback[2]
    observation = fallback[3]["content"]
    assert observation.count("<tool_response>") == 2 and "hi hi" in observation
    assert "Images returned by the tools:" in observation  # the following user turn was merged
    assert OpenAIToolCallFormat().prepare_messages(history) == history
    with pytest.raises(ValueError, match="observation_role"):
        fmt.prepare_messages(history, observation_role="observation")


def test_hermes_tools_follow_the_system_prompt():
    fmt = HermesToolCallFormat(default_system="You are Qwen.")
    tools = [t.schema() for t in toy_tools()]
    first = fmt.prepare_messages([{"role": "system", "content": "Be brief."}], tools)[0]["content"]
    assert first.startswith("Be brief.\n\n# Tools\n\nYou may call one or more functions")
    alone = fmt.prepare_messages([{"role": "user", "content": "hi"}], tools)
    assert alone[0]["content"].startswith("You are Qwen.\n\n# Tools\n") and alone[1]["role"] == "user"


def test_hermes_reads_a_parameters_key_and_says_so():
    text = '<tool_call>{"name": "search", "parameters": {"query": "cats"}}</tool_call>'
    [call] = HermesToolCallFormat().parse_text(text, SCHEMAS).calls
    assert call.arguments == {"query": "cats"}
    assert call.notes and "'parameters'" in call.notes[0]


def test_arguments_are_coerced_as_serving_parsers_accept_them_with_notes():
    schemas = {
        "f": {
            "type": "object",
            "properties": {
                "n": {"type": "integer"},
                "opts": {"type": "object"},
                "flag": {"type": "boolean"},
                "id": {"type": "string"},
                "box": {"type": "array"},
            },
        }
    }
    text = (
        '<tool_call>{"name": "f", "arguments": {"n": "5", "opts": "{\'a\': 1}", "flag": "True", '
        '"id": "10220_3939392", "box": "[1, 2]"}}</tool_call>'
    )
    [call] = HermesToolCallFormat().parse_text(text, schemas).calls
    assert call.arguments == {"n": 5, "opts": {"a": 1}, "flag": True, "id": "10220_3939392", "box": [1, 2]}
    assert len(call.notes) == 4 and any("'n'" in n and "integer 5" in n for n in call.notes)
    # GLM: a quoted number for an integer, a Python dict for an object
    glm = (
        '<tool_call>f<arg_key>n</arg_key><arg_value>"5"</arg_value>'
        "<arg_key>opts</arg_key><arg_value>{'a': [1, 'x']}</arg_value></tool_call>"
    )
    [call] = Glm45ToolCallFormat().parse_text(glm, schemas).calls
    assert call.arguments == {"n": 5, "opts": {"a": [1, "x"]}} and len(call.notes) == 2
    # native tool_calls too
    native = {
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"n": "7"}'}}]
    }
    [call] = OpenAIToolCallFormat().parse_message(native, schemas).calls
    assert call.arguments == {"n": 7} and call.notes


def test_glm_accepts_literal_newlines_and_repeated_keys_with_notes():
    text = (
        "<tool_call>search\\n<arg_key>query</arg_key>\\n<arg_value>a</arg_value>\\n"
        "<arg_key>query</arg_key><arg_value>b</arg_value>\\n</tool_call>"
    )
    [call] = Glm45ToolCallFormat().parse_text(text, SCHEMAS).calls
    assert call.name == "search" and call.arguments == {"query": "b"}
    assert any("literal" in n for n in call.notes) and any("more than once" in n for n in call.notes)


def test_text_format_also_reads_calls_a_server_already_parsed():
    message = {
        "role": "assistant",
        "content": "<tool_call>get_time</tool_call>",
        "tool_calls": [{"id": "s1", "type": "function", "function": {"name": "search", "arguments": "{}"}}],
    }
    parsed = Glm45ToolCallFormat().parse_message(message, SCHEMAS)
    assert parsed.calls == [ToolCall("search", {}, "s1"), ToolCall("get_time", {})]
