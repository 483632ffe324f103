"""Chat-model adapters for the agent loop (report sections 3.2 and 3.5).

The protocol
------------
A :class:`ChatModel` is anything with

- ``tool_format``: the :class:`~glmkit.agent.formats.ToolCallFormat` its replies use, and
- ``chat(messages, tools) -> ChatCompletion``: one assistant turn for a history.

``messages`` is glmkit's canonical history: OpenAI-shaped chat messages (``system``, ``user``,
``assistant`` with optional ``tool_calls``, ``tool`` with ``tool_call_id``) whose image parts are
canonical refs ``{"type": "image", "image_id": ..., "image": <PIL image>}``
(:func:`glmkit.agent.context.image_ref`); OpenAI ``image_url`` parts are accepted too. ``tools``
is a list of OpenAI function schemas (``Tool.schema()``). The adapter converts both to what its
backend needs (data URLs, text-format tool prompts, placeholder tokens, pixel values) and returns
a :class:`~glmkit.agent.client.ChatCompletion`: ``message`` is the assistant message as the model
wrote it (calls in ``tool_calls`` for native formats, in the text for text formats),
``finish_reason`` is ``"stop"``, ``"tool_calls"`` or ``"length"``, and ``usage`` has
``prompt_tokens``, ``completion_tokens`` and ``total_tokens``. The agent loop parses the calls
with ``tool_format`` and never looks inside the backend.

Adapters here: :class:`OpenAIChatModel` (any OpenAI-compatible endpoint; native ``tools`` or a
text format) and :class:`TransformersChatModel` (a local transformers causal LM with its chat
template; images become placeholder text). The glmkit VLM plugs in as another adapter that keeps
the image refs as pixels.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from glmkit.agent.client import ChatClientError, ChatCompletion, OpenAIChatClient, image_part
from glmkit.agent.context import is_image_ref
from glmkit.agent.formats import ToolCallFormat, get_tool_call_format, openai_tool_schemas
from glmkit.agent.formats.text import ObservationRole
from glmkit.registry import declare

_WIRE_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name")
#: What an image becomes for a server that does not take images.
IMAGE_PLACEHOLDER_TEXT = "[image {image_id}: not shown, this model reads text only]"


class TextOnlyServerWarning(UserWarning):
    """The server refused images (a text-only model); images are sent as text placeholders."""


@runtime_checkable
class ChatModel(Protocol):
    """One assistant turn for a canonical history; see the module docstring."""

    tool_format: ToolCallFormat

    def chat(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> ChatCompletion:
        """The assistant's reply to ``messages`` with ``tools`` available."""
        ...


# Declared after ChatModel: a member must define the protocol's ``chat`` method.
CHAT_MODELS = declare("chat_models", "chat-model adapters for the agent loop", base=ChatModel)


