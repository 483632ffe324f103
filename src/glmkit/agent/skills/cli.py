"""``glmkit tools export-skills``: the command line over :func:`~glmkit.agent.skills.export.export_skills`."""

from __future__ import annotations

import argparse
import sys

from glmkit.agent.skills.export import export_skills
from glmkit.cli_imports import add_import_option, import_modules
from glmkit.tools.base import Tool


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``glmkit tools export-skills``."""
    parser = argparse.ArgumentParser(
        prog="glmkit tools export-skills", description="Export glmkit tools as agent skill folders."
    )
    parser.add_argument("out_dir", help="folder that receives one sub-folder per skill")
    parser.add_argument(
        "--bundle",
        action="append",
        default=[],
        metavar="NAME=TOOL,TOOL",
        help="a skill and its tools; repeatable (default: one skill 'glmkit-tools' with every registered tool)",
    )
    add_import_option(parser, "tools")
    parser.add_argument(
        "--no-run-examples",
        dest="run_examples",
        action="store_false",
        help="check the SKILL.md examples against the schemas only, without running tools on blank images",
    )
    args = parser.parse_args(argv)
    try:
        error = import_modules(args.imports)
        if error:
            raise ImportError(error)
        bundles: dict[str, list[Tool | str]] = {}
        for spec in args.bundle:
            name, sep, tools = spec.partition("=")
            names = [t.strip() for t in tools.split(",") if t.strip()]
            if not sep or not names:
                raise ValueError(f"--bundle expects NAME=TOOL,TOOL, got {spec!r}")
            bundles[name.strip()] = list(names)
        if not bundles:
            from glmkit.agent.mcp_server import registered_tool_names

            bundles = {"glmkit-tools": list(registered_tool_names())}
        folders = export_skills(args.out_dir, bundles, run_examples=args.run_examples)
    except (ImportError, KeyError, ValueError) as exc:
        print(f"glmkit tools export-skills: {exc}", file=sys.stderr)
        return 2
    for folder in folders:
        print(folder)
    return 0
