"""Running code in the limited child interpreter: one call of :func:`run_python` and its :class:`SandboxRun`.

See :mod:`glmkit.tools.sandbox` for every limit and barrier the child gets.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from glmkit.tools.base import ToolError
from glmkit.tools.sandbox import workdir as workdir_files
from glmkit.tools.sandbox.bootstrap import BOOTSTRAP
from glmkit.tools.sandbox.bubblewrap import bubblewrap_works, bwrap_arguments, sandbox_pid
from glmkit.tools.sandbox.capture import CappedReader
from glmkit.tools.sandbox.limits import SandboxLimits
from glmkit.tools.sandbox.namespaces import namespace_prefix
from glmkit.tools.sandbox.user_switch import setpriv_command, user_plan


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
    sandbox: str = "audit_hook"  # bubblewrap | unshare | audit_hook: which mechanism ran the code
    filesystem_isolation: str = "none"  # private (bubblewrap: read-only system, the workdir only) | none

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


ISOLATION_MODES = ("auto", "bubblewrap", "namespace", "audit_hook")


def run_python(
    code: str, workdir: Path, limits: SandboxLimits | None = None, isolation: str = "auto"
) -> SandboxRun:
    """Execute ``code`` in a limited child interpreter with ``workdir`` as cwd and HOME.

    ``isolation`` picks the barrier: ``"auto"`` (bubblewrap when it works here, else ``unshare``
    namespaces when available, else the audit hook), ``"bubblewrap"`` (required; an error when
    unavailable), ``"namespace"`` (bubblewrap or ``unshare`` namespaces, required) or
    ``"audit_hook"`` (hook only, so no forking either). Processes are contained by a PID namespace
    whenever the mechanism has one; otherwise the hook refuses to fork (see the module docstring and
    ``SandboxRun.process_isolation``). ``SandboxRun.sandbox`` says which mechanism ran.
    """
    limits = limits or SandboxLimits()
    if isolation not in ISOLATION_MODES:
        raise ToolError(f"unknown isolation {isolation!r}; use one of {', '.join(ISOLATION_MODES)}")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    as_root = os.geteuid() == 0
    bwrap_drop = setpriv_command(limits.run_as_uid, limits.run_as_gid) if as_root else ()
    use_bwrap = isolation in ("auto", "bubblewrap", "namespace") and bubblewrap_works(as_root, bwrap_drop)
    if isolation == "bubblewrap" and not use_bwrap:
        raise ToolError(
            "bubblewrap is unavailable here (the bwrap program of Debian's bubblewrap package is missing, "
            "or this host does not let it create namespaces)"
        )
    info_read = info_write = None
    if use_bwrap:
        # The unprivileged uid can reach the interpreter and the working directory inside: bubblewrap
        # binds them at their paths under folders it creates itself.
        user_mode = "dropped" if bwrap_drop else ("root" if as_root else "host_user")
        drop = bwrap_drop
        info_read, info_write = os.pipe()
        prefix: list[str] | tuple[str, ...] | None = bwrap_arguments(
            workdir, as_root=as_root, info_fd=info_write
        )
        sandbox, mode, pid_namespace = "bubblewrap", "namespace", True
        # A user namespace (ordinary user) or the dedicated uid (root): RLIMIT_NPROC counts only the sandbox.
        nproc = limits.max_processes
    else:
        user_mode, drop = user_plan(limits, workdir)
        prefix = namespace_prefix(user_namespace=not drop) if isolation != "audit_hook" else None
        if isolation == "namespace" and prefix is None:
            raise ToolError(
                "network namespaces are unavailable here (bubblewrap and util-linux unshare missing or not permitted)"
            )
        mode = "namespace" if prefix is not None else "audit_hook"
        sandbox = "unshare" if prefix is not None else "audit_hook"
        pid_namespace = prefix is not None and "--pid" in prefix
        # RLIMIT_NPROC counts per user namespace; outside one it would count every process of the host
        # user, which is acceptable only for the dedicated unprivileged uid.
        nproc = limits.max_processes if drop or (prefix is not None and "--user" in prefix) else 0
    if drop:  # the unprivileged uid writes only here
        os.chown(workdir, limits.run_as_uid, limits.run_as_gid)
    before, _ = workdir_files.snapshot(workdir)
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
    if use_bwrap:  # caches (fontconfig, matplotlib) go to the private /tmp, not among the returned files
        env.update(XDG_CACHE_HOME="/tmp/.cache", MPLCONFIGDIR="/tmp/.cache/matplotlib")
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            [*(prefix or ()), *drop, sys.executable, "-I", "-c", BOOTSTRAP, *args],
            cwd=workdir,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            pass_fds=(status_write,) if info_write is None else (status_write, info_write),
        )
    except BaseException:
        os.close(status_read)
        if info_read is not None:
            os.close(info_read)
        raise
    finally:
        os.close(status_write)
        if info_write is not None:
            os.close(info_write)
    cap = limits.max_output_chars
    readers = [CappedReader(proc.stdout, cap), CappedReader(proc.stderr, cap)]
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
    if info_read is not None:
        # bubblewrap runs the sandbox's init in a session of its own: kill it by pid, which ends the
        # whole PID namespace (the code and everything it started).
        init = sandbox_pid(info_read)
        if init is not None and timed_out:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(init, signal.SIGKILL)
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
    after, complete = workdir_files.snapshot(workdir)
    changed = sorted(p for p, state in after.items() if before.get(p) != state)
    stderr = readers[1].text()
    if not complete:
        stderr += (
            f"\n[glmkit: the working directory holds more than {workdir_files.MAX_SNAPSHOT_ENTRIES} entries; only the "
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
        sandbox=sandbox,
        filesystem_isolation="private" if use_bwrap else "none",
    )
