"""``--import MODULE``: one option and one import path behind every component command line."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from glmkit.cli_imports import import_modules


def _eval_main(argv: list[str]) -> int:
    from glmkit.eval.cli import main

    return main([*argv, "--list"])


def _serve_main(argv: list[str]) -> int:
    pytest.importorskip("mcp")
    from glmkit.agent.mcp_server import main

    return main([*argv, "--list"])


def _skills_main(argv: list[str]) -> int:
    from glmkit.agent.skills.cli import main

    return main(["unused-out-dir", *argv])


@pytest.fixture
def broken_module(tmp_path, monkeypatch):
    (tmp_path / "broken_cli_plugin_xyz.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "broken_cli_plugin_xyz"
    sys.modules.pop("broken_cli_plugin_xyz", None)


@pytest.mark.parametrize(
    ("main", "prog"),
    [
        (_eval_main, "glmkit eval"),
        (_serve_main, "glmkit tools serve"),
        (_skills_main, "glmkit tools export-skills"),
    ],
)
def test_every_cli_reports_import_failures_alike(
    main: Callable[[list[str]], int], prog: str, broken_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--import", "no_such_module_xyz"]) == 2
    err = capsys.readouterr().err
    assert f"{prog}: --import no_such_module_xyz: no module named 'no_such_module_xyz'" in err
    assert main(["--import", broken_module]) == 2  # a module that raises is reported, not a traceback
    err = capsys.readouterr().err
    assert f"{prog}: --import {broken_module}: importing it failed: RuntimeError: boom" in err


def test_import_modules_stops_at_the_first_failure(broken_module: str) -> None:
    assert import_modules(["json", "glmkit.agent.client"]) is None
    message = import_modules(["json", broken_module, "no_such_module_xyz"])
    assert message == f"--import {broken_module}: importing it failed: RuntimeError: boom"
    nested = import_modules(["json.no_such_child_xyz"])
    assert nested is not None and "no module named 'json.no_such_child_xyz'" in nested
