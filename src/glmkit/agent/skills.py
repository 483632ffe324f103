"""Export glmkit tool bundles as agent skill folders (report section 3.2).

A skill is a folder an agent harness (Claude Code, Codex, OpenClaw, GLM's own skills) discovers by
its ``SKILL.md``: YAML front matter with ``name`` and ``description``, then instructions. The
layout follows zai-org/GLM-V's skills (``SKILL.md`` + ``scripts/``)::

    <out>/<skill-name>/SKILL.md
    <out>/<skill-name>/scripts/<tool>.py

``SKILL.md`` is generated from the tools' JSON schemas (an argument table and an example call per
tool). Each script is a small CLI over :func:`run_tool_cli`: it takes the tool's arguments as one
JSON object, input images as ``--image ID=PATH``, runs the glmkit tool, saves image outputs as
PNGs and prints one JSON object. The scripts import glmkit, so it must be installed where the
agent runs them; tools are built with their default constructor arguments.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glmkit.tools.base import Tool, ToolContext, ToolError

_SKILL_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
MAX_NAME = 64
MAX_DESCRIPTION = 1024


@dataclass
class SkillBundle:
    """A named group of tools exported as one skill."""

    name: str
    tools: list[Tool | str]
    description: str = ""
    instructions: str = ""


@dataclass
class _Resolved:
    name: str
    description: str
    instructions: str
    tools: list[Tool] = field(default_factory=list)


def validate_skill_name(name: str) -> str:
    """Return ``name`` if it is a valid skill name (lowercase letters, digits, single hyphens, <= 64)."""
    if len(name) > MAX_NAME or not _SKILL_NAME.match(name):
        raise ValueError(
            f"invalid skill name {name!r}: use lowercase letters, digits and single hyphens, "
            f"at most {MAX_NAME} characters (e.g. 'glmkit-vision')"
        )
    return name


def example_value(schema: Mapping[str, Any], name: str = "") -> Any:
    """A plausible value for one argument, from its schema (``examples``, ``default``, ``enum``, type)."""
    if isinstance(schema.get("examples"), list) and schema["examples"]:
        return schema["examples"][0]
    for key in ("default", "const"):
        if key in schema:
            return schema[key]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "string":
        text = (name + " " + str(schema.get("description", ""))).lower()
        return "img_0" if "image" in text and "id" in text else f"<{name or 'text'}>"
    if kind in ("integer", "number"):
        low = schema.get("minimum", 1)
        return low if kind == "integer" else float(low)
    if kind == "boolean":
        return True
    if kind == "array":
        items = schema.get("items") if isinstance(schema.get("items"), Mapping) else {}
        count = int(schema.get("minItems", 1))
        if items.get("type") in ("integer", "number"):
            # increasing values make a valid box [x1, y1, x2, y2] or point [x, y]
            return [100 * (i + 1) for i in range(count)]
        return [example_value(items, name) for _ in range(count)]
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: example_value(v, k) for k, v in props.items() if k in (schema.get("required") or ())}
    return f"<{name or 'value'}>"


def example_arguments(tool: Tool) -> dict[str, Any]:
    """Example arguments for ``tool``: every required argument, from the schema."""
    schema = tool.parameters or {}
    props = schema.get("properties") or {}
    return {k: example_value(props[k], k) for k in schema.get("required") or () if k in props}


def _type_label(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = " | ".join(kind)
    if kind == "array" and isinstance(schema.get("items"), Mapping) and schema["items"].get("type"):
        kind = f"array of {schema['items']['type']}"
    if isinstance(schema.get("enum"), list):
        kind = " | ".join(json.dumps(v) for v in schema["enum"])
    return str(kind or "any")


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_skill_md(name: str, description: str, tools: Sequence[Tool], instructions: str = "") -> str:
    """The text of ``SKILL.md``: front matter, usage, one section per tool."""
    import yaml

    front = yaml.safe_dump({"name": name, "description": description}, sort_keys=False, allow_unicode=True)
    lines = [f"---\n{front}---", "", f"# {name}", ""]
    if instructions:
        lines += [instructions.strip(), ""]
    lines += [
        "Each tool is a script in `scripts/`. Run it from this folder with the tool's arguments as one JSON object:",
        "",
        "    python scripts/<tool>.py '<JSON arguments>' [--image ID=PATH ...] [--out-dir DIR]",
        "",
        "- Input images: load each with `--image img_0=photo.jpg` (a path, data: URL or base64) and refer "
        'to it by its id (`"img_0"`) in the arguments.',
        "- Output: one JSON object on stdout with `ok`, `text`, `error`, `images` (id and PNG path of each "
        "new image, saved in `--out-dir`, default `./glmkit_outputs`), `files` and `data`.",
        "- Exit status: 0 success, 1 the tool reported an error (read `error` and fix the arguments), 2 bad usage.",
        "- Requires the `glmkit` Python package.",
        "",
        "## Tools",
        "",
    ]
    for tool in tools:
        schema = tool.parameters or {}
        props = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        lines += [f"### {tool.name}", "", tool.description.strip(), ""]
        if props:
            lines += ["| argument | type | required | description |", "|---|---|---|---|"]
            for key, prop in props.items():
                desc = prop.get("description", "")
                if "default" in prop:
                    desc = f"{desc} Default: {json.dumps(prop['default'])}.".strip()
                req = "yes" if key in required else "no"
                lines.append(f"| `{key}` | {_cell(_type_label(prop))} | {req} | {_cell(desc)} |")
            lines.append("")
        args = example_arguments(tool)
        image_flags = "".join(
            f" --image {v}=path/to/image.png"
            for v in args.values()
            if isinstance(v, str) and v.startswith("img_")
        )
        lines += [
            "Example:",
            "",
            f"    python scripts/{tool.name}.py '{json.dumps(args, ensure_ascii=False)}'{image_flags}",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


_SCRIPT = '''#!/usr/bin/env python3
"""Run the glmkit tool {tool!r} (skill {skill!r}); generated by glmkit.agent.skills.

