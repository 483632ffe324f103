"""Prompts byte for byte equal to the GLM-4.5, GLM-4.6 and Qwen2.5 chat templates rendered by transformers.

Whatever glmkit sends (the tools section it writes itself, ``role: tool`` results, native calls),
the prompt the model's own template makes of it must be the prompt that template makes when it is
given the tools and the canonical history directly: the model then sees tools and results exactly
as it was trained (GLM's ``<|observation|>`` turn, the tools block as the first system block).
"""

from __future__ import annotations

import copy
import json

import pytest
from PIL import Image

from glmkit.agent.client import ChatCompletion
from glmkit.agent.context import image_ref
from glmkit.agent.formats import Glm45ToolCallFormat, HermesToolCallFormat, ToolCall
from glmkit.agent.formats.hermes import QWEN25_DEFAULT_SYSTEM
from glmkit.agent.models import OpenAIChatModel, TransformersChatModel, probe_template, to_text_messages
from tests.agent.chat_templates import TEMPLATES
from tests.agent.toy_tools import toy_tools

FORMATS = {
    "glm45": Glm45ToolCallFormat(),
    "glm46": Glm45ToolCallFormat(),
    "qwen25": HermesToolCallFormat(default_system=QWEN25_DEFAULT_SYSTEM),
}
SCHEMAS = [t.schema() for t in toy_tools()]
PLACEHOLDER = "<|image|>"


def make_tokenizer(template: str):
    """A minimal fast tokenizer carrying ``template`` (only the template matters here)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "<|endoftext|>": 1}
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="[UNK]")), eos_token="<|endoftext|>"
    )
    tok.chat_template = template
    return tok


def history(name: str, system: bool) -> list[dict]:
    """A canonical glmkit history: a question with an image, a text call, two results and the tool
    images, a call the server parsed into ``tool_calls``, its result, then a follow-up question."""
    fmt = FORMATS[name]
    call = fmt.render_call(ToolCall("echo", {"text": "héllo", "times": 2}))
    picture = Image.new("RGB", (8, 8))
    messages = [{"role": "system", "content": "Answer briefly."}] if system else []
    messages += [
        {"role": "user", "content": [{"type": "text", "text": "img_0:"}, image_ref("img_0", picture),
                                     {"type": "text", "text": "What is this?"}]},
        {"role": "assistant", "content": "Let me look.\n" + call},
        {"role": "tool", "tool_call_id": "call_1_0", "content": "héllo héllo"},
        {"role": "tool", "tool_call_id": "call_1_1", "content": "Error: invalid tool call (...)"},
        {"role": "user", "content": [{"type": "text", "text": "img_1 (from make_image (call_1_2)):"},
                                     image_ref("img_1", picture)]},
        {"role": "assistant", "content": "Checking the size.", "tool_calls": [
            {"id": "s1", "type": "function", "function": {"name": "image_size", "arguments": '{"image": "img_1"}'}}
        ]},
        {"role": "tool", "tool_call_id": "s1", "content": "8x8"},
        {"role": "assistant", "content": "An 8x8 image."},
        {"role": "user", "content": "And its colour?"},
    ]  # fmt: skip
    return messages


def reference(tok, messages: list[dict]) -> str:
    """What the template renders when it is given the tools and the canonical history itself."""
    return tok.apply_chat_template(
        to_text_messages(messages, PLACEHOLDER), tools=SCHEMAS, tokenize=False, add_generation_prompt=True
    )


def rendered(tok, messages: list[dict]) -> str:
    """What the template renders of messages that already carry glmkit's tools section."""
    return tok.apply_chat_template(
        to_text_messages(messages, PLACEHOLDER), tokenize=False, add_generation_prompt=True
    )


