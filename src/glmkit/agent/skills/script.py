"""The body of a generated skill script: run one glmkit tool from the command line, print one JSON object.

The tool's arguments come as one JSON object, input images as ``--image ID=PATH``; image outputs are
saved as PNGs under new names (an earlier run's file is never overwritten).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from glmkit.tools.base import Tool, ToolContext, ToolError

if TYPE_CHECKING:
    from PIL import Image


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
        from glmkit.tools import resolve_tools

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
