"""Registry behaviour and plugin discovery (including a broken plugin)."""

from __future__ import annotations

import sys
import textwrap

import pytest

from glmkit import registry as reg_mod
from glmkit.registry import Registry, RegistryError, load_plugins


def test_register_get_and_list() -> None:
    reg: Registry = Registry("widgets")

    @reg.register("round_widget")
    class RoundWidget:
        pass

    reg.add("square_widget", dict)
    assert reg.get("round_widget") is RoundWidget
    assert reg.names() == ["round_widget", "square_widget"]
    assert reg.names("round*") == ["round_widget"]
    assert "square_widget" in reg and len(reg) == 2


def test_name_defaults_to_object_name() -> None:
    reg: Registry = Registry("widgets")

    @reg.register()
    def make_widget() -> None: ...

    assert reg.names() == ["make_widget"]


def test_duplicate_name_raises_unless_override() -> None:
    reg: Registry = Registry("widgets")
    reg.add("a", int)
    reg.add("a", int)  # the same object again is harmless
    with pytest.raises(RegistryError, match="already registered by builtins.int"):
        reg.add("a", float)
    reg.add("a", float, override=True)
    assert reg.get("a") is float


def test_unknown_name_suggests_closest() -> None:
    reg: Registry = Registry("losses")
    reg.add("cosine", int)
    reg.add("smooth_l1", int)
    with pytest.raises(RegistryError, match=r"unknown losses 'cosin'\. Did you mean 'cosine'\?"):
        reg.get("cosin")


def _fake_distribution(tmp_path, name: str, entry: str, module_code: str) -> None:
    """A distribution on sys.path with one glmkit.plugins entry point, without pip."""
    dist = tmp_path / f"{name}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[glmkit.plugins]\n{name} = {entry}\n")
    (tmp_path / f"{entry}.py").write_text(textwrap.dedent(module_code))


def test_broken_plugin_is_reported_by_name_and_others_load(tmp_path, monkeypatch) -> None:
    _fake_distribution(
        tmp_path,
        "goodplug",
        "goodplug_mod",
        """
        from glmkit.registry import registry
        registry("test_plugin_kind").add("from_good_plugin", object, override=True)
        """,
    )
    _fake_distribution(tmp_path, "badplug", "badplug_mod", "raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(reg_mod.DISABLE_AUTOLOAD_ENV, raising=False)
    report = load_plugins(force=True)
    try:
        assert any(name.startswith("goodplug (goodplug 0.1)") for name in report.loaded)
        (failed_name, error), *_ = [(k, v) for k, v in report.failed.items() if k.startswith("badplug")]
        assert failed_name == "badplug (badplug 0.1): badplug_mod"
        assert "RuntimeError: boom at import" in error
        assert "from_good_plugin" in reg_mod.registry("test_plugin_kind")
    finally:
        for mod in ("goodplug_mod", "badplug_mod"):
            sys.modules.pop(mod, None)
        load_plugins(force=True)


def test_autoload_can_be_disabled(monkeypatch) -> None:
    monkeypatch.setenv(reg_mod.DISABLE_AUTOLOAD_ENV, "1")
    report = load_plugins(force=True)
    assert report.loaded == [] and report.failed == {}
    monkeypatch.delenv(reg_mod.DISABLE_AUTOLOAD_ENV)
    load_plugins(force=True)
