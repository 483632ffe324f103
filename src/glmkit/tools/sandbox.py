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
  name lookups. The hook is installed in both modes so refusals read the same. Audit hooks are not
  a security boundary (``ctypes`` can call libc directly); the namespace is.
- **processes** (see :func:`process_isolation`): a process that forks and calls ``setsid()``
  leaves the process group, so killing the group alone would let it outlive the call. Where
  ``unshare`` can also create a PID namespace, the child runs as that namespace's init and the
  code in a child of it; when the code ends or the call is killed, the init exits and the kernel
  kills every process left in the namespace. ``RLIMIT_NPROC`` (``max_processes``) then bounds
  fork bombs: inside a user namespace it counts the sandbox's own tasks (threads included), not
  all of the user's. Without a PID namespace the audit hook instead refuses ``os.fork``/``os.forkpty``
  and starting programs (``subprocess``, ``os.system``, ``exec*``, ``posix_spawn``,
  ``multiprocessing``), which would escape both the hook and the wall-clock kill; no
  ``RLIMIT_NPROC`` is set there for an ordinary host user, because outside a user namespace it
  counts every process of the user.
- **user** (see :func:`user_isolation`): when glmkit runs as root, the code must not run as host
  root (write access to the whole filesystem, and the kernel exempts root from ``RLIMIT_NPROC``).
  The child then switches to an unprivileged uid/gid (``SandboxLimits.run_as_uid``/``run_as_gid``,
  default nobody/nogroup 65534) with util-linux ``setpriv`` (no supplementary groups,
  ``no_new_privs`` so setuid programs cannot raise it back), after root has created the network and
  PID namespaces (a user namespace is not needed then). The working directory is chowned to that
  uid. Where the interpreter or the working directory cannot be reached by that uid (a Python
  under a ``0700`` ``/root``, a scratch directory under a ``0700`` temporary directory), the child
  keeps exactly one capability, ``CAP_DAC_READ_SEARCH``: it can then read every file, as before,
  but writes only where the uid may. ``RLIMIT_NPROC`` applies to the unprivileged uid and counts
  all of its processes on the host, so concurrent sandboxes share ``max_processes`` unless each
  worker uses its own uid. Without ``setpriv`` the code still runs as root (``"root"``).

Files the code creates or changes in the working directory are returned, images among them as
images. Not provided: filesystem isolation beyond the working directory as cwd and HOME, and
beyond the unprivileged uid's own permissions when glmkit runs as root.
"""

from __future__ import annotations

import codecs
import contextlib
import math
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

from glmkit.tools.base import TOOLS, Tool, ToolContext, ToolError, ToolResult, display_path, object_schema
from glmkit.tools.net import read_image_file

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp"})

# Runs inside the child: read the code from stdin, set limits, act as init when it is alone in a PID
# namespace, install the audit hook, execute the code (echoing the value of a final expression, as a
# notebook would) and print a traceback without the bootstrap's own frames.
_BOOTSTRAP = r"""
import ast, os, resource, sys, traceback
cpu, mem, fsize, nofile, nproc, strict, status_fd = (int(v) for v in sys.argv[1:8])
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
if nproc > 0:
    _limit(resource.RLIMIT_NPROC, nproc, nproc)

if os.getpid() == 1:
    # Init of a fresh PID namespace. The kernel drops signals to an init that has no handler for
    # them (SIGXCPU, a self-kill), so the code runs in a child and this process only reports the
    # child's wait status on status_fd (unshare's own relaying of a signal death is unreliable).
    # When it exits, the kernel kills every process left in the namespace.
    child = os.fork()
    if child:
        while True:
            pid, status = os.wait()  # also reaps orphans the code left behind
            if pid == child:
                break
        try:
            os.write(status_fd, str(status).encode())
        finally:
            os._exit(0)
os.close(status_fd)

_NET = frozenset({"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
                  "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo"})
