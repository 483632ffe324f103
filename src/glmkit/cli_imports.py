"""The ``--import MODULE`` option of glmkit's component command lines (``glmkit eval``, ``glmkit tools
serve``, ``glmkit tools export-skills``): modules named there are imported before any name is
resolved, so the tools, benchmarks, metrics and adapters they register can be named.
"""

from __future__ import annotations

import argparse
import importlib
import traceback
from collections.abc import Iterable


def add_import_option(parser: argparse.ArgumentParser, registers: str) -> None:
    """Add the repeatable ``--import MODULE`` option (into ``args.imports``); ``registers`` names
    what such a module may register, for the help text (``"tools"``)."""
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help=f"import MODULE first, so the {registers} it registers can be named "
        "(repeatable; MODULE must be importable, e.g. its directory on PYTHONPATH)",
    )


def import_modules(modules: Iterable[str]) -> str | None:
    """Import each module in order (they register components); the first failure as a message, or None."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and (exc.name == module or module.startswith(exc.name + ".")):
                return f"--import {module}: no module named {exc.name!r} (is its directory on PYTHONPATH?)"
            return f"--import {module}: {type(exc).__name__}: {exc}"
        except Exception as exc:
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            return f"--import {module}: importing it failed: {last}"
    return None
