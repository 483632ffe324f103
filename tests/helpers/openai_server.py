"""A real HTTP server on loopback that speaks the OpenAI chat-completions API and replays a script.

Tests use it to drive the agent loop, LLM judges and model adapters without a model:

    with ScriptedOpenAIServer([reply(content="hi"), reply(tool_calls=[tool_call("crop_image", {...})])]) as srv:
        client = OpenAIChatClient(srv.base_url)
        ...
        srv.requests  # every JSON body received, in order

A script entry is a response dict (``reply(...)``), a callable ``request_body -> response dict``
(for judges whose answer depends on the question), or an ``HTTPStatus`` int to answer with that
error status (to test retries). When the script runs out, the last entry repeats.

Rollout-engine tests also use: ``reply(logprobs=..., token_ids=...)`` for per-token log-probabilities
as vLLM and SGLang return them; ``active`` and ``max_active``, the chat requests being answered now
and the most at once (a concurrency limit is visible at the server); and ``routes``, further POST
paths (a server's native API: ``/abort_request``, ``/update_weights_from_disk``, ...) answered by
``handler(body) -> (status, payload)`` and recorded in ``calls`` as ``(path, body)``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ScriptEntry = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]] | int
RouteHandler = Callable[[dict[str, Any]], tuple[int, Any]]


def tool_call(name: str, arguments: dict[str, Any], call_id: str | None = None) -> dict[str, Any]:
    """An OpenAI ``tool_calls`` item."""
    return {
        "id": call_id or f"call_{name}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def reply(
    content: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str | None = None,
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    logprobs: list[tuple[str, float]] | None = None,
    token_ids: list[int] | None = None,
    choice_fields: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A full chat-completion response with one choice.

    ``logprobs``: ``(token, logprob)`` pairs, returned as the choice's ``logprobs.content`` (the
    OpenAI format of ``logprobs: true``); ``token_ids``: returned as the choice's ``token_ids`` (as
    vLLM and SGLang do for ``return_token_ids: true``); ``choice_fields``: more fields of the choice
    (a server's own, such as vLLM's ``stop_reason``).
    """
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    choice: dict[str, Any] = {
        "index": 0,
        "message": message,
        "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop"),
    }
    if logprobs is not None:
        choice["logprobs"] = {
            "content": [{"token": t, "logprob": lp, "bytes": None, "top_logprobs": []} for t, lp in logprobs]
        }
    if token_ids is not None:
        choice["token_ids"] = list(token_ids)
    choice.update(choice_fields or {})
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "scripted",
        "choices": [choice],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class ScriptedOpenAIServer:
    """Threaded HTTP server answering ``POST /v1/chat/completions`` from a script."""

    def __init__(
        self,
        script: list[ScriptEntry],
        delay: float = 0.0,
        routes: dict[str, RouteHandler] | None = None,
    ) -> None:
        if not script:
            raise ValueError("ScriptedOpenAIServer needs at least one scripted response")
        self.script = list(script)
        self.delay = delay
        self.routes = dict(routes or {})
        self.requests: list[dict[str, Any]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []  # requests to ``routes``, in order
        self.active = 0  # chat requests being answered now
        self.max_active = 0  # the most chat requests answered at once
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def _next(self, body: dict[str, Any]) -> ScriptEntry:
        with self._lock:
            self.requests.append(body)
            idx = min(len(self.requests) - 1, len(self.script) - 1)
            entry = self.script[idx]
        return entry(body) if callable(entry) else entry

    def __enter__(self) -> ScriptedOpenAIServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                route = self.path.rstrip("/")
                if route in outer.routes:
                    self._route(route)
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                length = int(self.headers.get("Content-Length", 0))
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self._send(400, {"error": {"message": "invalid JSON"}})
                    return
                with outer._lock:
                    outer.active += 1
                    outer.max_active = max(outer.max_active, outer.active)
                try:
                    entry = outer._next(body)
                    if outer.delay:
                        time.sleep(outer.delay)
                finally:
                    with outer._lock:
                        outer.active -= 1
                if isinstance(entry, int):
                    self._send(entry, {"error": {"message": f"scripted status {entry}"}})
                else:
                    self._send(200, entry)

            def _route(self, route: str) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                body = json.loads(raw) if raw else {}
                with outer._lock:
                    outer.calls.append((route, body))
                status, payload = outer.routes[route](body)
                self._send(status, payload)

            def _send(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                # a client that hung up (an aborted rollout request) is not a server error
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
