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
import copy
import importlib
import json
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glmkit.tools.base import Tool, ToolContext, ToolError

if TYPE_CHECKING:
    from PIL import Image

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


# A string example in angle brackets is a placeholder the agent replaces; anything else is concrete.
_PLACEHOLDER = re.compile(r"^<[^<>]*>$")


def _string_example(schema: Mapping[str, Any], name: str) -> str:
    text = (name + " " + str(schema.get("description", ""))).lower()
    if "image" in text and "id" in text:
        return "img_0"
    if schema.get("format") in ("uri", "url") or name.lower().endswith("url"):
        value = "<https://...>"
    else:
        value = f"<{name or 'text'}>"
    low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
    if len(value) < low:  # keep it a visible placeholder, just long enough for the schema
        value = value[:-1] + "." * (low - len(value)) + ">"
    if high is not None and len(value) > int(high):
        value = value[: int(high) - 1] + ">" if int(high) >= 3 else "x" * int(high)
    return value


def _number_list(schema: Mapping[str, Any], count: int, offset: int) -> list[int]:
    # Increasing values make a valid box [x1, y1, x2, y2] or point [x, y]; ``offset`` keeps the
    # points of a path apart (a line needs two different points).
    items = schema.get("items") if isinstance(schema.get("items"), Mapping) else {}
    values = [100 * (i + 1) + 50 * offset for i in range(count)]
    if "maximum" in items:
        values = [min(v, items["maximum"]) for v in values]
    return values


def example_value(schema: Mapping[str, Any], name: str = "", variant: int = 0, offset: int = 0) -> Any:
    """A plausible value for one argument, from its schema (``examples``, ``default``, ``enum``, type).

    ``variant`` (0, 1, 2, ...) picks later ``enum`` members and longer arrays, so that a caller can try
    a few candidates when the first is rejected by the tool's own checks.
    """
    if isinstance(schema.get("examples"), list) and schema["examples"]:
        return copy.deepcopy(schema["examples"][min(variant, len(schema["examples"]) - 1)])
    for key in ("default", "const"):
        if key in schema:
            return copy.deepcopy(schema[key])
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][min(variant, len(schema["enum"]) - 1)]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "string":
        return _string_example(schema, name)
    if kind in ("integer", "number"):
        low = schema.get("minimum", 1)
        return low if kind == "integer" else float(low)
    if kind == "boolean":
        return True
    if kind == "array":
        items = schema.get("items") if isinstance(schema.get("items"), Mapping) else {}
        count = int(schema.get("minItems", 1))
        if items.get("type") in ("integer", "number"):
            return _number_list(schema, count, offset)
        if items.get("type") == "array":
            count = max(count, 2)  # a list of points or boxes: a path needs at least two
        count += variant
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        return [example_value(items, name, variant, offset=i) for i in range(count)]
    if kind == "object":
        props = schema.get("properties") or {}
        required = schema.get("required") or ()
        return {k: example_value(v, k, variant, offset) for k, v in props.items() if k in required}
    return f"<{name or 'value'}>"


def _is_concrete(value: Any) -> bool:
    """True when ``value`` holds no ``<placeholder>`` string."""
    if isinstance(value, str):
        return not _PLACEHOLDER.match(value)
    if isinstance(value, Mapping):
        return all(_is_concrete(v) for v in value.values())
    if isinstance(value, list):
        return all(_is_concrete(v) for v in value)
    return True


def _image_ids(arguments: Mapping[str, Any]) -> list[str]:
    """The image ids an example refers to (top-level ``img_N`` strings), each once."""
    ids = [v for v in arguments.values() if isinstance(v, str) and re.fullmatch(r"img_\d+", v)]
    return list(dict.fromkeys(ids))


def _dry_run(tool: Tool, arguments: dict[str, Any]) -> str | None:
    """Run ``tool`` on blank input images in a temporary folder; the error, or ``None`` when it worked."""
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="glmkit-skill-example-") as tmp:
        context = ToolContext(workdir=Path(tmp))
        for image_id in _image_ids(arguments):
            context.images[image_id] = Image.new("RGB", (64, 64), (128, 128, 128))
        return tool(copy.deepcopy(arguments), context).error


