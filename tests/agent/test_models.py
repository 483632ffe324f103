"""Chat-model adapters: message conversion, the OpenAI adapter, a tiny local transformers LM."""

from __future__ import annotations

import pytest
from PIL import Image

from glmkit.agent.client import ChatCompletion
from glmkit.agent.context import image_ref
from glmkit.agent.formats import Glm45ToolCallFormat, ToolCall
from glmkit.agent.loop import AgentLoop
from glmkit.agent.models import (
    CHAT_MODELS,
    ChatModel,
    OpenAIChatModel,
    TransformersChatModel,
    to_openai_messages,
    to_text_messages,
)
from tests.agent.toy_tools import EchoTool, toy_tools
from tests.helpers.tokenizers import byte_level_bpe

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE tokenizer trained here on a few strings, with a ChatML-like template."""
    corpus = [
        '<tool_call>{"name": "echo", "arguments": {"text": "hi"}}</tool_call>',
        "You can call the functions below. Their signatures are JSON schemas.",
        "<tool_response>hi hi</tool_response> What is in the image? It is red.",
    ] * 20
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    fast = byte_level_bpe(corpus, 400, special, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


@pytest.fixture(scope="module")
def tiny_llama(tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config).eval()


def history_with_images():
    return [
        {"role": "system", "content": "Look carefully."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "img_0:"},
                image_ref("img_0", Image.new("RGB", (8, 8), "red")),
                {"type": "text", "text": "What colour?"},
            ],
            "internal": "dropped",
        },
    ]


def test_to_openai_messages_turns_refs_into_data_urls_and_drops_unknown_keys():
    wire = to_openai_messages(history_with_images())
    assert "internal" not in wire[1]
    part = wire[1]["content"][1]
    assert part["type"] == "image_url" and part["image_url"]["url"].startswith("data:image/png;base64,")
    assert wire[1]["content"][0] == {"type": "text", "text": "img_0:"}


def test_to_text_messages_uses_placeholders():
    text = to_text_messages(history_with_images(), "<image {image_id}>")
    assert text[1]["content"] == "img_0:<image img_0>What colour?"


def test_openai_model_needs_an_endpoint():
    with pytest.raises(ValueError, match="base_url"):
        OpenAIChatModel()
    model = OpenAIChatModel(base_url="http://127.0.0.1:9/v1", tool_format="glm45")
    assert isinstance(model, ChatModel) and model.tool_format.name == "glm45"
    assert {"openai", "transformers"} <= set(CHAT_MODELS.names())


def test_transformers_model_needs_a_text_format_and_a_template(tokenizer, tiny_llama):
    with pytest.raises(ValueError, match="text tool-call format"):
        TransformersChatModel(tiny_llama, tokenizer, tool_format="openai")

    class NoTemplate:
        chat_template = None

    with pytest.raises(ValueError, match="chat_template"):
        TransformersChatModel(tiny_llama, NoTemplate())


def test_prompt_has_tool_schemas_and_image_placeholders(tokenizer, tiny_llama):
    model = TransformersChatModel(tiny_llama, tokenizer, tool_format="glm45")
    messages = history_with_images() + [
        {"role": "user", "content": [image_ref("img_1", Image.new("RGB", (4, 4)))]},
    ]
    prompt = model.render_prompt(messages, [t.schema() for t in toy_tools()])
    # GLM's tools block comes first, as its own system turn, then the system prompt
    assert prompt.startswith("<|im_start|>system\n# Tools\n")
    assert "<|im_end|>\n<|im_start|>system\nLook carefully.<|im_end|>" in prompt
    assert '"name": "echo"' in prompt and '"times"' in prompt and "<tools>" in prompt
    assert "<arg_key>" in prompt  # the GLM call syntax is explained
    assert prompt.count("<|image|>") == 2
    assert "base64" not in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_chat_generates_with_usage_and_length_finish(tokenizer, tiny_llama):
    # min_new_tokens keeps EOS out, so the reply runs into max_new_tokens
    model = TransformersChatModel(
        tiny_llama, tokenizer, max_new_tokens=6, generation_kwargs={"min_new_tokens": 6}
    )
    messages = [{"role": "user", "content": "hi"}]
    completion = model.chat(messages, [EchoTool().schema()])
    prompt_tokens = len(tokenizer(model.render_prompt(messages, [EchoTool().schema()]))["input_ids"])
    assert isinstance(completion, ChatCompletion)
    assert completion.message["role"] == "assistant" and isinstance(completion.content, str)
    assert completion.usage == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 6,
        "total_tokens": prompt_tokens + 6,
    }
    assert completion.finish_reason == "length"
    assert len(tokenizer(completion.content, add_special_tokens=False)["input_ids"]) >= 1


def test_chat_stops_at_eos_and_drops_it_from_the_content(tokenizer, tiny_llama):
    # forced_eos_token_id makes the last allowed token EOS
    kwargs = {"min_new_tokens": 5, "forced_eos_token_id": tokenizer.eos_token_id}
    model = TransformersChatModel(tiny_llama, tokenizer, max_new_tokens=6, generation_kwargs=kwargs)
    completion = model.chat([{"role": "user", "content": "hi"}])
    assert completion.finish_reason == "stop"
    assert completion.usage["completion_tokens"] == 6
    assert "<|im_end|>" not in completion.content


class StopTokenLM:
    """Appends scripted token ids, like a GLM-4.5 checkpoint whose generation_config lists extra stop ids."""

    def __init__(self, new_ids, eos_token_id):
        from types import SimpleNamespace

        self.new_ids = new_ids
        self.generation_config = SimpleNamespace(eos_token_id=eos_token_id)
        self.generate_kwargs = {}

    def generate(self, input_ids, attention_mask=None, **kwargs):
        import torch

        self.generate_kwargs = kwargs
        return torch.cat([input_ids, torch.tensor([self.new_ids])], dim=1)


@pytest.fixture(scope="module")
def glm_tokenizer(tokenizer):
    import copy

    tok = copy.deepcopy(tokenizer)
    tok.add_special_tokens({"additional_special_tokens": ["<|user|>", "<|observation|>"]})
    return tok


@pytest.mark.parametrize("config_eos", ["list", "int"])
def test_glm_stop_tokens_from_generation_config_finish_a_tool_call(glm_tokenizer, config_eos):
    tok = glm_tokenizer
    observation = tok.convert_tokens_to_ids("<|observation|>")
    endoftext = tok.convert_tokens_to_ids("<|endoftext|>")
    assert observation != tok.eos_token_id
    call = Glm45ToolCallFormat().render_call(ToolCall("echo", {"text": "hi", "times": 2}))
    ids = tok(call, add_special_tokens=False)["input_ids"] + [observation]
    eos = (
        [endoftext, tok.convert_tokens_to_ids("<|user|>"), observation]
        if config_eos == "list"
        else observation
    )
    lm = StopTokenLM(ids, eos)
    model = TransformersChatModel(lm, tok, tool_format="glm45", max_new_tokens=len(ids))
    completion = model.chat([{"role": "user", "content": "hi"}], [EchoTool().schema()])
    assert completion.finish_reason == "stop"
    assert completion.content == call  # the stop token is not content
    assert completion.usage["completion_tokens"] == len(ids)
    # generate is told about every stop id, the tokenizer's EOS included
    assert set(lm.generate_kwargs["eos_token_id"]) >= {observation, tok.eos_token_id}
    result = AgentLoop(model, [EchoTool()], max_turns=1).run("Say hi twice.")
    assert result.tool_calls == {"echo": 1} and result.parse_errors == 0


def test_finish_reason_without_a_stop_token_depends_on_the_token_count(glm_tokenizer):
    tok = glm_tokenizer
    ids = tok("It is red.", add_special_tokens=False)["input_ids"]
    # fewer tokens than allowed: something else (a stop string) ended generation
    short = TransformersChatModel(StopTokenLM(ids, None), tok, max_new_tokens=len(ids) + 1)
    completion = short.chat([{"role": "user", "content": "hi"}])
    assert completion.finish_reason == "stop" and completion.content == "It is red."
    full = TransformersChatModel(StopTokenLM(ids, None), tok, max_new_tokens=len(ids))
    completion = full.chat([{"role": "user", "content": "hi"}])
    assert completion.finish_reason == "length" and completion.content == "It is red."


def test_from_pretrained_loads_a_saved_checkpoint(tmp_path, tokenizer, tiny_llama):
    tiny_llama.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model = TransformersChatModel.from_pretrained(str(tmp_path), tool_format="hermes", max_new_tokens=3)
    assert model.tokenizer.chat_template == CHAT_TEMPLATE
    completion = model.chat([{"role": "user", "content": "hello"}])
    assert completion.usage["completion_tokens"] <= 3


class ScriptedLM:
    """A stand-in for a causal LM whose ``generate`` appends scripted replies (the plumbing under test)."""

    def __init__(self, tokenizer, replies):
        self.tokenizer = tokenizer
        self.replies = list(replies)
        self.prompts = []

    def generate(self, input_ids, attention_mask=None, max_new_tokens=0, pad_token_id=None, **_):
        import torch

        self.prompts.append(self.tokenizer.decode(input_ids[0]))
        reply = self.tokenizer(self.replies.pop(0), add_special_tokens=False)["input_ids"]
        new = torch.tensor([reply + [self.tokenizer.eos_token_id]])
        return torch.cat([input_ids, new], dim=1)


def test_agent_loop_with_a_local_model_and_glm_calls(tokenizer):
    call = Glm45ToolCallFormat().render_call(ToolCall("echo", {"text": "hi", "times": 2}))
    lm = ScriptedLM(tokenizer, ["Let me check.\n" + call, "The tool said hi hi."])
    model = TransformersChatModel(lm, tokenizer, tool_format="glm45")
    result = AgentLoop(model, [EchoTool()]).run("Say hi twice.", images=[Image.new("RGB", (4, 4))])
    assert result.stop_reason == "answer" and result.final_answer == "The tool said hi hi."
    assert result.tool_calls == {"echo": 1} and result.tool_errors == 0
    assert result.usage["completion_tokens"] > 0
    first, second = lm.prompts
    assert "img_0:<|image|>Say hi twice." in first
    assert call in second  # the assistant's raw call is replayed
    # the ChatML template renders role: tool itself, so the result goes as a tool turn
    assert "<|im_start|>tool\nhi hi<|im_end|>" in second


TOOL_TEMPLATE = (
    "{% if tools %}TOOLS={{ tools | map(attribute='function') | map(attribute='name') | join(',') }}\n{% endif %}"
    "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant]{% endif %}"
)


def test_template_tools_and_native_tool_role(tokenizer, tiny_llama):
    import copy

    tok = copy.deepcopy(tokenizer)
    tok.chat_template = TOOL_TEMPLATE
    model = TransformersChatModel(
        tiny_llama, tok, tool_format="glm45", template_tools=True, observation_role="tool"
    )
    history = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": "<tool_call>echo<arg_key>text</arg_key><arg_value>a</arg_value></tool_call>",
        },
        {"role": "tool", "tool_call_id": "c0", "content": "a"},
    ]
    prompt = model.render_prompt(history, [t.schema() for t in toy_tools()])
    assert prompt.startswith("TOOLS=echo,make_image,image_size\n")
    assert "<tools>" not in prompt  # the template announced the tools, not the format
    assert "[tool]a\n" in prompt and "<tool_response>" not in prompt
    with pytest.raises(ValueError, match="observation_role"):
        TransformersChatModel(tiny_llama, tok, observation_role="observation")