Usage: python {filename} '<JSON arguments>' [--image ID=PATH ...] [--out-dir DIR]
"""

import sys

from glmkit.agent.skills import run_tool_cli

if __name__ == "__main__":
    sys.exit(run_tool_cli({tool!r}, sys.argv[1:], modules={modules!r}))
'''


def _resolve_bundle(bundle: SkillBundle) -> _Resolved:
    from glmkit.agent.loop import resolve_tools

    name = validate_skill_name(bundle.name)
    tools = list(resolve_tools(bundle.tools).values())
    if not tools:
        raise ValueError(f"skill {name!r} has no tools")
    description = bundle.description or (
        "glmkit tools "
        + ", ".join(t.name for t in tools)
        + ". "
        + " ".join(_first_sentence(t) for t in tools)
    )
    if len(description) > MAX_DESCRIPTION:
        description = description[: MAX_DESCRIPTION - 3].rstrip() + "..."
    return _Resolved(name, description, bundle.instructions, tools)


def _first_sentence(tool: Tool) -> str:
    text = " ".join(tool.description.split())
    head, dot, _ = text.partition(". ")
    return head + ("." if dot or not head.endswith(".") else "")


def export_skills(
    out_dir: str | Path, bundles: Sequence[SkillBundle] | Mapping[str, Sequence[Tool | str]]
) -> list[Path]:
    """Write one skill folder per bundle under ``out_dir``; return the folders.

    ``bundles`` is a list of :class:`SkillBundle` or a mapping skill name -> tools (instances or
    registered names). Existing files of the same names are overwritten.
    """
    if isinstance(bundles, Mapping):
        bundles = [SkillBundle(name, list(tools)) for name, tools in bundles.items()]
    resolved = [_resolve_bundle(b) for b in bundles]  # validate everything before writing
    out = Path(out_dir)
    folders = []
    for skill in resolved:
        folder = out / skill.name
        scripts = folder / "scripts"
        scripts.mkdir(parents=True, exist_ok=True)
        md = render_skill_md(skill.name, skill.description, skill.tools, skill.instructions)
        (folder / "SKILL.md").write_text(md, encoding="utf-8")
        for tool in skill.tools:
            modules = [type(tool).__module__] if type(tool).__module__ != "__main__" else []
            script = scripts / f"{tool.name}.py"
            script.write_text(
                _SCRIPT.format(
                    tool=tool.name, skill=skill.name, filename=f"scripts/{tool.name}.py", modules=modules
                ),
                encoding="utf-8",
            )
            script.chmod(0o755)
        folders.append(folder)
    return folders


def read_front_matter(path: str | Path) -> dict[str, Any]:
    """The YAML front matter of a ``SKILL.md``."""
    import yaml

    text = Path(path).read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        raise ValueError(f"{path}: SKILL.md must start with a '---' front-matter line")
    end = text.find("\n---", 4)
    if end < 0:
        raise ValueError(f"{path}: front matter is not closed by a '---' line")
    data = yaml.safe_load(text[4:end])
    if not isinstance(data, dict):
        raise ValueError(f"{path}: front matter must be a YAML mapping")
    return data


def run_tool_cli(tool_name: str, argv: Sequence[str] | None = None, modules: Sequence[str] = ()) -> int:
    """Body of a skill script: run one glmkit tool from the command line and print a JSON result."""
    parser = argparse.ArgumentParser(
        prog=f"{tool_name}.py", description=f"Run the glmkit tool {tool_name!r}."
    )
    parser.add_argument(
        "arguments",
        nargs="?",
        default="{}",
        help="tool arguments as a JSON object ('-' reads stdin, @FILE a file)",
    )
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="ID=PATH",
        help="load an input image under ID; repeatable",
    )
    parser.add_argument("--out-dir", default="glmkit_outputs", help="where image outputs are saved")
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        print(json.dumps({"ok": False, "error": message}), file=sys.stdout)
        return 2

    try:
        for module in modules:
            importlib.import_module(module)
        from glmkit.agent.loop import resolve_tools

        tool = resolve_tools([tool_name])[tool_name]
    except Exception as exc:
        return fail(f"cannot load tool {tool_name!r}: {type(exc).__name__}: {exc}")
    raw = args.arguments
    if raw == "-":
        raw = sys.stdin.read()
    elif raw.startswith("@"):
        raw = Path(raw[1:]).read_text(encoding="utf-8")
    try:
        arguments = json.loads(raw)
    except ValueError as exc:
        return fail(f"arguments are not valid JSON: {exc}")
    if not isinstance(arguments, dict):
        return fail("arguments must be a JSON object")
    out_dir = Path(args.out_dir)
    context = ToolContext(workdir=out_dir)
    from glmkit.agent.mcp_server import load_image_source

    for spec in args.image:
        image_id, sep, source = spec.partition("=")
        if not sep or not image_id:
            return fail(f"--image expects ID=PATH, got {spec!r}")
        try:
            context.images[image_id] = load_image_source(source)
        except ToolError as exc:
            return fail(f"--image {image_id}: {exc}")
    result = tool(arguments, context)
    images = []
    if result.images:
        out_dir.mkdir(parents=True, exist_ok=True)
        for image_id, image in zip(result.image_ids, result.images, strict=False):
            path = out_dir / f"{image_id}.png"
            image.save(path, format="PNG")
            images.append({"id": image_id, "path": str(path)})
    payload = {
        "ok": result.ok,
        "text": result.text,
        "error": result.error,
        "images": images,
        "files": [str(f) for f in result.files],
        "data": result.data,
    }
    print(json.dumps(payload, ensure_ascii=False, default=str))
    return 0 if result.ok else 1


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
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE")
    args = parser.parse_args(argv)
    try:
        for module in args.imports:
            importlib.import_module(module)
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
        folders = export_skills(args.out_dir, bundles)
    except (ImportError, KeyError, ValueError) as exc:
        print(f"glmkit tools export-skills: {exc}", file=sys.stderr)
        return 2
    for folder in folders:
        print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
