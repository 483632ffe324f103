"""The agent layer's registries are declared once, with the base each member must share."""

from __future__ import annotations

from typing import Any

import pytest

from glmkit.agent.context import CONTEXT_POLICIES, ContextPolicy
from glmkit.agent.formats import TOOL_CALL_FORMATS, ToolCallFormat
from glmkit.agent.models import CHAT_MODELS, ChatModel
from glmkit.registry import RegistryError, declare, registry


@pytest.mark.parametrize(
    ("kind", "reg", "base"),
    [
        ("tool_call_formats", TOOL_CALL_FORMATS, ToolCallFormat),
        ("chat_models", CHAT_MODELS, ChatModel),
        ("context_policies", CONTEXT_POLICIES, ContextPolicy),
    ],
)
def test_each_kind_is_declared_once_with_its_base(kind, reg, base):
    assert registry(kind) is reg and reg.base is base
    assert all(isinstance(member, type) for _, member in reg.items())
    with pytest.raises(RegistryError, match="already declared"):
        declare(kind, "a second declaration")


def test_a_member_of_the_wrong_kind_is_refused():
    class Nothing:
        pass

    for reg in (TOOL_CALL_FORMATS, CHAT_MODELS, CONTEXT_POLICIES):
        with pytest.raises(RegistryError, match="is not a"):
            reg.register("nothing")(Nothing)
        assert "nothing" not in reg


def test_protocol_members_need_the_protocol_methods_only():
    class Policy:
        def apply(self, messages: Any) -> list[dict[str, Any]]:
            return list(messages)

    class Model:
        tool_format = None  # set per instance by real adapters

        def chat(self, messages: Any, tools: Any = None) -> Any:
            return None

    CONTEXT_POLICIES.check(Policy)  # raises for a class of another kind
    CHAT_MODELS.check(Model)
    with pytest.raises(RegistryError):
        CHAT_MODELS.check(Policy)
