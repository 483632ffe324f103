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
    # both owners are named: the newcomer and the one already there
    with pytest.raises(
        RegistryError, match=r"builtins.float cannot register the name 'a'.*registered by builtins.int"
    ):
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
        from glmkit.registry import declare
        declare("test_plugin_kind", "a kind a plugin declares").add("from_good_plugin", object, override=True)
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


def test_registering_an_object_of_another_kind_fails() -> None:
    class Widget:
        pass

    reg: Registry = Registry("widgets", "things with a base", base=Widget)

    @reg.register("round")
    class Round(Widget):
        pass

    with pytest.raises(RegistryError, match=r"widgets: .*Square is not a .*Widget.*subclasses of it"):

        @reg.register("square")
        class Square:
            pass

    assert reg.names() == ["round"]


def test_a_kind_is_declared_once() -> None:
    first = reg_mod.declare("test_declared_once", "declared here")
    assert reg_mod.registry("test_declared_once") is first
    assert first.package == "tests"
    reg_mod._REGISTRIES["test_declared_once"].package = "elsewhere"
    try:
        with pytest.raises(RegistryError, match="already declared by elsewhere"):
            reg_mod.declare("test_declared_once", "again")
    finally:
        reg_mod._REGISTRIES.pop("test_declared_once")


def test_unknown_kind_suggests_declared_kinds() -> None:
    with pytest.raises(RegistryError, match="no registry of kind 'encoderz'. Did you mean 'encoders'"):
        reg_mod.registry("encoderz")


def test_builtins_are_found_by_walking_the_package() -> None:
    report = reg_mod.import_builtins()
    assert "glmkit.losses.distill" in report.loaded and "glmkit.cli" not in report.loaded
    assert not report.failed
    assert {"encoders", "distill_losses", "stages", "tools", "metrics"} <= set(reg_mod.all_registries())


def test_a_plugin_component_is_found_from_python_without_load_plugins(tmp_path, monkeypatch) -> None:
    _fake_distribution(
        tmp_path,
        "lossplug",
        "lossplug_mod",
        """
        from glmkit.losses import DISTILL_LOSSES as LOSSES
        LOSSES.add("a_plugin_loss", type("APluginLoss", (LOSSES.base or object,), {}), override=True)
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(reg_mod.DISABLE_AUTOLOAD_ENV, raising=False)
    monkeypatch.setattr(reg_mod, "_PLUGIN_REPORT", None)  # as in a fresh process
    from glmkit.losses import DISTILL_LOSSES as LOSSES

    try:
        assert "a_plugin_loss" not in LOSSES
        assert LOSSES.get("a_plugin_loss").__name__ == "APluginLoss"
    finally:
        LOSSES._entries.pop("a_plugin_loss", None)
        sys.modules.pop("lossplug_mod", None)
        load_plugins(force=True)


def test_disabled_autoload_still_lists_installed_plugins(monkeypatch, capsys) -> None:
    from glmkit.cli import main

    monkeypatch.setattr(
        reg_mod, "installed_plugins", lambda: ["example (glmkit-example 0.1.0): glmkit_example"]
    )
    import glmkit.cli as cli_mod

    monkeypatch.setattr(cli_mod, "installed_plugins", reg_mod.installed_plugins)
    monkeypatch.setenv(reg_mod.DISABLE_AUTOLOAD_ENV, "1")
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "autoloading is disabled" in out and "example (glmkit-example 0.1.0)" in out
    assert "no plugins installed" not in out


def test_list_help_says_pattern_is_a_glob(capsys) -> None:
    from glmkit.cli import main

    assert main(["list", "--help"]) == 0
    assert "shell-style glob" in capsys.readouterr().out
