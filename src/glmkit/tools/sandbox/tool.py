"""The ``python`` tool: model-written code through :func:`~glmkit.tools.sandbox.runner.run_python`,
written files and images returned (GLM-5V report section 3.1)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from glmkit.tools.base import TOOLS, Tool, ToolContext, ToolError, ToolResult, display_path, object_schema
from glmkit.tools.decode import IMAGE_SUFFIXES, read_image_file
from glmkit.tools.sandbox.limits import SandboxLimits
from glmkit.tools.sandbox.runner import ISOLATION_MODES, run_python


@TOOLS.register("python")
class PythonTool(Tool):
    """Run Python code in a sandboxed child process; files it writes come back as results.

    The working directory is the context's scratch directory, so by default its files persist
    between calls of one conversation (one :class:`ToolContext`). With ``per_call_dir=True`` every
    call starts in a fresh, empty subdirectory ``python_<n>`` of it instead, and the description the
    model reads says so.

    Args:
        limits: resource limits (:class:`SandboxLimits`); a call's ``timeout_s`` can only lower the
            wall-clock limit.
        per_call_dir: a fresh working directory for every call instead of a persistent one.
        isolation: ``"auto"``, ``"bubblewrap"``, ``"namespace"`` or ``"audit_hook"`` (see
            :func:`run_python`); ``data["sandbox"]`` of each result says which mechanism ran.
    """

    name = "python"
    description = (
        "Run Python 3 code in a fresh, sandboxed process with no network access and CPU, memory and time "
        "limits. Print what you want to see; the value of a final expression is printed too. The working "
        "directory persists between calls of this conversation; files you create there are returned "
        "(images as images). numpy, PIL and matplotlib (Agg backend) are available."
    )
    per_call_description = description.replace(
        "The working directory persists between calls of this conversation;",
        "Every call starts in a new, empty working directory (nothing persists between calls);",
    )
    parameters = object_schema(
        {
            "code": {
                "type": "string",
                "minLength": 1,
                "maxLength": 200_000,
                "description": "Python source to run.",
            },
            "timeout_s": {
                "type": "number",
                "exclusiveMinimum": 0,
                "description": "Wall-clock limit in seconds (capped by the tool's configured limit).",
            },
        },
        required=("code",),
    )

    def __init__(
        self, limits: SandboxLimits | None = None, per_call_dir: bool = False, isolation: str = "auto"
    ) -> None:
        if isolation not in ISOLATION_MODES:
            raise ValueError(f"unknown isolation {isolation!r}; use one of {', '.join(ISOLATION_MODES)}")
        self.limits = limits or SandboxLimits()
        self.per_call_dir = per_call_dir
        if per_call_dir:  # the model must not be told that its files persist
            self.description = self.per_call_description  # type: ignore[misc]
        self.isolation = isolation

    def run(self, context: ToolContext, code: str, timeout_s: float | None = None, **_: Any) -> ToolResult:
        """Execute ``code`` and report output, status, new files and images."""
        limits = self.limits
        if timeout_s is not None:
            if not math.isfinite(timeout_s):  # min(nan, limit) is nan, and nothing exceeds nan
                raise ToolError(f"python: timeout_s must be a finite number of seconds, got {timeout_s}")
            limits = replace(limits, wall_seconds=min(float(timeout_s), limits.wall_seconds))
        workdir = context.scratch_dir()
        if self.per_call_dir:
            index = 0
            while (workdir / f"python_{index}").exists():
                index += 1
            workdir = workdir / f"python_{index}"
        result = run_python(code, workdir, limits, self.isolation)
        files = result.files[: limits.max_returned_files]
        images, notes = [], []
        for path in files:
            if path.suffix.lower() in IMAGE_SUFFIXES and len(images) < limits.max_returned_images:
                try:
                    images.append(read_image_file(path, limits.max_image_pixels))
                except (ToolError, OSError) as exc:
                    notes.append(f"{path.name}: not returned as an image ({exc})")
        parts = [result.summary(limits)]
        if result.stdout:
            parts.append("--- stdout ---\n" + result.stdout.rstrip("\n"))
        if result.stderr:
            parts.append("--- stderr ---\n" + result.stderr.rstrip("\n"))
        if files:
            listed = ", ".join(display_path(p.relative_to(workdir)) for p in files)
            extra = len(result.files) - len(files)
            parts.append(f"Files written: {listed}" + (f" (and {extra} more)" if extra > 0 else ""))
        parts.extend(notes)
        return ToolResult(
            text="\n".join(parts),
            images=images,
            files=files,
            data={
                "status": result.status,
                "exit_code": result.exit_code,
                "network_isolation": result.network_isolation,
                "process_isolation": result.process_isolation,
                "user_isolation": result.user_isolation,
                "sandbox": result.sandbox,
                "filesystem_isolation": result.filesystem_isolation,
                "wall_seconds": round(result.wall_seconds, 3),
                "workdir": str(workdir),
            },
        )
