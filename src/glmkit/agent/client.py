"""A small client for OpenAI-compatible chat-completion endpoints (vLLM, SGLang, OpenAI, ...).

It speaks ``POST {base_url}/chat/completions`` with httpx, retries transient failures (connection
errors, 429 and 5xx) with exponential backoff, and turns PIL images into ``data:`` URLs so a
multimodal message can be sent to any server that accepts OpenAI's ``image_url`` content parts.
"""

from __future__ import annotations

import base64
import io
import math
import os
import time
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
    """Synchronous client of one OpenAI-compatible endpoint.

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

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

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
        url = f"{self.base_url}/chat/completions"
        delay = self.backoff
        last_error = ""
        for attempt in range(self.max_retries + 1):
            try:
                response = httpx.post(url, json=body, headers=self._headers(), timeout=self.timeout)
            except httpx.HTTPError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return _parse_completion(response, url)
                last_error = f"HTTP {response.status_code}: {response.text[:500]}"
                if response.status_code not in RETRY_STATUS:
                    break
            if attempt < self.max_retries:
                time.sleep(delay)
                delay *= 2
        raise ChatClientError(f"chat completion at {url} failed after {attempt + 1} attempt(s): {last_error}")


def _parse_completion(response: httpx.Response, url: str) -> ChatCompletion:
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
