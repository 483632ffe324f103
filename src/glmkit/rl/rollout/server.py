"""A rollout engine that sends each request to an OpenAI-compatible server (vLLM, SGLang, ...).

GLM-5V-Turbo (section 2.4) rolls out on an inference server and pushes the policy's weights to it
after each update. :class:`OpenAIServerEngine` (``rollout_engines: openai_server``) is that engine:

* **one chat request per rollout request**, sent by the project's client
  (:class:`~glmkit.agent.client.OpenAIChatClient`, over one shared ``httpx.AsyncClient``). The
  messages are the trainer's prompt (:meth:`~.inprocess.ChatPrompts.messages`: one user turn, the
  sample's images, then its question), each image decoded as the trainer's processor decodes it
  (:func:`~glmkit.data.decode.decode_image`: EXIF orientation applied, transparency on white) and
  sent losslessly as a PNG ``data:`` URL. A server that renders them with the policy's chat
  template (vLLM and SGLang apply the Hugging Face template, image parts as image placeholders)
  then sees the prompt tokens the trainer recomputes log-probabilities on, which exact importance
  ratios need. :class:`~.engine.SamplingParams` map to ``max_tokens``, ``temperature``, ``top_p``
  and ``stop``; ``extra`` is passed through (``top_k``, ``seed``, ...);
* **at most** ``max_concurrency`` requests on the wire; the rest wait in submission order;
* **a deadline per request** (``timeout_s``, from the moment it is sent): an overrun, an HTTP
  error, a malformed reply or a server-side end (``finish_reason`` other than ``stop``,
  ``tool_calls`` or ``length``, e.g. SGLang's ``abort``) finishes the request with
  ``finish_reason="error"`` and the reason in ``error``; nothing is lost;
* **per-token log-probabilities** (``logprobs: true``) parsed into :attr:`Completion.logprobs`
  when the server returns them, and the token ids into :attr:`Completion.token_ids` where the
  reply has them: the choice's ``token_ids`` (vLLM's ``return_token_ids: true``, which the engine
  also sends to SGLang), or token strings ``token_id:N`` (vLLM's ``return_tokens_as_token_ids``);
  the prompt's token ids, where the reply has them (vLLM's ``prompt_token_ids`` with
  ``return_token_ids: true``), go to ``Completion.metadata["prompt_token_ids"]``, so a trainer can
  check them against its own rendering of the prompt;
* **abort**: the request's task is cancelled, which closes its connection (vLLM aborts a request
  whose client disconnected); with ``flavour="sglang"`` the :meth:`abort_requests` hook also posts
  SGLang's ``/abort_request`` with the request's ``rid``, which the engine sets on every request;
* **token in, token out** (a multi-step episode's later turns, :mod:`~.episodes`):
  ``generate(request, prompt=TokenPrompt)`` sends the prompt's token ids and images instead of
  chat messages, so the server continues exactly the ids the trainer holds and returns the ids it
  generated (never decoded and tokenized again):

  - SGLang: its native ``POST /generate`` (SGLang's ``io_struct.py::GenerateReqInput``; slime's
    ``sglang_rollout.generate`` sends the same body) with ``input_ids``, ``image_data`` (one PNG
    ``data:`` URL per image, in placeholder order), ``sampling_params`` (``max_new_tokens``,
    ``temperature``, ``top_p``, ``stop``, ``stop_token_ids``, ``skip_special_tokens: false``,
    ``spaces_between_special_tokens: false``, then ``extra``), ``return_logprob: true`` and the
    ``rid`` (so ``/abort_request`` reaches it); the reply's ``meta_info.output_token_logprobs``
    (``[logprob, token_id, text]`` per generated token) gives the token ids and log-probabilities
    (``output_ids`` when it is absent), ``meta_info.finish_reason.type`` the finish reason
    (``stop``, ``length``; ``abort`` or anything else is an error), ``text`` the response.
    With images, SGLang's model processor reads the placeholders in ``input_ids`` (GLM-4V's
    matches ``<|begin_of_image|>(<|image|>)+<|end_of_image|>``) and expands them again for each
    image: the ids match the trainer's only where the served model's processor expands them as
    the trainer's does (anchors_rl.md, pitfall 3);
  - vLLM: ``POST /v1/completions`` with ``prompt`` the list of ids, ``return_token_ids``,
    ``logprobs: 1`` and ``return_tokens_as_token_ids``; text only: vLLM's completions route takes
    no images beside token ids, so a prompt with images fails with a ``ValueError`` that says so;
  - ``generic``: refused (:meth:`~OpenAIServerEngine.token_prompt_refusal`; ``EpisodeRunner``
    raises at construction).

  ``stop_token_ids`` (the policy's turn ends) go with every such request, so a turn stops where
  the in-process engine's would and its ids end with the token that ended it;
* **weight push** (:meth:`update_weights`): the policy is written with ``save_pretrained`` to
  ``weights_dir/policy-v<version>`` (or a directory is given) and the server is told to load it
  through its own API; ``weights_version`` changes only when the server confirms:

  - SGLang: ``POST /update_weights_from_disk`` ``{"model_path", "weight_version"}``, confirmed by
    ``{"success": true}`` (SGLang's ``http_server.py``; its "SGLang for RL" guide);
  - vLLM: vLLM's OpenAI server has no load-from-disk route (vllm-project/vllm#12774; its native
    weight-sync API, #31848/#31943, moves tensors over NCCL or IPC from a trainer on the same
    cluster). What it has is ``POST /collective_rpc`` (served with ``VLLM_SERVER_DEV_MODE=1``),
    which calls a method on every worker, and ``--worker-extension-cls``, which adds methods to
    the workers: the pattern of TRL, prime-rl and SkyRL. Start vLLM with
    ``--worker-extension-cls glmkit.rl.rollout.server.VLLMWeightLoader``; the engine posts
    ``{"method": "glmkit_load_weights", "kwargs": {"path": ...}}``, every worker loads the
    safetensors files of the directory into its model (:class:`VLLMWeightLoader`) and reports
    how many tensors it read, and the engine then posts ``/reset_prefix_cache`` so no cached
    prefix computed by the old weights is reused. (vLLM's built-in ``reload_weights`` rereads the
    path the server was started with and may serve cached weights, vllm-project/vllm#32718.)
  - ``generic`` (OpenAI, ``transformers serve``, ...): no weight API; a push raises.

  The directory must be readable by the server at the same path (the same machine or a shared
  file system). Requests in flight keep running during a push; a caller that wants no mixed
  versions aborts or drains them first (:meth:`~.engine.RolloutEngine.update_weights`).

Nothing here imports torch or vLLM at import time; :class:`VLLMWeightLoader` imports
``safetensors`` (and vLLM, when present) inside the worker that runs it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from glmkit.rl.rollout.engine import ROLLOUT_ENGINES, Completion, RolloutEngine, RolloutRequest
from glmkit.scoring import Sample

if TYPE_CHECKING:
    from glmkit.agent.client import ChatCompletion, OpenAIChatClient
    from glmkit.rl.rollout.inprocess import TokenPrompt

logger = logging.getLogger(__name__)

FLAVOURS = ("vllm", "sglang", "generic")
"""Server kinds: what the engine adds to requests, how it aborts and how it pushes weights."""

# Server finish reasons that are a normal end; "length" is the token limit; anything else
# (SGLang's and vLLM's "abort", "content_filter", an unknown value) is an error.
_STOP_REASONS = frozenset({"stop", "tool_calls", "function_call", "eos", None})
# An abort post must not hold up the rollout step when the server is stuck.
_ABORT_TIMEOUT_S = 10.0
_TOKEN_ID_PREFIX = "token_id:"  # vLLM's token strings with return_tokens_as_token_ids


class WeightUpdateError(RuntimeError):
    """The server did not confirm a weight push; the message says which server, path and why."""


@ROLLOUT_ENGINES.register("openai_server")
class OpenAIServerEngine(RolloutEngine):
    """Rollouts on an OpenAI-compatible server (module docstring).

    Args:
        base_url: the server's OpenAI API root, e.g. ``http://localhost:30000/v1``; its native
            routes (``/abort_request``, ``/update_weights_from_disk``, ``/collective_rpc``) are
            taken relative to the same URL without the trailing ``/v1``.
        model: the served model name sent with each request.
        flavour: ``vllm``, ``sglang`` or ``generic`` (module docstring).
        max_concurrency: requests on the wire at once.
        timeout_s: the deadline of one request from the moment it is sent (seconds).
        max_retries: resends of a request after a transient failure (connection error, 429,
            5xx) within its deadline; 0 by default because the scheduler re-issues failed
            requests itself (``max_request_retries``).
        logprobs: ask for per-token log-probabilities (and token ids on vLLM and SGLang).
        system_prompt: a system message opening every request. The trainer's
            :class:`~.inprocess.ChatPrompts` renders none, so with one set the server's prompt
            tokens are not the trainer's (a warning says so); keep it ``None`` for RL.
        request_params: further fields of every request (``chat_template_kwargs``, ...);
            a request's ``SamplingParams.extra`` overrides them.
        api_key: bearer token; defaults to ``$OPENAI_API_KEY``.
        weights_dir: where pushed policies are saved (default: a new temporary directory).
        keep_weights: how many pushed policy directories the engine keeps (older ones that it
            wrote are deleted once the server has confirmed a newer one).
        weight_timeout_s: the deadline of one weight push (saving excluded).
        vllm_load_method: the worker method a vLLM push calls (:class:`VLLMWeightLoader`'s).
        stop_token_ids: the ids that end a turn, sent with token-prompt requests; None: the
            prompt's own (an :class:`~.episodes.EpisodeRunner` gives its episodes this engine's
            :meth:`~.engine.RolloutEngine.stop_token_ids`, the policy processor's turn ends), else
            the server's (its model's EOS).
    """

    def __init__(
        self,
        base_url: str,
        model: str = "default",
        flavour: str = "generic",
        max_concurrency: int = 64,
        timeout_s: float = 600.0,
        max_retries: int = 0,
        logprobs: bool = True,
        system_prompt: str | None = None,
        request_params: dict[str, Any] | None = None,
        api_key: str | None = None,
        weights_dir: str | Path | None = None,
        keep_weights: int = 2,
        weight_timeout_s: float = 600.0,
        vllm_load_method: str = "glmkit_load_weights",
        stop_token_ids: Sequence[int] | None = None,
    ) -> None:
        super().__init__(stop_token_ids)
        from glmkit.agent.client import OpenAIChatClient

        if flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {FLAVOURS}, got {flavour!r}")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"base_url must be an http(s) URL such as http://localhost:8000/v1, got {base_url!r}"
            )
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be an int >= 1, got {max_concurrency!r}")
        for name, value in (("timeout_s", timeout_s), ("weight_timeout_s", weight_timeout_s)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if keep_weights < 1:
            raise ValueError(f"keep_weights must be >= 1, got {keep_weights}")
        self.flavour = flavour
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.logprobs = logprobs
        self.system_prompt = system_prompt
        if system_prompt:
            logger.warning(
                "OpenAIServerEngine(system_prompt=...) opens every request with a system message that the "
                "trainer's ChatPrompts does not render: the server's prompt tokens will differ from the "
                "ones log-probabilities are recomputed on"
            )
        self.weights_dir = Path(weights_dir) if weights_dir is not None else None
        self.keep_weights = keep_weights
        self.weight_timeout_s = weight_timeout_s
        self.vllm_load_method = vllm_load_method
        self._warned_stop_ids = False
        # The client's own timeout is a backstop: the engine's deadline (asyncio) ends a request first.
        self.client: OpenAIChatClient = OpenAIChatClient(
            base_url,
            model=model,
            api_key=api_key,
            timeout=timeout_s + 5.0,
            max_retries=max_retries,
            default_params=request_params,
        )
        root = self.client.base_url
        self.server_url = root[: -len("/v1")] if root.endswith("/v1") else root
        self.rid_prefix = f"glmkit-{uuid.uuid4().hex[:8]}-"  # server request ids unique across runs
        self.abort_failures = 0  # /abort_request posts that failed (logged, never raised)
        self._session: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient, asyncio.Semaphore] | None = None
        self._pushed: list[Path] = []  # policy directories this engine wrote, oldest first

    # -- requests ----------------------------------------------------------------------------------

    def server_rid(self, request: RolloutRequest) -> str:
        """The id the server knows ``request`` by (SGLang's ``rid``, vLLM's ``request_id``)."""
        return f"{self.rid_prefix}{request.request_id}@{request.attempt}"

    def messages(self, sample: Sample) -> list[dict[str, Any]]:
        """The chat messages of ``sample``: the trainer's prompt, images as PNG data URLs.

        One user turn holding the sample's images in order, then its question (a plain string
        when there is no image), as :meth:`~.inprocess.ChatPrompts.messages` lays it out; each
        image is decoded as the trainer's processor decodes it. With ``system_prompt``, a system
        message comes first.
        """
        from glmkit.agent.context import image_ref
        from glmkit.agent.models import to_openai_messages
        from glmkit.data.decode import decode_image

        images = [decode_image(str(p), f"sample {sample.id!r} image {p}") for p in sample.images]
        content: str | list[dict[str, Any]] = sample.question
        if images:
            parts = [image_ref(f"img_{i}", image) for i, image in enumerate(images, start=1)]
            content = [*parts, {"type": "text", "text": sample.question}]
        messages: list[dict[str, Any]] = [{"role": "user", "content": content}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return to_openai_messages(messages)

    def request_params(self, request: RolloutRequest) -> dict[str, Any]:
        """The request fields besides ``model`` and ``messages`` (exposed so tests see what is sent)."""
        sp = request.params
        params: dict[str, Any] = {
            "max_tokens": sp.max_new_tokens,
            "temperature": sp.temperature,
            "top_p": sp.top_p,
        }
        if sp.stop:
            params["stop"] = list(sp.stop)
        if self.logprobs:
            params["logprobs"] = True
            if self.flavour in ("vllm", "sglang"):
                params["return_token_ids"] = True
        if self.flavour == "sglang":
            params["rid"] = self.server_rid(request)
        elif self.flavour == "vllm":
            params["request_id"] = self.server_rid(request)
        params.update(sp.extra)
        return params

    def _http(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        """The shared HTTP client and concurrency slots of the running event loop (one per loop)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session[0] is not loop:
            limits = httpx.Limits(
                max_connections=self.max_concurrency + 4, max_keepalive_connections=self.max_concurrency
            )
            http = httpx.AsyncClient(timeout=self.client.timeout, limits=limits)
            self._session = (loop, http, asyncio.Semaphore(self.max_concurrency))
        return self._session[1], self._session[2]

    async def generate(self, request: RolloutRequest, prompt: TokenPrompt | None = None) -> Completion:
        """Send ``request`` and wait for its completion (module docstring); ``prompt`` (an
        episode's later turn) is sent as token ids and images instead of the sample's messages."""
        if prompt is not None:
            return await self._generate_tokens(request, prompt)
        messages = await asyncio.to_thread(self.messages, request.sample)  # image reads stay off the loop
        params = self.request_params(request)
        reply, latency = await self._send(
            request, self.client.url, lambda http: self.client.achat(messages, http=http, **params)
        )
        return self.completion(request, reply, latency)

    async def _send(self, request: RolloutRequest, url: str, call: Any) -> tuple[Any, float]:
        """``call(http)``'s answer and its latency, within the concurrency limit and ``timeout_s``."""
        http, slots = self._http()
        async with slots:
            loop = asyncio.get_running_loop()
            sent = loop.time()
            try:
                answer = await asyncio.wait_for(call(http), self.timeout_s)
            except asyncio.TimeoutError:  # the builtin TimeoutError only from Python 3.11
                raise TimeoutError(
                    f"request {request.request_id} got no completion from {url} within timeout_s={self.timeout_s}"
                ) from None
            return answer, loop.time() - sent

    def completion(
        self, request: RolloutRequest, reply: ChatCompletion, latency_s: float = 0.0
    ) -> Completion:
        """The :class:`Completion` of a server reply: text, finish reason, token counts, log-probs."""
        from glmkit.agent.client import usage_count

        choice = _first_choice(reply.raw)
        logprobs, tokens = _parse_logprobs(choice.get("logprobs"))
        token_ids = _token_ids(choice, tokens)
        count = usage_count(reply.usage.get("completion_tokens"))
        if not count:
            count = len(token_ids or logprobs or [])
        metadata = {
            "latency_s": latency_s,
            "server_finish_reason": reply.finish_reason,
            "model": reply.raw.get("model"),
            "rid": self.server_rid(request),
        }
        # vLLM puts the prompt's ids beside the choices (return_token_ids); some servers in the choice
        prompt_ids = _int_list(reply.raw.get("prompt_token_ids")) or _int_list(choice.get("prompt_token_ids"))
        if prompt_ids is not None:
            metadata["prompt_token_ids"] = prompt_ids
        stop_id = _stop_token_id(choice)
        if stop_id is not None:
            metadata["stop_token_id"] = stop_id
        server_reason = reply.finish_reason
        if server_reason == "length" or server_reason in _STOP_REASONS:
            return Completion(
                request,
                reply.content,
                finish_reason="length" if server_reason == "length" else "stop",
                response_tokens=count,
                weights_version=self.weights_version,
                token_ids=token_ids,
                logprobs=logprobs,
                metadata=metadata,
            )
        metadata["partial_response"] = reply.content
        return Completion(
            request,
            "",
            finish_reason="error",
            response_tokens=count,
            weights_version=self.weights_version,
            error=f"server ended request {request.request_id} with finish_reason={server_reason!r}",
            metadata=metadata,
        )

    # -- token in, token out ---------------------------------------------------------------------------

    def token_prompt_refusal(self) -> str | None:
        """Why this engine cannot continue from a :class:`~.inprocess.TokenPrompt` at all, or None.

        ``EpisodeRunner`` refuses an engine that gives a reason. vLLM continues text-only
        prompts; one with images fails per request (:meth:`token_request`).
        """
        if self.flavour == "generic":
            return (
                "flavour 'generic' speaks only the OpenAI chat API, which takes messages, not token ids; "
                "use flavour='sglang' (its native /generate takes input_ids and image_data) or "
                "flavour='vllm' (text-only episodes, through /v1/completions)"
            )
        return None

    def token_request(self, request: RolloutRequest, prompt: TokenPrompt) -> tuple[str, dict[str, Any]]:
        """The URL and JSON body of a token-prompt request (exposed so tests see what is sent).

        Raises:
            ValueError: the flavour cannot send this prompt (``generic``; ``vllm`` with images).
        """
        refusal = self.token_prompt_refusal()
        if refusal is not None:
            raise ValueError(refusal)
        ids = [int(i) for i in prompt.token_ids]
        images = list(prompt.images)
        sp = request.params
        if self.flavour == "vllm":
            if images:
                raise ValueError(
                    f"flavour 'vllm' cannot continue request {request.request_id} from token ids with "
                    f"{len(images)} image(s): vLLM's OpenAI /v1/completions takes a prompt of token ids but "
                    "no images with it (images reach vLLM only in chat messages, which it tokenizes "
                    "itself); use flavour='sglang', whose native /generate takes input_ids with image_data"
                )
            body: dict[str, Any] = {
                "model": self.client.model,
                "prompt": ids,
                "max_tokens": sp.max_new_tokens,
                "temperature": sp.temperature,
                "top_p": sp.top_p,
                "return_token_ids": True,
                "return_tokens_as_token_ids": True,
                "skip_special_tokens": False,
                "spaces_between_special_tokens": False,
                "request_id": self.server_rid(request),
            }
            if self.logprobs:
                body["logprobs"] = 1  # the completions API counts top log-probs; the sampled one comes too
            body.update(self._turn_stops(request, prompt))
            body.update(sp.extra)
            return f"{self.client.base_url}/completions", body
        sampling: dict[str, Any] = {
            "max_new_tokens": sp.max_new_tokens,
            "temperature": sp.temperature,
            "top_p": sp.top_p,
            "skip_special_tokens": False,  # the text the in-process engine decodes: special tokens kept
            "spaces_between_special_tokens": False,
            **self._turn_stops(request, prompt),
        }
        sampling.update(sp.extra)
        body = {
            "input_ids": ids,
            "sampling_params": sampling,
            "return_logprob": True,  # the generated ids come with their log-probabilities
            "rid": self.server_rid(request),
        }
        if images:
            body["image_data"] = [_image_data_url(image) for image in images]
        return f"{self.server_url}/generate", body

    def _turn_stops(self, request: RolloutRequest, prompt: TokenPrompt) -> dict[str, list]:
        """A turn's ``stop`` strings and ``stop_token_ids`` (the engine's, else the prompt's), the
        keys both servers read, present only when set."""
        ids = self.stop_token_ids(default=prompt.stop_token_ids)
        if not ids and not self._warned_stop_ids:
            self._warned_stop_ids = True
            logger.warning(
                "OpenAIServerEngine: a token prompt without stop_token_ids and none given to the engine: "
                "turns stop at the server's EOS only, not at the policy's turn ends (a tool call's "
                "<|observation|>)"
            )
        stops: dict[str, list] = {"stop": list(request.params.stop)} if request.params.stop else {}
        return {**stops, "stop_token_ids": ids} if ids else stops

    async def _generate_tokens(self, request: RolloutRequest, prompt: TokenPrompt) -> Completion:
        url, body = await asyncio.to_thread(self.token_request, request, prompt)  # PNG encoding off the loop
        headers = self.client.headers()
        response, latency = await self._send(
            request, url, lambda http: http.post(url, json=body, headers=headers)
        )
        answer = _json(response)
        if response.status_code != 200 or not isinstance(answer, dict):
            raise RuntimeError(
                f"{url} answered request {request.request_id} with HTTP {response.status_code}: "
                f"{response.text[:500]}"
            )
        if self.flavour == "vllm":
            return self._vllm_token_completion(request, answer, latency)
        return self._sglang_token_completion(request, answer, latency)

    def _sglang_token_completion(
        self, request: RolloutRequest, answer: dict[str, Any], latency: float
    ) -> Completion:
        meta = answer.get("meta_info") if isinstance(answer.get("meta_info"), dict) else {}
        ids, logprobs = _sglang_token_logprobs(meta.get("output_token_logprobs"))
        if ids is None:
            ids, logprobs = _int_list(answer.get("output_ids")), None
        reason = meta.get("finish_reason")
        kind = reason.get("type") if isinstance(reason, dict) else reason
        metadata: dict[str, Any] = (
            {"weight_version": meta["weight_version"]} if "weight_version" in meta else {}
        )
        return self._token_completion(
            request, str(answer.get("text") or ""), ids, logprobs, kind, latency, metadata
        )

    def _vllm_token_completion(
        self, request: RolloutRequest, answer: dict[str, Any], latency: float
    ) -> Completion:
        choice = _first_choice(answer)
        logprobs, tokens = _parse_completion_logprobs(choice.get("logprobs"))
        ids = _token_ids(choice, tokens)
        metadata = {"model": answer.get("model")}
        return self._token_completion(
            request,
            str(choice.get("text") or ""),
            ids,
            logprobs,
            choice.get("finish_reason"),
            latency,
            metadata,
        )

    def _token_completion(
        self,
        request: RolloutRequest,
        text: str,
        ids: list[int] | None,
        logprobs: list[float] | None,
        server_reason: Any,
        latency_s: float,
        metadata: dict[str, Any],
    ) -> Completion:
        """A token-prompt reply as a :class:`Completion` (finish reasons as for chat replies)."""
        metadata = {
            **metadata,
            "latency_s": latency_s,
            "server_finish_reason": server_reason,
            "rid": self.server_rid(request),
        }
        if logprobs is not None and (ids is None or len(logprobs) != len(ids)):
            logprobs = None
        ok = server_reason == "length" or server_reason in _STOP_REASONS
        if ok and ids is None:
            server_reason, ok = "no token ids in the reply", False
        if ok:
            return Completion(
                request,
                text,
                finish_reason="length" if server_reason == "length" else "stop",
                response_tokens=len(ids or []),
                weights_version=self.weights_version,
                token_ids=ids,
                logprobs=logprobs,
                metadata=metadata,
            )
        metadata["partial_response"] = text
        return Completion(
            request,
            "",
            finish_reason="error",
            response_tokens=len(ids or []),
            weights_version=self.weights_version,
            error=f"server ended request {request.request_id} with finish_reason={server_reason!r}",
            metadata=metadata,
        )

    # -- aborts --------------------------------------------------------------------------------------

    async def abort_requests(self, requests: list[RolloutRequest]) -> None:
        """SGLang: post ``/abort_request`` for each request (the others abort on disconnect).

        A failed post is logged and counted in ``abort_failures``, never raised: the request's
        connection is already closed, and an abort must not fail the rollout step.
        """
        if self.flavour != "sglang" or not requests:
            return
        http, _ = self._http()
        url = f"{self.server_url}/abort_request"

        async def one(request: RolloutRequest) -> None:
            rid = self.server_rid(request)
            try:
                response = await http.post(
                    url, json={"rid": rid}, headers=self.client.headers(), timeout=_ABORT_TIMEOUT_S
                )
                if response.status_code != 200:
                    raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
            except (httpx.HTTPError, RuntimeError) as exc:
                self.abort_failures += 1
                logger.warning("could not abort %s at %s: %s", rid, url, exc)

        await asyncio.gather(*(one(r) for r in requests))

    async def close(self) -> None:
        """Abort everything outstanding and close the HTTP client."""
        await super().close()
        if self._session is not None and self._session[0] is asyncio.get_running_loop():
            await self._session[1].aclose()
        self._session = None

    # -- weights -------------------------------------------------------------------------------------

    async def update_weights(self, version: int, weights: Any = None) -> None:
        """Push ``weights`` to the server, then set ``weights_version`` (only once it confirmed).

        Args:
            version: the new policy version (never lower than the current one).
            weights: a model with ``save_pretrained`` (saved to ``weights_dir/policy-v<version>``
                first), a directory holding such a checkpoint (as the server sees it), or None to
                change the version alone.

        Raises:
            WeightUpdateError: the server refused the weights or did not answer; the version
                stays where it was.
        """
        if not isinstance(version, int) or version < self.weights_version:
            raise ValueError(
                f"weights version must be an int >= the current {self.weights_version}, got {version!r}"
            )
        if weights is not None:
            await self._push(weights, version)
        await super().update_weights(version)

    async def load_weights(self, weights: Any) -> None:
        """Hook: push ``weights`` (as :meth:`update_weights` does) without a version."""
        await self._push(weights, None)

    def save_policy(self, model: Any, version: int | None) -> Path:
        """Write ``model`` with ``save_pretrained`` to a new directory under ``weights_dir``."""
        if self.weights_dir is None:
            self.weights_dir = Path(tempfile.mkdtemp(prefix="glmkit-policy-"))
        name = f"policy-v{version}" if version is not None else f"policy-{uuid.uuid4().hex[:8]}"
        path = self.weights_dir / name
        if path.exists():  # a failed push of this version left it behind
            shutil.rmtree(path)
        model.save_pretrained(str(path))
        return path

    async def _push(self, weights: Any, version: int | None) -> None:
        if self.flavour == "generic":
            raise WeightUpdateError(
                f"the server at {self.server_url} is 'generic': it has no weight-update API; "
                "use flavour='vllm' or flavour='sglang', or restart the server on the new weights"
            )
        if isinstance(weights, str | os.PathLike):
            path, written = Path(weights), False
        elif callable(getattr(weights, "save_pretrained", None)):
            path, written = await asyncio.to_thread(self.save_policy, weights, version), True
        else:
            raise TypeError(
                f"weights must be a checkpoint directory or a model with save_pretrained, got {type(weights).__name__}"
            )
        http, _ = self._http()
        try:
            if self.flavour == "sglang":
                await self._push_sglang(http, path, version)
            else:
                await self._push_vllm(http, path)
        except httpx.HTTPError as exc:
            raise WeightUpdateError(
                f"weight push of {path} to {self.server_url} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if written:
            self._pushed.append(path)
            while len(self._pushed) > self.keep_weights:
                shutil.rmtree(self._pushed.pop(0), ignore_errors=True)

    async def _post(self, http: httpx.AsyncClient, route: str, body: dict[str, Any]) -> httpx.Response:
        return await http.post(
            f"{self.server_url}{route}",
            json=body,
            headers=self.client.headers(),
            timeout=self.weight_timeout_s,
        )

    async def _push_sglang(self, http: httpx.AsyncClient, path: Path, version: int | None) -> None:
        body: dict[str, Any] = {"model_path": str(path)}
        if version is not None:
            body["weight_version"] = str(version)
        response = await self._post(http, "/update_weights_from_disk", body)
        answer = _json(response)
        if response.status_code != 200 or not isinstance(answer, dict) or answer.get("success") is not True:
            message = answer.get("message") if isinstance(answer, dict) else None
            raise WeightUpdateError(
                f"SGLang at {self.server_url} did not load the weights at {path}: "
                f"HTTP {response.status_code}: {message or response.text[:500]}"
            )

    async def _push_vllm(self, http: httpx.AsyncClient, path: Path) -> None:
        body = {"method": self.vllm_load_method, "kwargs": {"path": str(path)}}
        response = await self._post(http, "/collective_rpc", body)
        if response.status_code == 404:
            raise WeightUpdateError(
                f"vLLM at {self.server_url} has no /collective_rpc: start it with VLLM_SERVER_DEV_MODE=1 "
                "and --worker-extension-cls glmkit.rl.rollout.server.VLLMWeightLoader"
            )
        answer = _json(response)
        results = answer.get("results") if isinstance(answer, dict) else None
        if response.status_code != 200 or not isinstance(results, list) or not results:
            raise WeightUpdateError(
                f"vLLM at {self.server_url} did not load the weights at {path} "
                f"({self.vllm_load_method}): HTTP {response.status_code}: {response.text[:500]}"
            )
        bad = [r for r in results if not (isinstance(r, int) and not isinstance(r, bool) and r > 0)]
        if bad:
            raise WeightUpdateError(
                f"vLLM at {self.server_url}: {len(bad)} of {len(results)} workers did not load the weights "
                f"at {path} ({self.vllm_load_method} returned {bad[:4]}; expected a tensor count > 0)"
            )
        response = await self._post(http, "/reset_prefix_cache", {})
        if response.status_code != 200:
            raise WeightUpdateError(
                f"vLLM at {self.server_url} loaded {path} but did not reset its prefix cache: "
                f"HTTP {response.status_code}: {response.text[:500]}"
            )


class VLLMWeightLoader:
    """A vLLM worker extension that loads a ``save_pretrained`` directory into the served model.

    Start vLLM with ``--worker-extension-cls glmkit.rl.rollout.server.VLLMWeightLoader`` (and
    ``VLLM_SERVER_DEV_MODE=1`` for ``/collective_rpc``); vLLM mixes this class into each worker,
    which then has ``self.model_runner``. :class:`OpenAIServerEngine` calls
    :meth:`glmkit_load_weights` on every worker through ``/collective_rpc``.
    """

    model_runner: Any  # provided by the vLLM worker this class is mixed into

    def glmkit_load_weights(self, path: str) -> int:
        """Load every tensor of the ``*.safetensors`` files in ``path``; returns how many were read.

        The tensors go through the model's own ``load_weights`` (which maps Hugging Face names to
        vLLM's fused and sharded parameters), then vLLM's post-load processing where it exists.
        """
        from safetensors import safe_open

        files = sorted(Path(path).glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no *.safetensors files in {path}; save the policy with save_pretrained")
        count = 0

        def tensors() -> Any:
            nonlocal count
            for file in files:
                with safe_open(str(file), framework="pt", device="cpu") as handle:
                    for name in handle.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
                        count += 1
                        yield name, handle.get_tensor(name)

        model = self.model_runner.model
        model.load_weights(tensors())
        try:
            from vllm.model_executor.model_loader.utils import process_weights_after_loading
        except ImportError:  # outside vLLM (tests), or a vLLM without it: nothing to post-process
            return count
        device = next(model.parameters()).device
        process_weights_after_loading(model, self.model_runner.model_config, device)
        return count


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _first_choice(raw: dict[str, Any]) -> dict[str, Any]:
    choices = raw.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


def _token_ids(choice: dict[str, Any], tokens: list[str]) -> list[int] | None:
    """A choice's generated ids: its ``token_ids``, else vLLM's ``token_id:N`` token strings."""
    ids = _int_list(choice.get("token_ids"))
    if ids is None and tokens and all(t.startswith(_TOKEN_ID_PREFIX) for t in tokens):
        ids = [int(t[len(_TOKEN_ID_PREFIX) :]) for t in tokens]
    return ids


def _stop_token_id(choice: dict[str, Any]) -> int | None:
    """The token id that ended a reply, where the server names it: vLLM's ``stop_reason`` and
    SGLang's ``matched_stop`` are an id when a stop token ended the reply (a string for a stop string,
    None for vLLM's EOS or another end)."""
    for key in ("stop_reason", "matched_stop"):
        value = choice.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _int_list(value: Any) -> list[int] | None:
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return list(value)
    return None


def _parse_logprobs(value: Any) -> tuple[list[float] | None, list[str]]:
    """(log-probs, token strings) of a choice's OpenAI ``logprobs`` object; (None, []) when absent or malformed."""
    content = value.get("content") if isinstance(value, dict) else None
    if not isinstance(content, list) or not content:
        return None, []
    logprobs: list[float] = []
    tokens: list[str] = []
    for item in content:
        if not isinstance(item, dict) or isinstance(item.get("logprob"), bool):
            return None, []
        try:
            logprobs.append(float(item["logprob"]))
        except (KeyError, TypeError, ValueError):
            return None, []
        tokens.append(str(item.get("token", "")))
    return logprobs, tokens


def _image_data_url(image: Any) -> str:
    """An image of a token prompt as a lossless PNG ``data:`` URL (SGLang's ``load_image`` reads it)."""
    from glmkit.agent.client import image_to_data_url
    from glmkit.data.decode import decode_image

    if isinstance(image, str | os.PathLike):
        image = decode_image(str(image), f"token-prompt image {image}")
    if image.mode not in ("1", "L", "LA", "I", "P", "RGB", "RGBA"):  # modes PNG cannot hold
        image = image.convert("RGB")
    return image_to_data_url(image)


def _sglang_token_logprobs(value: Any) -> tuple[list[int] | None, list[float] | None]:
    """(ids, log-probs) of SGLang's ``output_token_logprobs`` (``[logprob, token_id, text]`` items)."""
    if not isinstance(value, list) or not value:
        return None, None
    ids: list[int] = []
    logprobs: list[float] = []
    for item in value:
        if not isinstance(item, list | tuple) or len(item) < 2:
            return None, None
        logprob, token = item[0], item[1]
        if not isinstance(token, int) or isinstance(token, bool):
            return None, None
        if not isinstance(logprob, int | float) or isinstance(logprob, bool):
            return None, None
        ids.append(token)
        logprobs.append(float(logprob))
    return ids, logprobs


def _parse_completion_logprobs(value: Any) -> tuple[list[float] | None, list[str]]:
    """(log-probs, token strings) of a completions choice's ``logprobs`` (``token_logprobs``, ``tokens``)."""
    if not isinstance(value, dict):
        return None, []
    values, tokens = value.get("token_logprobs"), value.get("tokens")
    if not isinstance(values, list) or not values:
        return None, []
    if any(not isinstance(v, int | float) or isinstance(v, bool) for v in values):
        return None, []
    strings = [str(t) for t in tokens] if isinstance(tokens, list) and len(tokens) == len(values) else []
    return [float(v) for v in values], strings
