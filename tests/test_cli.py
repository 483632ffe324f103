"""The ``glmkit`` command: listing components, plugins, dispatch, and unique class names."""

from __future__ import annotations

import inspect

import pytest

from glmkit.cli import list_components, main
from glmkit.registry import all_registries, import_all


def test_list_shows_registered_components_with_presets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for expected in ("encoders", "cogvit", "teachers", "siglip2", "dinov3", "losses", "cosine", "tools"):
        assert expected in out
    cogvit_line = next(line for line in out.splitlines() if line.strip().startswith("cogvit"))
    assert "glmkit.models.encoders.cogvit.CogViT" in cogvit_line and "tiny, base, large" in cogvit_line


def test_list_filters_by_kind_and_pattern(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "tools", "draw_image_*"]) == 0
    lines = [ln.strip() for ln in capsys.readouterr().out.splitlines() if ln.startswith("  ")]
    assert lines and all(ln.startswith("draw_image_") for ln in lines)
    with pytest.raises(SystemExit, match="unknown kind 'tool'. Did you mean tools"):
        list_components("tool")


def test_every_builtin_module_imports() -> None:
    report = import_all()
    assert report.failed == {} or all("plugin" in k for k in report.failed), report.failed


def test_registered_class_names_are_unique() -> None:
    """LightningCLI resolves short class names, so two registered classes must not share one."""
    import_all()
    owners: dict[str, str] = {}
    for kind, reg in all_registries().items():
        for name, obj in reg.items():
            if not inspect.isclass(obj):
                continue
            qualified = f"{obj.__module__}.{obj.__qualname__}"
            previous = owners.setdefault(obj.__name__, qualified)
            assert previous == qualified, (
                f"class name {obj.__name__} used by {previous} and {qualified} ({kind}/{name})"
            )


def test_tools_command_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tools", "frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_help_names_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("list [KIND] [PATTERN]", "plugins", "eval --benchmark", "tools serve"):
        assert command in out
    assert "{fit,validate,test,predict}" in out  # LightningCLI's help follows


def test_plugins_and_tools_answer_help(capsys) -> None:
    assert main(["plugins", "--help"]) == 0
    assert "usage: glmkit plugins" in capsys.readouterr().out
    assert main(["plugins", "extra"]) == 2
    assert "takes no arguments" in capsys.readouterr().err
    assert main(["tools", "--help"]) == 0
    out = capsys.readouterr().out
    assert "serve " in out and "export-skills " in out and "COMMAND --help" in out