def example_arguments(tool: Tool, run: bool = False, variants: int = 3) -> dict[str, Any]:
    """Example arguments for ``tool``: every required argument, from the schema.

    The example must pass the tool's schema (else :class:`ValueError`: add ``examples`` to the
    argument's schema). With ``run``, a concrete example on input images is also run on blank
    64x64 images; the first of ``variants`` candidates the tool accepts is returned. When the tool
    fails for every candidate (e.g. it needs a search index this machine lacks), the first
    schema-valid candidate is kept.
    """
    schema = tool.parameters or {}
    props = schema.get("properties") or {}
    candidates: list[dict[str, Any]] = []
    for variant in range(max(1, variants)):
        args = {k: example_value(props[k], k, variant) for k in schema.get("required") or () if k in props}
        if args not in candidates:
            candidates.append(args)
    valid, problems = [], []
    for args in candidates:
        try:
            tool.validate(args)
        except ToolError as exc:
            problems.append(str(exc))
            continue
        valid.append(args)
        # Only concrete examples on input images are run: placeholders cannot run, and a tool
        # without image inputs may have side effects (a browser, a sandbox) that export must not cause.
        if not (run and _is_concrete(args) and _image_ids(args)) or _dry_run(tool, args) is None:
            return args
    if not valid:
        raise ValueError(
            f"cannot generate a valid example for tool {tool.name!r} ({problems[0]}); add an 'examples' "
            "entry to the schema of that argument"
        )
    return valid[0]


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


