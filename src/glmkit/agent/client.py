"""A small client for OpenAI-compatible chat-completion endpoints (vLLM, SGLang, OpenAI, ...).

It speaks ``POST {base_url}/chat/completions`` with httpx, synchronously or asynchronously,
retries transient failures (connection errors, timeouts, 408/409/429 and 5xx) with exponential
backoff under one policy for both, and turns PIL images into ``data:`` URLs so a
multimodal message can be sent to any server that accepts OpenAI's ``image_url`` content parts.
"""

from __future__ import annotations

import asyncio
import base64
import io
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from PIL import Image

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class ChatClientError(RuntimeError):
    """The endpoint could not produce a completion; the message says why (status, body, attempts)."""


def image_to_data_url(image: Image.Image, fmt: str = "PNG") -> str:
    """Encode a PIL image as a ``data:image/...;base64,`` URL."""
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def image_part(image: Image.Image) -> dict[str, Any]:
    """An OpenAI ``image_url`` content part holding ``image`` as a data URL."""
    return {"type": "image_url", "image_url": {"url": image_to_data_url(image)}}


@dataclass
class ChatCompletion:
    """The parts of a chat-completion response that glmkit uses, plus the raw JSON."""

    message: dict[str, Any]
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def content(self) -> str:
        """The assistant's text ('' when it only called tools)."""
        content = self.message.get("content") or ""
        if isinstance(content, list):  # some servers return content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return content

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """OpenAI-format ``tool_calls`` of the message (empty when there are none)."""
        return list(self.message.get("tool_calls") or [])