_SPAWN = frozenset({"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                    "os.forkpty", "pty.spawn"})

def _hook(event, args, _net=_NET, _spawn=_SPAWN, _strict=bool(strict)):
    if event in _net:
        raise PermissionError("network access is disabled in the glmkit python sandbox (" + event + ")")
    if _strict and event in _spawn:
        raise PermissionError("starting processes is disabled in the glmkit python sandbox (" + event + ")")

if strict:
    # multiprocessing's spawn and forkserver call this directly, without an audit event.
    import _posixsubprocess

    def _fork_exec(*args, **kwargs):
        raise PermissionError("starting processes is disabled in the glmkit python sandbox (fork_exec)")

    _posixsubprocess.fork_exec = _fork_exec
    del _fork_exec, _posixsubprocess
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
    report = traceback.TracebackException(type(exc), exc, tb)
    # The audit hook's frame is the sandbox's, not the code's.
    report.stack = traceback.StackSummary.from_list([f for f in report.stack if f.filename != "<string>"])
    sys.stderr.write("".join(report.format()))
    for stream in (sys.stdout, sys.stderr):  # os._exit skips the flush; what was printed must come back
        try:
            stream.flush()
        except Exception:
            pass
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
    max_processes: int = 64  # RLIMIT_NPROC: in a user namespace or as run_as_uid (see the module docstring)
    run_as_uid: int = 65534  # used only when glmkit runs as root (nobody)
    run_as_gid: int = 65534  # nogroup
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
    process_isolation: str = "audit_hook"
    user_isolation: str = "host_user"  # see user_isolation()

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


# Tried in order; the first that runs a trivial program wins. A user namespace comes first: then
# even a root parent gives the child no capability over the host's namespaces. --kill-child makes
# unshare's death (the wall-clock kill) kill the namespace's init, and with it the namespace;
# --mount-proc (refused in some containers) shows the code only its own processes.
_NAMESPACE_FLAGS = (
    ("--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"),
    ("--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child"),
    ("--user", "--map-root-user", "--net"),
    ("--net", "--pid", "--fork", "--kill-child"),
    ("--net",),
)
_ROOT_NAMESPACE_FLAGS = (("--net", "--pid", "--fork", "--kill-child", "--mount-proc"), *_NAMESPACE_FLAGS[3:])
_READ_SEARCH = "dac_read_search"


@lru_cache(maxsize=8)
def _drop_commands(uid: int, gid: int) -> dict[str, tuple[str, ...]]:
    """``setpriv`` prefixes that switch root to ``uid:gid`` and work here, by user-isolation mode.

    ``"dropped"`` keeps no capability; ``"dropped_read_all"`` keeps ``CAP_DAC_READ_SEARCH`` for an
    interpreter or working directory the uid cannot reach. Each is probed once: the interpreter must
    start under it and find its own installation (``sys.prefix``).
    """
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        return {}
    base = (setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs")
    keep = f"-all,+{_READ_SEARCH}"
    variants = {
        "dropped": (*base, "--inh-caps=-all", "--bounding-set=-all", "--"),
        "dropped_read_all": (
            *base,
            f"--inh-caps={keep}",
            f"--ambient-caps={keep}",
            f"--bounding-set={keep}",
            "--",
        ),
    }
    working = {}
    for mode, command in variants.items():
        try:
            probe = subprocess.run(
                [*command, sys.executable, "-I", "-c", "import sys; print(sys.prefix)"],
                capture_output=True,
                timeout=20,
                cwd="/",
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0 and probe.stdout.decode(errors="replace").strip() == sys.prefix:
            working[mode] = command
    return working


def _searchable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether ``uid:gid`` (no capabilities, no supplementary groups) can traverse every parent of ``path``."""
    for parent in path.parents:
        info = parent.stat()
        if info.st_uid == uid:
            bit = 0o100
        elif info.st_gid == gid:
            bit = 0o010
        else:
            bit = 0o001
        if not info.st_mode & bit:
            return False
    return True


def _user_plan(limits: SandboxLimits, workdir: Path | None) -> tuple[str, tuple[str, ...]]:
    """The user-isolation mode and the ``setpriv`` prefix (empty when none) for one call."""
    if os.geteuid() != 0:
        return "host_user", ()
    commands = _drop_commands(limits.run_as_uid, limits.run_as_gid)
    reachable = workdir is None or _searchable_by(workdir, limits.run_as_uid, limits.run_as_gid)
    for mode in ("dropped", "dropped_read_all") if reachable else ("dropped_read_all",):
        if mode in commands:
            return mode, commands[mode]
    return "root", ()


def user_isolation(limits: SandboxLimits | None = None) -> str:
    """Who runs the code: ``"host_user"`` (glmkit is not root), ``"dropped"`` / ``"dropped_read_all"``
    (root switched to ``run_as_uid``, the latter able to read every file) or ``"root"`` (no ``setpriv``).

    For a working directory the uid cannot reach, a call reports ``"dropped_read_all"`` instead of
    ``"dropped"`` (``SandboxRun.user_isolation``).
    """
    return _user_plan(limits or SandboxLimits(), None)[0]


@lru_cache(maxsize=2)
def _namespace_prefix(user_namespace: bool = True) -> tuple[str, ...] | None:
    # Without a user namespace (root switching to an unprivileged uid afterwards) root itself creates
    # the namespaces; a user namespace mapping only root would make that switch impossible.
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    for flags in _NAMESPACE_FLAGS if user_namespace else _ROOT_NAMESPACE_FLAGS:
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


def _default_prefix() -> tuple[str, ...] | None:
    return _namespace_prefix(user_namespace=user_isolation() in ("host_user", "root"))


def network_isolation() -> str:
    """``"namespace"`` when children get an empty network namespace, else ``"audit_hook"``."""
    return "namespace" if _default_prefix() is not None else "audit_hook"


def process_isolation() -> str:
    """``"pid_namespace"`` when the code's descendants die with it, else ``"audit_hook"`` (no forking)."""
    prefix = _default_prefix()
    return "pid_namespace" if prefix is not None and "--pid" in prefix else "audit_hook"


class _CappedReader(threading.Thread):
    """Drains a pipe, keeping the first ``cap`` characters and the last ``cap // 4``.

    Bytes are kept with room for 4-byte UTF-8 characters and cut to whole characters when decoded,
    so CJK output is capped by characters as advertised and never split mid-character.
    """

    def __init__(self, stream: Any, cap: int) -> None:
        super().__init__(daemon=True)
        self.stream, self.cap = stream, cap
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def run(self) -> None:
        head_cap, tail_cap = 4 * self.cap, 4 * max(1, self.cap // 4)
        while chunk := self.stream.read1(65536):
            self.total += len(chunk)
            room = head_cap - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            if chunk:
                self.tail = (self.tail + chunk)[-tail_cap:]

    def text(self) -> str:
        head_bytes = bytes(self.head)
        if self.total <= len(head_bytes):  # everything was kept
            text = head_bytes.decode("utf-8", errors="replace")
            if len(text) <= self.cap:
                return text
            head, rest = text[: self.cap], text[self.cap :]
            tail = rest[-max(1, self.cap // 4) :]
        else:
            # final=False drops a character cut at the end; the tail starts at a character boundary
            head = codecs.getincrementaldecoder("utf-8")("replace").decode(head_bytes)[: self.cap]
            tail_bytes = bytes(self.tail).lstrip(bytes(range(0x80, 0xC0)))
            tail = tail_bytes.decode("utf-8", errors="replace")[-max(1, self.cap // 4) :]
        omitted = self.total - len(head.encode("utf-8", "replace")) - len(tail.encode("utf-8", "replace"))
        if omitted <= 0:
            return head + tail
        return f"{head}\n[... output truncated: {omitted} bytes omitted ...]\n{tail}"


MAX_SNAPSHOT_ENTRIES = 20_000  # the walk runs outside the wall-clock limit: bound it


def _snapshot(root: Path) -> tuple[dict[Path, tuple[int, int]], bool]:
    """(mtime, size) of every regular file under ``root``, and whether the walk saw every entry."""
    state = {}
    for count, path in enumerate(root.rglob("*")):
        if count >= MAX_SNAPSHOT_ENTRIES:
            return state, False
        try:
            info = path.lstat()
        except OSError:
            continue
        if path.is_file() and not path.is_symlink():
            state[path] = (info.st_mtime_ns, info.st_size)
    return state, True


def _exited(pid: int) -> bool:
    # WNOWAIT leaves the zombie in place, so its pid (and process-group id) cannot be reused
    # before we have killed the group.
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _read_status(fd: int) -> int | None:
    """The exit code a PID-namespace init wrote to ``fd`` (closed here), or None if it wrote none."""
    try:
        os.set_blocking(fd, False)
        raw = os.read(fd, 64)
    except (BlockingIOError, OSError):
        raw = b""
    finally:
        os.close(fd)
    try:
        return os.waitstatus_to_exitcode(int(raw)) if raw else None
    except ValueError:
        return None


ISOLATION_MODES = ("auto", "namespace", "audit_hook")


def run_python(
    code: str, workdir: Path, limits: SandboxLimits | None = None, isolation: str = "auto"
) -> SandboxRun:
    """Execute ``code`` in a limited child interpreter with ``workdir`` as cwd and HOME.

    ``isolation`` picks the barrier: ``"auto"`` (namespaces when available), ``"namespace"``
    (required; an error when unavailable) or ``"audit_hook"`` (hook only, so no forking either).
    Processes are contained by a PID namespace whenever the namespace prefix has one; otherwise the
    hook refuses to fork (see the module docstring and ``SandboxRun.process_isolation``).
    """
    limits = limits or SandboxLimits()
    if isolation not in ISOLATION_MODES:
        raise ToolError(f"unknown isolation {isolation!r}; use one of {', '.join(ISOLATION_MODES)}")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    user_mode, drop = _user_plan(limits, workdir)
    if drop:  # the unprivileged uid writes only here
        os.chown(workdir, limits.run_as_uid, limits.run_as_gid)
    prefix = _namespace_prefix(user_namespace=not drop) if isolation != "audit_hook" else None
    if isolation == "namespace" and prefix is None:
        raise ToolError(
            "network namespaces are unavailable here (util-linux unshare missing or not permitted)"
        )
    mode = "namespace" if prefix is not None else "audit_hook"
    pid_namespace = prefix is not None and "--pid" in prefix
    # RLIMIT_NPROC counts per user namespace; outside one it would count every process of the host
    # user, which is acceptable only for the dedicated unprivileged uid.
    nproc = limits.max_processes if drop or (prefix is not None and "--user" in prefix) else 0
    before, _ = _snapshot(workdir)
    status_read, status_write = os.pipe()
    args = [
        str(limits.cpu_seconds),
        str(limits.memory_mb * 1024 * 1024),
        str(limits.max_file_mb * 1024 * 1024),
        str(limits.max_open_files),
        str(nproc),
        "0" if pid_namespace else "1",
        str(status_write),
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
    try:
        proc = subprocess.Popen(
            [*(prefix or ()), *drop, sys.executable, "-I", "-c", _BOOTSTRAP, *args],
            cwd=workdir,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            pass_fds=(status_write,),
        )
    except BaseException:
        os.close(status_read)
        raise
    finally:
        os.close(status_write)
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
    reported = _read_status(status_read)
    if reported is not None:  # the namespace init's report of the code's own process
        exit_code = reported
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
    after, complete = _snapshot(workdir)
    changed = sorted(p for p, state in after.items() if before.get(p) != state)
    stderr = readers[1].text()
    if not complete:
        stderr += (
            f"\n[glmkit: the working directory holds more than {MAX_SNAPSHOT_ENTRIES} entries; only the "
            "first were checked for new files]"
        )
    return SandboxRun(
        status=status,
        exit_code=exit_code,
        stdout=readers[0].text(),
        stderr=stderr,
        wall_seconds=wall,
        network_isolation=mode,
        files=changed,
        process_isolation="pid_namespace" if pid_namespace else "audit_hook",
        user_isolation=user_mode,
    )


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
        isolation: ``"auto"``, ``"namespace"`` or ``"audit_hook"`` (see :func:`run_python`).
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
                "wall_seconds": round(result.wall_seconds, 3),
                "workdir": str(workdir),
            },
        )
