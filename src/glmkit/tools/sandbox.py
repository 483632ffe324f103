"""The ``python`` tool: run model-written code in a separate, limited process (GLM-5V report section 3.1).

In-process sandboxes (AST interpreters, restricted builtins) have a history of escapes, so the
code runs in a child interpreter (``python -I``) instead, started in its own session so that a
timeout kills the whole process group:

- **CPU time**: ``RLIMIT_CPU`` (SIGXCPU at the soft limit, SIGKILL one second later);
- **memory**: ``RLIMIT_AS`` (allocations beyond it raise ``MemoryError``); BLAS/OpenMP thread pools
  are pinned to one thread, because their per-thread arenas would otherwise exhaust the limit;
- **file size / open files / core dumps**: ``RLIMIT_FSIZE``, ``RLIMIT_NOFILE``, ``RLIMIT_CORE = 0``;
- **wall clock**: the parent kills the process group after ``wall_seconds``;
- **output**: stdout and stderr are captured up to a size cap (head and tail kept, with a note);
- **network**: when util-linux ``unshare`` can create a user + network namespace (probed once, see
  :func:`network_isolation`), the child runs in an empty network namespace: no interface but a
  down loopback. Otherwise it gets only an audit hook that refuses socket connects, binds, sends and
  name lookups, and also refuses starting programs (``subprocess``, ``os.system``, ``exec*``),
  which would escape the hook. The hook is installed in both modes so refusals read the same.
  Audit hooks are not a security boundary (``ctypes`` can call libc directly); the namespace is.

Files the code creates or changes in the working directory are returned, images among them as
images. Not provided: filesystem isolation beyond the working directory as cwd and HOME.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from glmkit.tools.base import TOOLS, Tool, ToolContext, ToolError, ToolResult, object_schema
from glmkit.tools.net import read_image_file

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp"})

# Runs inside the child: set limits, install the audit hook, read the code from stdin, execute it
# (echoing the value of a final expression, as a notebook would) and print a traceback without the
# bootstrap's own frame.
_BOOTSTRAP = r"""
import ast, os, resource, sys, traceback
cpu, mem, fsize, nofile, strict = (int(v) for v in sys.argv[1:6])
code = sys.stdin.read()
sys.stdin.close()
sys.stdin = open(os.devnull)

def _limit(kind, soft, hard):
    cur_soft, cur_hard = resource.getrlimit(kind)
    if cur_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, cur_hard), min(hard, cur_hard)
    resource.setrlimit(kind, (soft, hard))

_limit(resource.RLIMIT_CPU, cpu, cpu + 1)
_limit(resource.RLIMIT_AS, mem, mem)
_limit(resource.RLIMIT_FSIZE, fsize, fsize)
_limit(resource.RLIMIT_NOFILE, nofile, nofile)
_limit(resource.RLIMIT_CORE, 0, 0)

_NET = frozenset({"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
                  "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo"})
_SPAWN = frozenset({"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.forkpty",
                    "pty.spawn"})

def _hook(event, args, _net=_NET, _spawn=_SPAWN, _strict=bool(strict)):
    if event in _net:
        raise PermissionError("network access is disabled in the glmkit python sandbox (" + event + ")")
    if _strict and event in _spawn:
        raise PermissionError("starting programs is disabled in the glmkit python sandbox (" + event + ")")

sys.addaudithook(_hook)
del _hook, _limit
namespace = {"__name__": "__main__", "__builtins__": __builtins__}
try:
    tree = ast.parse(code, "<code>")
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<code>", "exec"), namespace)
    if last is not None:
        value = eval(compile(ast.Expression(last.value), "<code>", "eval"), namespace)
        if value is not None:
            print(repr(value))
except SystemExit:
    raise
except BaseException as exc:
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != "<code>":
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)
    sys.stderr.flush()
    os._exit(1)
"""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one ``python`` call."""

    cpu_seconds: int = 10
    wall_seconds: float = 20.0
    memory_mb: int = 1024
    max_output_chars: int = 20_000
    max_file_mb: int = 64
    max_open_files: int = 256
    max_returned_files: int = 20
    max_returned_images: int = 8
    max_image_pixels: int = 25_000_000


@dataclass
class SandboxRun:
    """What one execution produced."""

    status: str  # ok | error | timeout | cpu_limit | killed
    exit_code: int | None
    stdout: str
    stderr: str
    wall_seconds: float
    network_isolation: str
    files: list[Path] = field(default_factory=list)

    def summary(self, limits: SandboxLimits) -> str:
        """One status line for the model."""
        if self.status == "ok":
            return "[finished: exit code 0]"
        if self.status == "error":
            return f"[failed: exit code {self.exit_code}]"
        if self.status == "timeout":
            return f"[killed: wall-clock timeout after {self.wall_seconds:.1f} s]"
        if self.status == "cpu_limit":
            return f"[killed: CPU time limit of {limits.cpu_seconds} s reached]"
        return f"[killed by signal {-(self.exit_code or 0)} (memory exhausted or crashed)]"