@pytest.mark.parametrize("system", [True, False], ids=["system", "no-system"])
@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_format_rendering_equals_the_template(name, system):
    tok = make_tokenizer(TEMPLATES[name])
    messages = history(name, system)
    ours = rendered(tok, FORMATS[name].prepare_messages(messages, SCHEMAS))
    assert ours == reference(tok, messages)
    if name.startswith("glm"):
        assert "<|observation|>\n<tool_response>\nhéllo héllo\n</tool_response>" in ours
        assert "<|user|>\n<tool_response>" not in ours
        assert ours.startswith("[gMASK]<sop><|system|>\n# Tools\n\nYou may call one or more functions")
    else:
        assert "<|im_start|>user\n<tool_response>\nhéllo héllo\n</tool_response>" in ours


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_openai_model_wire_messages_render_as_the_template(name):
    """Through an OpenAI-compatible server, which applies the model's template to what it is sent
    (tool-call arguments decoded, as vLLM does)."""

    class Server:
        url = "http://server/v1/chat/completions"

        def __init__(self):
            self.requests = []

        def chat(self, messages, tools=None, **params):
            self.requests.append((messages, tools))
            return ChatCompletion({"role": "assistant", "content": "red"}, "stop", {})

    tok = make_tokenizer(TEMPLATES[name])
    server = Server()
    model = OpenAIChatModel(server, tool_format=FORMATS[name])
    messages = history(name, system=True)
    model.chat(messages, SCHEMAS)
    sent, tools = server.requests[0]
    assert tools is None  # a server without a tool parser: the tools travel in the messages
    assert all(not isinstance(m.get("content"), list) or m["role"] == "user" for m in sent)
    images = [p for m in sent if isinstance(m.get("content"), list) for p in m["content"]]
    assert sum(p.get("type") == "image_url" for p in images) == 2
    assert rendered(tok, _without_images(sent)) == reference(tok, messages)
    native = [m for m in sent if m.get("tool_calls")]
    assert native[0]["tool_calls"][0]["function"]["arguments"] == '{"image": "img_1"}'  # kept as produced


def _without_images(wire: list[dict]) -> list[dict]:
    """Wire messages with each image_url part as the placeholder text (what a text-only template sees)."""
    out = []
    for message in copy.deepcopy(wire):
        if isinstance(message.get("content"), list):
            message["content"] = "".join(
                PLACEHOLDER if p["type"] == "image_url" else p["text"] for p in message["content"]
            )
        out.append(message)
    return out


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_transformers_model_renders_with_the_template_by_default(name):
    tok = make_tokenizer(TEMPLATES[name])
    model = TransformersChatModel(object(), tok, tool_format=FORMATS[name])
    support = model.template_support()
    assert support.tools and support.tool_role and support.tool_calls
    messages = history(name, system=False)
    assert model.render_prompt(messages, SCHEMAS) == reference(tok, messages)


def test_a_template_without_tool_support_gets_the_formats_own_rendering():
    chatml = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    strict = (
        "{% for m in messages %}{% if m['role'] not in ('system', 'user', 'assistant') %}"
        "{{ raise_exception('unknown role ' + m['role']) }}{% endif %}"
        "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    messages = history("qwen25", system=True)
    loose = probe_template(make_tokenizer(chatml))
    assert (loose.tools, loose.tool_role, loose.tool_calls) == (False, True, False)
    prompt = TransformersChatModel(object(), make_tokenizer(strict), tool_format="hermes").render_prompt(
        messages, SCHEMAS
    )
    assert prompt.startswith("<|im_start|>system\nAnswer briefly.\n\n# Tools\n")
    assert "<|im_start|>user\n<tool_response>\nhéllo héllo\n</tool_response>\n<tool_response>\n" in prompt
    # the call the server parsed is written in the format's text when the template cannot render it
    assert '<tool_call>\n{"name": "image_size", "arguments": {"image": "img_1"}}\n</tool_call>' in prompt


def test_tools_section_is_the_templates_text():
    glm = Glm45ToolCallFormat().render_tools(SCHEMAS)
    lines = "\n".join(json.dumps(s, ensure_ascii=False) for s in SCHEMAS)
    assert glm.startswith("# Tools\n\nYou may call one or more functions to assist with the user query.")
    assert f"<tools>\n{lines}\n</tools>\n\nFor each function call, output the function name" in glm
    assert glm.endswith("<arg_value>{arg-value-2}</arg_value>\n...\n</tool_call>")
    hermes = HermesToolCallFormat().render_tools(SCHEMAS)
    assert hermes.endswith(
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )
