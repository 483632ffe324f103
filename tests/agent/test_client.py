"""The OpenAI-compatible client: malformed responses are ChatClientError, usage counts are tolerant."""

from __future__ import annotations

import math

import pytest

from glmkit.agent.client import ChatClientError, OpenAIChatClient, usage_count
from tests.helpers.openai_server import ScriptedOpenAIServer, reply


def chat_once(response):
    with ScriptedOpenAIServer([response]) as srv:
        return OpenAIChatClient(srv.base_url, max_retries=0).chat([{"role": "user", "content": "hi"}])


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        ({"choices": [{"message": None}]}, "message must be an object, got NoneType"),
        ({"choices": [{"message": "hi"}]}, "message must be an object, got str"),
        ({"choices": []}, "IndexError"),
        ({"choices": ["x"]}, "malformed chat completion"),
        ({"nothing": 1}, "KeyError"),
    ],
)
def test_malformed_completions_raise_chat_client_error(response, reason):
    with pytest.raises(ChatClientError, match="malformed chat completion") as info:
        chat_once(response)
    assert reason in str(info.value)


def test_usage_that_is_not_an_object_becomes_empty():
    response = reply(content="ok")
    response["usage"] = "lots"
    completion = chat_once(response)
    assert completion.content == "ok" and completion.usage == {}


@pytest.mark.parametrize(
    ("value", "count"),
    [
        (7, 7),
        (7.9, 7),
        ("12", 12),
        ("3.0", 3),
        (None, 0),
        ("n/a", 0),
        (True, 0),
        ({"a": 1}, 0),
        (math.inf, 0),
        ("nan", 0),
    ],
)
def test_usage_count(value, count):
    assert usage_count(value) == count