class OpenAIChatClient:
    """Client of one OpenAI-compatible endpoint: :meth:`chat` blocks, :meth:`achat` awaits.

    Args:
        base_url: e.g. ``http://localhost:8000/v1``.
        model: the model name sent with each request.
        api_key: bearer token; defaults to ``$OPENAI_API_KEY`` (or none).
        timeout: seconds per request.
        max_retries: extra attempts after a transient failure.
        backoff: first retry delay in seconds, doubled at each retry.
    """

    def __init__(
        self,
        base_url: str,
        model: str = "default",
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        default_params: dict[str, Any] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.default_params = dict(default_params or {})

    def headers(self) -> dict[str, str]:
        """The HTTP headers of a request (JSON, plus the bearer token when there is one)."""
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    @property
    def url(self) -> str:
        """The chat-completions URL requests are posted to."""
        return f"{self.base_url}/chat/completions"

    def payload(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> dict[str, Any]:
        """The JSON body of a request (exposed so tests and logs can see exactly what is sent)."""
        body: dict[str, Any] = {"model": self.model, "messages": messages, **self.default_params, **params}
        if tools:
            body["tools"] = tools
        return body

    def chat(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, **params: Any
    ) -> ChatCompletion:
        """Send one chat-completion request and return the first choice."""
        body = self.payload(messages, tools, **params)
        retry = _RetryPolicy(self.url, self.max_retries, self.backoff)
        for wait in retry.waits():
            time.sleep(wait)
            retry.record(self._post(body))
        return retry.result()

    async def achat(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        http: httpx.AsyncClient | None = None,
        **params: Any,
    ) -> ChatCompletion:
        """:meth:`chat` without blocking: the same request, retries and backoff over ``httpx.AsyncClient``.

        Args:
            http: the client to send with (a caller with many requests in flight shares one, with
                its own connection limits); by default one is opened for this call. Each request
                keeps this client's ``timeout``.
        """
        if http is None:
            async with httpx.AsyncClient(timeout=self.timeout) as own:
                return await self.achat(messages, tools, http=own, **params)
        body = self.payload(messages, tools, **params)
        retry = _RetryPolicy(self.url, self.max_retries, self.backoff)
        for wait in retry.waits():
            await asyncio.sleep(wait)
            retry.record(await self._apost(http, body))
        return retry.result()

    def _post(self, body: dict[str, Any]) -> httpx.Response | httpx.HTTPError:
        try:
            return httpx.post(self.url, json=body, headers=self.headers(), timeout=self.timeout)
        except httpx.HTTPError as exc:  # a transient failure, for the retry policy to judge
            return exc

    async def _apost(self, http: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response | httpx.HTTPError:
        try:
            return await http.post(self.url, json=body, headers=self.headers(), timeout=self.timeout)
        except httpx.HTTPError as exc:
            return exc


class _RetryPolicy:
    """The retry and backoff of one request, shared by :meth:`OpenAIChatClient.chat` and ``achat``.

    Transient failures (``httpx`` errors, timeouts included, and :data:`RETRY_STATUS`) are retried
    up to ``max_retries`` times, after ``backoff`` seconds doubled at each retry; any other status
    ends the request. The caller only sends and sleeps: before each attempt it sleeps what
    :meth:`waits` yields (0 before the first), hands the attempt's response or ``httpx`` error to
    :meth:`record`, and finally takes :meth:`result`.
    """

    def __init__(self, url: str, max_retries: int, backoff: float) -> None:
        self.url = url
        self.max_retries = max_retries
        self.backoff = backoff
        self.attempts = 0
        self.last_error = ""
        self.completion: ChatCompletion | None = None
        self._final = False  # a completion, or a status that retrying cannot change

    def waits(self) -> Iterator[float]:
        """Seconds to sleep before each attempt; ends after a success, a final error or the last retry."""
        delay = self.backoff
        yield 0.0
        while not self._final and self.attempts <= self.max_retries:
            yield delay
            delay *= 2

    def record(self, outcome: httpx.Response | httpx.HTTPError) -> None:
        """Count one attempt: a 200 response is the completion; an ``httpx`` error (connection,
        timeout, ...) or a status in :data:`RETRY_STATUS` is transient; any other status is final."""
        self.attempts += 1
        if isinstance(outcome, httpx.HTTPError):
            self.last_error = f"{type(outcome).__name__}: {outcome}"
        elif outcome.status_code == 200:
            self.completion = parse_completion(outcome, self.url)
            self._final = True
        else:
            self.last_error = f"HTTP {outcome.status_code}: {outcome.text[:500]}"
            self._final = outcome.status_code not in RETRY_STATUS

    def result(self) -> ChatCompletion:
        """The completion, or :class:`ChatClientError` naming the attempts and the last error."""
        if self.completion is None:
            raise ChatClientError(
                f"chat completion at {self.url} failed after {self.attempts} attempt(s): {self.last_error}"
            )
        return self.completion


def parse_completion(response: httpx.Response, url: str) -> ChatCompletion:
    """The first choice of a 200 chat-completion ``response`` from ``url``.

    Raises :class:`ChatClientError` naming what is malformed (no JSON, no ``choices[0].message``, a
    message that is not an object) with the start of the body; a ``usage`` that is not an object
    becomes ``{}``.
    """
    try:
        data = response.json()
        choice = data["choices"][0]
        message = choice["message"]
        finish_reason = choice.get("finish_reason")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ChatClientError(
            f"malformed chat completion from {url} ({type(exc).__name__}: {exc}): {response.text[:500]}"
        ) from None
    if not isinstance(message, dict):
        raise ChatClientError(
            f"malformed chat completion from {url}: choices[0].message must be an object, "
            f"got {type(message).__name__}: {response.text[:500]}"
        )
    usage = data.get("usage")
    return ChatCompletion(
        message=message,
        finish_reason=finish_reason,
        usage=usage if isinstance(usage, dict) else {},
        raw=data,
    )


def usage_count(value: Any) -> int:
    """A token count from a ``usage`` field: ints, floats and numeric strings count, anything else is 0.

    Servers disagree on ``usage`` (nulls, strings, nested detail objects); a bad field must not end a run.
    """
    if isinstance(value, bool):
        return 0
    if isinstance(value, int | float):
        return int(value) if math.isfinite(value) else 0
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return 0
        return int(number) if math.isfinite(number) else 0
    return 0