def to_openai_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Canonical messages -> Chat Completions messages: image refs become ``image_url`` data URLs,
    keys the API does not know are dropped."""
    out = []
    for msg in messages:
        wire = {k: msg[k] for k in _WIRE_KEYS if k in msg}
        content = msg.get("content")
        if isinstance(content, list):
            wire["content"] = [image_part(p["image"]) if is_image_ref(p) else p for p in content]
        out.append(wire)
    return out


def to_text_messages(messages: Sequence[Mapping[str, Any]], image_placeholder: str) -> list[dict[str, Any]]:
    """Canonical messages -> messages with string content: every image becomes ``image_placeholder``
    (``{image_id}`` is filled in), for text-only chat templates. ``tool_calls`` arguments become
    objects, as chat templates expect them (and as vLLM hands them to the template)."""
    out = []
    for msg in messages:
        wire = {k: msg[k] for k in _WIRE_KEYS if k in msg}
        if wire.get("tool_calls"):
            wire["tool_calls"] = [_template_tool_call(c) for c in wire["tool_calls"]]
        content = msg.get("content")
        if isinstance(content, list):
            pieces = []
            for part in content:
                if is_image_ref(part):
                    pieces.append(image_placeholder.format(image_id=part["image_id"]))
                elif isinstance(part, Mapping) and part.get("type") == "image_url":
                    pieces.append(image_placeholder.format(image_id="?"))
                elif isinstance(part, Mapping):
                    pieces.append(str(part.get("text", "")))
            wire["content"] = "".join(pieces)
        elif content is None:
            wire["content"] = ""
        out.append(wire)
    return out


def _template_tool_call(call: Any) -> Any:
    """A ``tool_calls`` item with its JSON-string arguments decoded (left as is when they are not JSON)."""
    if not isinstance(call, Mapping) or not isinstance(call.get("function"), Mapping):
        return call
    arguments = call["function"].get("arguments")
    if isinstance(arguments, str):
        try:
            decoded = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return call
        return {**call, "function": {**call["function"], "arguments": decoded}}
    return call


def _has_images(messages: Sequence[Mapping[str, Any]]) -> bool:
    return any(
        is_image_ref(p) or (isinstance(p, Mapping) and p.get("type") == "image_url")
        for m in messages
        if isinstance(m.get("content"), list)
        for p in m["content"]
    )


# What vLLM, SGLang and transformers serve say when a text-only model is sent an image.
_IMAGE_REFUSAL = re.compile(
    r"not a multimodal model|does not support (?:image|vision|multimodal)|at most 0 image|"
    r"image input is not supported|images? (?:are|is) not supported|unsupported content type:? '?image",
    re.IGNORECASE,
)


@CHAT_MODELS.register("openai")
class OpenAIChatModel:
    """An OpenAI-compatible endpoint (vLLM, SGLang, OpenAI, ...) as a :class:`ChatModel`.

    Args:
        client: the endpoint client; built from ``base_url``/``model``/``api_key`` when omitted.
        base_url: e.g. ``http://localhost:8000/v1`` (used when ``client`` is ``None``).
        model: model name sent with each request.
        api_key: bearer token (default ``$OPENAI_API_KEY``).
        tool_format: ``"openai"`` sends the native ``tools`` parameter and reads ``tool_calls``; a text
            format (``"hermes"``, ``"glm45"``) writes the tools into the system prompt and parses the
            reply text, for servers started without a tool parser.
        params: extra request fields (``temperature``, ``max_tokens``, ``stop``, ...).
        observation_role: text formats: ``"tool"`` (default) sends results as ``role: tool`` messages,
            which the server's chat template renders as the model was trained (GLM's
            ``<|observation|>``, Qwen's ``<tool_response>``); ``"user"`` sends ``<tool_response>``
            user turns, for servers whose template rejects ``role: tool``.
        template_tools: text formats: send the tools in the request's ``tools`` so the server's
            chat template announces them (needs a server that accepts ``tools`` without a tool
            parser, e.g. vLLM with ``params={"tool_choice": "none"}``); by default glmkit writes the
            template's tools section into the messages itself, byte for byte the same for GLM-4.5/4.6
            and Qwen2.5.
    """

    def __init__(
        self,
        client: OpenAIChatClient | None = None,
        *,
        base_url: str | None = None,
        model: str = "default",
        api_key: str | None = None,
        tool_format: str | ToolCallFormat = "openai",
        params: dict[str, Any] | None = None,
        observation_role: ObservationRole = "tool",
        template_tools: bool = False,
    ) -> None:
        if client is None:
            if base_url is None:
                raise ValueError(
                    "OpenAIChatModel needs a client or a base_url (e.g. http://localhost:8000/v1)"
                )
            client = OpenAIChatClient(base_url, model=model, api_key=api_key)
        if observation_role not in ("tool", "user"):
            raise ValueError(f"observation_role must be 'tool' or 'user', got {observation_role!r}")
        self.client = client
        self.tool_format = get_tool_call_format(tool_format)
        self.params = dict(params or {})
        self.observation_role = observation_role
        self.template_tools = template_tools
        #: Set once the server said it does not take images; images are then sent as text placeholders.
        self.text_only = False

    def wire_messages(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        """The request's ``messages`` and ``tools`` for a canonical history (what :meth:`chat` sends)."""
        schemas = openai_tool_schemas(tools)
        in_request = self.tool_format.native or self.template_tools
        prepared = self.tool_format.prepare_messages(
            messages, None if in_request else schemas, observation_role=self.observation_role
        )
        if self.text_only:
            wire = to_text_messages(prepared, IMAGE_PLACEHOLDER_TEXT)
            for msg, original in zip(wire, prepared, strict=True):  # the wire keeps string arguments
                if "tool_calls" in original:
                    msg["tool_calls"] = original["tool_calls"]
        else:
            wire = to_openai_messages(prepared)
        return wire, (schemas if in_request and schemas else None)

    def chat(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> ChatCompletion:
        """Send one request; the reply's calls are left for ``tool_format`` to parse.

        A server that refuses images because its model is text-only (its error says so) is warned
        about once, and this request and every later one send each image as a text placeholder.
        """
        wire, native_tools = self.wire_messages(messages, tools)
        try:
            return self.client.chat(wire, native_tools, **self.params)
        except ChatClientError as exc:
            if self.text_only or not _has_images(messages) or not _IMAGE_REFUSAL.search(str(exc)):
                raise
            warnings.warn(
                f"{self.client.url} does not take images ({exc}); sending each image as the text "
                f"{IMAGE_PLACEHOLDER_TEXT!r} from now on: the model will not see the pixels",
                TextOnlyServerWarning,
                stacklevel=2,
            )
            self.text_only = True
            wire, native_tools = self.wire_messages(messages, tools)
            return self.client.chat(wire, native_tools, **self.params)


@CHAT_MODELS.register("transformers")
class TransformersChatModel:
    """A local transformers causal LM as a :class:`ChatModel`, tools in a text format.

    The prompt is the tokenizer's chat template applied to the history, given what the template
    renders itself (:meth:`template_support`): the tools, ``role: tool`` results and native
    ``tool_calls``; ``tool_format`` writes only what it cannot. The LM is text-only, so each image
    becomes ``image_placeholder``.

    Args:
        model: a ``transformers`` causal LM (anything with ``generate``).
        tokenizer: its tokenizer, with a ``chat_template``.
        tool_format: a text format name or instance (default ``"hermes"``).
        max_new_tokens: generation length limit (a reply that reaches it has ``finish_reason="length"``).
        image_placeholder: text standing for an image; ``{image_id}`` is filled in.
        generation_kwargs: extra ``generate`` arguments (``do_sample``, ``temperature``, ...).
        template_tools: pass the tools to the chat template (``tools=``) instead of writing the
            format's tools section; ``None`` (default) does so when the template renders them.
        observation_role: ``"tool"`` keeps ``role: tool`` messages for the template to render;
            ``"user"`` sends results as ``<tool_response>`` user turns; ``None`` (default) picks
            ``"tool"`` when the template renders them.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        tool_format: str | ToolCallFormat = "hermes",
        max_new_tokens: int = 512,
        image_placeholder: str = "<|image|>",
        generation_kwargs: dict[str, Any] | None = None,
        template_tools: bool | None = None,
        observation_role: ObservationRole | None = None,
    ) -> None:
        if observation_role not in ("user", "tool", None):
            raise ValueError(f"observation_role must be 'user', 'tool' or None, got {observation_role!r}")
        self.tool_format = get_tool_call_format(tool_format)
        if self.tool_format.native:
            raise ValueError(
                f"TransformersChatModel needs a text tool-call format (hermes, glm45), got {self.tool_format.name!r}"
            )
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError(
                "the tokenizer has no chat_template; set tokenizer.chat_template to a Jinja template"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.image_placeholder = image_placeholder
        self.generation_kwargs = dict(generation_kwargs or {})
        self.template_tools = template_tools
        self.observation_role = observation_role
        self._support: TemplateSupport | None = None

    def template_support(self) -> TemplateSupport:
        """What the tokenizer's chat template renders itself (probed once, see :func:`probe_template`)."""
        if self._support is None:
            self._support = probe_template(self.tokenizer)
        return self._support

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, *, device: str | None = None, dtype: str | None = None, **kwargs: Any
    ) -> TransformersChatModel:
        """Load a causal LM and its tokenizer from a hub id or a local directory."""
        import torch
        from transformers import AutoTokenizer

        from glmkit.models.mtp import load_language_model  # an MTP export's extra layers are expected

        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        load_kwargs = {"dtype": getattr(torch, dtype)} if dtype is not None else {}
        model = load_language_model(name_or_path, **load_kwargs)
        if device is not None:
            model = model.to(device)
        model.eval()
        return cls(model, tokenizer, **kwargs)

    def render_prompt(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
        """The exact prompt text ``chat`` generates from.

        Whatever the chat template renders itself it is given: the tools (``tools=``), ``role: tool``
        results and native ``tool_calls``, so the model sees them as it was trained; what it cannot
        render, the tool format writes (see :meth:`TextToolCallFormat.prepare_messages`).
        """
        schemas = openai_tool_schemas(tools)
        support = self.template_support()
        template_tools = support.tools if self.template_tools is None else self.template_tools
        role = self.observation_role or ("tool" if support.tool_role else "user")
        prepared = self.tool_format.prepare_messages(
            messages,
            None if template_tools else schemas,
            observation_role=role,
            native_calls="keep" if support.tool_calls else "text",
        )
        text_messages = to_text_messages(prepared, self.image_placeholder)
        extra = {"tools": schemas} if (template_tools and schemas) else {}
        return self.tokenizer.apply_chat_template(
            text_messages, tokenize=False, add_generation_prompt=True, **extra
        )

    def stop_token_ids(self) -> set[int]:
        """Ids that end a reply: ``tokenizer.eos_token_id`` and ``model.generation_config.eos_token_id``
        (an int or a list; GLM-4.5 lists ``<|endoftext|>``, ``<|user|>`` and ``<|observation|>``)."""
        config = getattr(self.model, "generation_config", None)
        return _token_ids(self.tokenizer.eos_token_id) | _token_ids(getattr(config, "eos_token_id", None))

    def chat(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> ChatCompletion:
        """Generate one reply; it stops at a stop token (see :meth:`stop_token_ids`) or after ``max_new_tokens``."""
        import torch

        prompt = self.render_prompt(messages, tools)
        encoded = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        device = getattr(self.model, "device", None)
        if device is not None:
            encoded = {k: v.to(device) for k, v in encoded.items()}
        stop_ids = self.stop_token_ids()
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        kwargs = dict(self.generation_kwargs)
        if stop_ids and "eos_token_id" not in kwargs:
            kwargs["eos_token_id"] = sorted(stop_ids)
        stop_ids |= _token_ids(kwargs.get("eos_token_id"))
        with torch.no_grad():
            output = self.model.generate(
                **encoded, max_new_tokens=self.max_new_tokens, pad_token_id=pad, **kwargs
            )
        prompt_len = encoded["input_ids"].shape[1]
        new_ids = output[0, prompt_len:].tolist()
        # GLM-4.5 ends a tool-call turn on <|observation|> and an answer on <|user|>: both are listed
        # in generation_config.eos_token_id, not in tokenizer.eos_token_id.
        stop_at = next((i for i, t in enumerate(new_ids) if t in stop_ids), None)
        if stop_at is not None:
            new_ids = new_ids[: stop_at + 1]
            text_ids = new_ids[:-1]  # the stop token is not content
            finish = "stop"
        else:
            text_ids = new_ids
            # fewer tokens than allowed: another stopping criterion (a stop string, ...) ended it
            finish = "stop" if len(new_ids) < self.max_new_tokens else "length"
        # Special tokens are kept: '<tool_call>' is a special token in some vocabularies.
        text = self.tokenizer.decode(text_ids, skip_special_tokens=False)
        usage = {
            "prompt_tokens": int(prompt_len),
            "completion_tokens": len(new_ids),
            "total_tokens": int(prompt_len) + len(new_ids),
        }
        message = {"role": "assistant", "content": text}
        return ChatCompletion(message=message, finish_reason=finish, usage=usage, raw={"prompt": prompt})


@dataclass(frozen=True)
class TemplateSupport:
    """What a chat template renders itself: the ``tools`` argument, ``role: tool`` messages and
    assistant ``tool_calls``."""

    tools: bool
    tool_role: bool
    tool_calls: bool


_PROBE = "glmkit_probe_7f3a"


def probe_template(tokenizer: Any) -> TemplateSupport:
    """Render three tiny conversations with ``tokenizer.apply_chat_template`` and see which of the
    tools, a ``role: tool`` result and an assistant ``tool_calls`` item reach the prompt (a template
    that raises on one does not support it)."""

    def shows(messages: list[dict[str, Any]], **extra: Any) -> bool:
        try:
            text = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True, **extra
            )
        except Exception:  # templates raise on roles or fields they do not know
            return False
        return isinstance(text, str) and _PROBE in text

    tool = {"type": "function", "function": {"name": _PROBE, "description": "", "parameters": {}}}
    call = {"id": "call_0", "type": "function", "function": {"name": _PROBE, "arguments": {}}}
    user = {"role": "user", "content": "hi"}
    return TemplateSupport(
        tools=shows([user], tools=[tool]),
        tool_role=shows(
            [
                user,
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{**call, "function": {"name": "f", "arguments": {}}}],
                },
                {"role": "tool", "tool_call_id": "call_0", "content": _PROBE},
            ]
        ),
        tool_calls=shows([user, {"role": "assistant", "content": "", "tool_calls": [call]}]),
    )


def _token_ids(value: Any) -> set[int]:
    """A token id, a list of them or ``None`` as a set of ints."""
    if value is None:
        return set()
    if isinstance(value, int):
        return {value}
    return {int(v) for v in value if v is not None}
