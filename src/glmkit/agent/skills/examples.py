"""Example arguments for a tool, generated from its JSON schema and checked against the tool.

``SKILL.md`` shows one example call per tool; an example must pass the tool's schema, and a
concrete one on input images is also run on blank images (:func:`example_arguments`).
"""

from __future__ import annotations

import copy
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from glmkit.tools.base import Tool, ToolContext, ToolError

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


def is_concrete(value: Any) -> bool:
    """True when ``value`` holds no ``<placeholder>`` string."""
    if isinstance(value, str):
        return not _PLACEHOLDER.match(value)
    if isinstance(value, Mapping):
        return all(is_concrete(v) for v in value.values())
    if isinstance(value, list):
        return all(is_concrete(v) for v in value)
    return True


def image_ids(arguments: Mapping[str, Any]) -> list[str]:
    """The image ids an example refers to (top-level ``img_N`` strings), each once."""
    ids = [v for v in arguments.values() if isinstance(v, str) and re.fullmatch(r"img_\d+", v)]
    return list(dict.fromkeys(ids))


def _dry_run(tool: Tool, arguments: dict[str, Any]) -> str | None:
    """Run ``tool`` on blank input images in a temporary folder; the error, or ``None`` when it worked."""
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="glmkit-skill-example-") as tmp:
        context = ToolContext(workdir=Path(tmp))
        for image_id in image_ids(arguments):
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
        if not (run and is_concrete(args) and image_ids(args)) or _dry_run(tool, args) is None:
            return args
    if not valid:
        raise ValueError(
            f"cannot generate a valid example for tool {tool.name!r} ({problems[0]}); add an 'examples' "
            "entry to the schema of that argument"
        )
    return valid[0]