@lru_cache(maxsize=1)
def _namespace_prefix() -> tuple[str, ...] | None:
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    # A user namespace first: then even a root parent gives the child no capability over the host
    # network namespace. Plain --net works only with real privileges.
    for flags in (("--user", "--map-root-user", "--net"), ("--net",)):
        command = (unshare, *flags, "--")
        try:
            probe = subprocess.run(
                [*command, sys.executable, "-I", "-c", "pass"], capture_output=True, timeout=20
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return command
    return None


def network_isolation() -> str:
    """``"namespace"`` when children get an empty network namespace, else ``"audit_hook"``."""
    return "namespace" if _namespace_prefix() is not None else "audit_hook"


class _CappedReader(threading.Thread):
    """Drains a pipe, keeping the first ``cap`` bytes and the last ``cap // 4`` bytes."""

    def __init__(self, stream: Any, cap: int) -> None:
        super().__init__(daemon=True)
        self.stream, self.cap = stream, cap
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def run(self) -> None:
        tail_cap = max(1, self.cap // 4)
        while chunk := self.stream.read1(65536):
            self.total += len(chunk)
            room = self.cap - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            if chunk:
                self.tail = (self.tail + chunk)[-tail_cap:]

    def text(self) -> str:
        head = self.head.decode("utf-8", errors="replace")
        if self.total <= len(self.head):
            return head
        skipped = self.total - len(self.head) - len(self.tail)
        tail = self.tail.decode("utf-8", errors="replace")
        note = f"\n[... output truncated: {skipped} bytes omitted ...]\n" if skipped > 0 else ""
        return head + note + tail


def _snapshot(root: Path) -> dict[Path, tuple[int, int]]:
    state = {}
    for path in root.rglob("*"):
        try:
            info = path.lstat()
        except OSError:
            continue
        if path.is_file() and not path.is_symlink():
            state[path] = (info.st_mtime_ns, info.st_size)
    return state


def _exited(pid: int) -> bool:
    # WNOWAIT leaves the zombie in place, so its pid (and process-group id) cannot be reused
    # before we have killed the group.
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


ISOLATION_MODES = ("auto", "namespace", "audit_hook")


def run_python(
    code: str, workdir: Path, limits: SandboxLimits | None = None, isolation: str = "auto"
) -> SandboxRun:
    """Execute ``code`` in a limited child interpreter with ``workdir`` as cwd and HOME.

    ``isolation`` picks the network barrier: ``"auto"`` (a namespace when available),
    ``"namespace"`` (required; an error when unavailable) or ``"audit_hook"`` (hook only).
    """
    limits = limits or SandboxLimits()
    if isolation not in ISOLATION_MODES:
        raise ToolError(f"unknown isolation {isolation!r}; use one of {', '.join(ISOLATION_MODES)}")
    prefix = _namespace_prefix() if isolation != "audit_hook" else None
    if isolation == "namespace" and prefix is None:
        raise ToolError(
            "network namespaces are unavailable here (util-linux unshare missing or not permitted)"
        )
    mode = "namespace" if prefix is not None else "audit_hook"
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    before = _snapshot(workdir)
    args = [
        str(limits.cpu_seconds),
        str(limits.memory_mb * 1024 * 1024),
        str(limits.max_file_mb * 1024 * 1024),
        str(limits.max_open_files),
        "0" if prefix is not None else "1",
    ]
    env = {
        "PATH": os.defpath,
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "PYTHONDONTWRITEBYTECODE": "1",
        **dict.fromkeys(
            ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"), "1"
        ),
    }
    start = time.monotonic()
    proc = subprocess.Popen(
        [*(prefix or ()), sys.executable, "-I", "-c", _BOOTSTRAP, *args],
        cwd=workdir,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        close_fds=True,
    )
    cap = limits.max_output_chars
    readers = [_CappedReader(proc.stdout, cap), _CappedReader(proc.stderr, cap)]
    for reader in readers:
        reader.start()
    stdin = proc.stdin
    assert stdin is not None
    with contextlib.suppress(BrokenPipeError):  # the child may die before reading its code
        stdin.write(code.encode("utf-8"))
    with contextlib.suppress(BrokenPipeError):
        stdin.close()
    timed_out = False
    while not _exited(proc.pid):
        if time.monotonic() - start > limits.wall_seconds:
            timed_out = True
            break
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError, PermissionError):  # also ends what the code left running
        os.killpg(proc.pid, signal.SIGKILL)
    exit_code = proc.wait()
    wall = time.monotonic() - start
    for reader in readers:
        reader.join(timeout=5)
    if timed_out:
        status = "timeout"
    elif exit_code == 0:
        status = "ok"
    elif exit_code == -signal.SIGXCPU or (exit_code == -signal.SIGKILL and wall >= limits.cpu_seconds):
        status = "cpu_limit"
    elif exit_code < 0:
        status = "killed"
    else:
        status = "error"
    after = _snapshot(workdir)
    changed = sorted(p for p, state in after.items() if before.get(p) != state)
    return SandboxRun(
        status=status,
        exit_code=exit_code,
        stdout=readers[0].text(),
        stderr=readers[1].text(),
        wall_seconds=wall,
        network_isolation=mode,
        files=changed,
    )


@TOOLS.register("python")
class PythonTool(Tool):
    """Run Python code in a sandboxed child process; files it writes come back as results."""

    name = "python"
    description = (
        "Run Python 3 code in a fresh, sandboxed process with no network access and CPU, memory and time "
        "limits. Print what you want to see; the value of a final expression is printed too. The working "
        "directory persists between calls of this conversation; files you create there are returned "
        "(images as images). numpy, PIL and matplotlib (Agg backend) are available."
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
        self.isolation = isolation

    def run(self, context: ToolContext, code: str, timeout_s: float | None = None, **_: Any) -> ToolResult:
        """Execute ``code`` and report output, status, new files and images."""
        limits = self.limits
        if timeout_s is not None:
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
            listed = ", ".join(str(p.relative_to(workdir)) for p in files)
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
                "wall_seconds": round(result.wall_seconds, 3),
                "workdir": str(workdir),
            },
        )
