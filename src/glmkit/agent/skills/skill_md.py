"""The ``SKILL.md`` format: front matter rules, the text generated from tool schemas, reading it back.

A skill is a folder an agent harness (Claude Code, Codex, OpenClaw, GLM's own skills) discovers by
its ``SKILL.md``: YAML front matter with ``name`` and ``description``, then instructions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from glmkit.agent.skills.examples import example_arguments, image_ids
from glmkit.tools.base import Tool

_SKILL_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
MAX_NAME = 64
MAX_DESCRIPTION = 1024


def validate_skill_name(name: str) -> str:
    """Return ``name`` if it is a valid skill name (lowercase letters, digits, single hyphens, <= 64)."""
    if len(name) > MAX_NAME or not _SKILL_NAME.match(name):
        raise ValueError(
            f"invalid skill name {name!r}: use lowercase letters, digits and single hyphens, "
            f"at most {MAX_NAME} characters (e.g. 'glmkit-vision')"
        )
    return name


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
        image_flags = "".join(f" --image {v}=path/to/image.png" for v in image_ids(args))
        lines += [
            "Example:",
            "",
            f"    python scripts/{tool.name}.py '{json.dumps(args, ensure_ascii=False)}'{image_flags}",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


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
