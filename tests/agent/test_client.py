"""The OpenAI-compatible client: malformed responses are ChatClientError, usage counts are tolerant."""

from __future__ import annotations

import asyncio
import math
import socket

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


def _chat_one_way(path, script, monkeypatch, **client_args):
    """Run ``chat`` (path "sync") or ``achat`` ("async") on ``script``: (outcome, bodies, backoff sleeps)."""
    sleeps: list[float] = []

    async def fake_async_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr("glmkit.agent.client.time.sleep", sleeps.append)
    monkeypatch.setattr("glmkit.agent.client.asyncio.sleep", fake_async_sleep)
    messages = [{"role": "user", "content": "hi"}]
    with ScriptedOpenAIServer(script) as srv:
        client = OpenAIChatClient(srv.base_url, backoff=0.5, **client_args)
        try:
            if path == "sync":
                outcome = client.chat(messages, temperature=0.0)
            else:
                outcome = asyncio.run(client.achat(messages, temperature=0.0))
        except ChatClientError as exc:
            outcome = exc
        return outcome, list(srv.requests), [s for s in sleeps if s]


def _chat_both_ways(script, monkeypatch, **client_args):
    return tuple(_chat_one_way(path, script, monkeypatch, **client_args) for path in ("sync", "async"))


def test_achat_sends_and_returns_what_chat_does(monkeypatch):
    sync, asynchronous = _chat_both_ways([reply(content="ok")], monkeypatch)
    assert asynchronous[0] == sync[0] and sync[0].content == "ok"
    assert asynchronous[1] == sync[1] and sync[1][0]["temperature"] == 0.0
    assert sync[2] == asynchronous[2] == []


@pytest.mark.parametrize(
    ("script", "max_retries", "asked", "sleeps", "error"),
    [
        ([503, 429, reply(content="ok")], 2, 3, [0.5, 1.0], None),  # transient statuses, backoff doubling
        ([503], 2, 3, [0.5, 1.0], "failed after 3 attempt(s): HTTP 503"),  # no sleep after the last
        ([503], 0, 1, [], "failed after 1 attempt(s): HTTP 503"),
        ([400], 3, 1, [], "failed after 1 attempt(s): HTTP 400"),  # not transient: no retry
        ([{"choices": []}], 3, 1, [], "malformed chat completion"),  # a 200 is never retried
    ],
)
def test_chat_and_achat_share_one_retry_policy(monkeypatch, script, max_retries, asked, sleeps, error):
    sync, asynchronous = _chat_both_ways(script, monkeypatch, max_retries=max_retries)
    for outcome, requests, slept in (sync, asynchronous):
        assert len(requests) == asked and slept == sleeps
        if error is None:
            assert outcome.content == "ok"
        else:
            assert isinstance(outcome, ChatClientError) and error in str(outcome)


def test_connection_errors_are_retried_and_named():
    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    client = OpenAIChatClient(url, max_retries=1, backoff=0.01, timeout=5.0)
    for call in (lambda m: client.chat(m), lambda m: asyncio.run(client.achat(m))):
        with pytest.raises(ChatClientError, match=r"failed after 2 attempt\(s\): ConnectError"):
            call([{"role": "user", "content": "hi"}])