def render_skill_md(
    name: str, description: str, tools: Sequence[Tool], instructions: str = "", run_examples: bool = True
) -> str:
    """The text of ``SKILL.md``: front matter, usage, one section per tool.

    Every example call is checked against its tool (see :func:`example_arguments`; ``run_examples``
    also runs the concrete ones on blank images).
    """
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
        "- File paths in the arguments are relative to the folder you run the script from.",
        "- Output: one JSON object on stdout with `ok`, `text`, `error`, `images` (id and PNG path of each "
        "new image, saved in `--out-dir`, default `./glmkit_outputs`), `files` and `data`.",
        "- Every run starts afresh: image ids count from the `--image` inputs again, but each new image is "
        "saved under a new file name, so to use an earlier output pass its path with `--image`.",
        "- In the examples, values in angle brackets (`<query>`) are placeholders to replace; "
        "`path/to/image.png` stands for your image.",
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
        args = example_arguments(tool, run=run_examples)
        image_flags = "".join(f" --image {v}=path/to/image.png" for v in _image_ids(args))
        lines += [
            "Example:",
            "",
            f"    python scripts/{tool.name}.py '{json.dumps(args, ensure_ascii=False)}'{image_flags}",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


# The header line marks a script as glmkit's own, so a re-export may replace or remove it; files
# without it (an agent's or a user's own scripts) are never touched.
_GENERATED = "# Generated by glmkit.agent.skills (glmkit tools export-skills); a re-export replaces it."
_SCRIPT = '''#!/usr/bin/env python3
{marker}
"""Run the glmkit tool {tool!r} (skill {skill!r}); generated by glmkit.agent.skills.

Usage: python {filename} '<JSON arguments>' [--image ID=PATH ...] [--out-dir DIR]
"""

import sys

from glmkit.agent.skills import run_tool_cli

if __name__ == "__main__":
    sys.exit(run_tool_cli({tool!r}, sys.argv[1:], modules={modules!r}))
'''


def is_generated_script(path: str | Path) -> bool:
    """True when ``path`` is a skill script glmkit wrote (this version's header or an older export's)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    # Older exports had no header line but always this docstring phrase and this import.
    return (_GENERATED in head or "generated by glmkit.agent.skills" in head) and (
        "from glmkit.agent.skills import run_tool_cli" in head
    )


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


# Abbreviations whose full stop does not end a sentence, even before a capital ("e.g. GIF").
_ABBREVIATIONS = frozenset({"e.g", "i.e", "cf", "vs", "approx", "incl", "fig", "eq", "no", "resp", "w.r.t"})
_SENTENCE_END = re.compile(r"[.!?](?=\s+[A-Z0-9\"'(`])")


def first_sentence(text: str) -> str:
    """The first sentence of ``text`` (whitespace collapsed), ending with its punctuation.

    A sentence ends at ``.``, ``!`` or ``?`` followed by a space and a capital letter or digit, except
    after an abbreviation such as "e.g." or "i.e." or a single-letter initial.
    """
    text = " ".join(text.split())
    for match in _SENTENCE_END.finditer(text):
        word = text[: match.start()].rsplit(" ", 1)[-1].lower().lstrip("(\"'")
        if match.group() == "." and (word in _ABBREVIATIONS or re.fullmatch(r"[a-z]", word)):
            continue
        return text[: match.end()]
    return text if not text or text[-1] in ".!?" else text + "."


def _first_sentence(tool: Tool) -> str:
    return first_sentence(tool.description)


def export_skills(
    out_dir: str | Path,
    bundles: Sequence[SkillBundle] | Mapping[str, Sequence[Tool | str]],
    run_examples: bool = True,
) -> list[Path]:
    """Write one skill folder per bundle under ``out_dir``; return the folders.

    ``bundles`` is a list of :class:`SkillBundle` or a mapping skill name -> tools (instances or
    registered names). ``SKILL.md`` and the scripts of the bundle's tools are overwritten; scripts an
    earlier export wrote for tools no longer in the bundle are removed (other files are kept).
    ``run_examples`` checks the ``SKILL.md`` examples on blank images (see :func:`example_arguments`).
    """
    if isinstance(bundles, Mapping):
        bundles = [SkillBundle(name, list(tools)) for name, tools in bundles.items()]
    resolved = [_resolve_bundle(b) for b in bundles]  # validate everything before writing
    texts = [
        render_skill_md(skill.name, skill.description, skill.tools, skill.instructions, run_examples)
        for skill in resolved
    ]
    out = Path(out_dir)
    folders = []
    for skill, md in zip(resolved, texts, strict=True):
        folder = out / skill.name
        scripts = folder / "scripts"
        scripts.mkdir(parents=True, exist_ok=True)
        wanted = {f"{tool.name}.py" for tool in skill.tools}
        for stale in sorted(scripts.glob("*.py")):
            if stale.name not in wanted and is_generated_script(stale):
                stale.unlink()
        (folder / "SKILL.md").write_text(md, encoding="utf-8")
        for tool in skill.tools:
            modules = [type(tool).__module__] if type(tool).__module__ != "__main__" else []
            script = scripts / f"{tool.name}.py"
            script.write_text(
                _SCRIPT.format(
                    marker=_GENERATED,
                    tool=tool.name,
                    skill=skill.name,
                    filename=f"scripts/{tool.name}.py",
                    modules=modules,
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


def save_new_png(image: Image.Image, out_dir: Path, stem: str) -> Path:
    """Save ``image`` as ``<stem>.png`` in ``out_dir``, or ``<stem>-<n>.png`` when that exists; the path.

    Every run of a skill script starts a fresh context, so image ids repeat across runs; an earlier
    run's file (whose path the agent already holds) must never be overwritten. The name is claimed
    with an exclusive create, so two scripts running at once cannot pick the same one.
    """
    for n in range(100_000):
        path = out_dir / (f"{stem}.png" if n == 0 else f"{stem}-{n}.png")
        try:
            with open(path, "xb") as handle:
                image.save(handle, format="PNG")
        except FileExistsError:
            continue
        return path
    raise ToolError(f"no free file name for {stem}.png in {out_dir}")


# Constructor attributes of tools that read files, listing the directories they may read from.
_READ_ROOTS = ("video_dirs",)


def _allow_cwd(tool: Tool) -> None:
    """Let a file-reading tool read the folder the script runs in (not only its ``--out-dir``).

    Run by an agent, a skill script's "working directory" is the current directory: that is where
    the agent's files are (draw_video_objects_tracking reads an animated image file from there).
    """
    for attr in _READ_ROOTS:
        roots = getattr(tool, attr, None)
        if isinstance(roots, list):
            setattr(tool, attr, [*roots, Path.cwd()])


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
    _allow_cwd(tool)
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
            path = save_new_png(image, out_dir, image_id)
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
    parser.add_argument(
        "--no-run-examples",
        dest="run_examples",
        action="store_false",
        help="check the SKILL.md examples against the schemas only, without running tools on blank images",
    )
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
        folders = export_skills(args.out_dir, bundles, run_examples=args.run_examples)
    except (ImportError, KeyError, ValueError) as exc:
        print(f"glmkit tools export-skills: {exc}", file=sys.stderr)
        return 2
    for folder in folders:
        print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
