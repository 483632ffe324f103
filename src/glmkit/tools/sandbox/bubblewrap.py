"""The bubblewrap sandbox: the code sees a read-only system, its scratch folder and nothing else.

bubblewrap (``bwrap``, Debian's ``bubblewrap`` package) is the sandbox Flatpak and agent runtimes
use on Linux. It builds a fresh mount namespace from nothing and puts in it only:

- ``/usr`` (and the ``/bin``, ``/sbin``, ``/lib*`` links into it) and the Python installation that
  runs the code, read-only;
- a few read-only files of ``/etc`` that libraries read (fonts, the dynamic linker's cache, the time
  zone); never ``/etc/shadow``, home directories, ``/root``, ``/work``, ``/tmp`` or anything else of
  the host;
- the call's working directory, read-write, at its own path; a private ``/tmp``, ``/proc`` and
  ``/dev``.

It also gives the code no network (an empty network namespace), a PID namespace whose init is the
sandbox's own interpreter (``--as-pid-1``, so the bootstrap reports the code's exit status as under
``unshare``), and its own IPC and host name. As root, no user namespace is made, so that
``setpriv`` inside can switch to the unprivileged ``run_as_uid`` (which makes ``RLIMIT_NPROC``
apply); as an ordinary user, bubblewrap makes a user namespace.

bubblewrap keeps the sandbox's init in its own session, so killing ``bwrap``'s process group does
not reach it; :func:`sandbox_pid` reads the init's host pid from bubblewrap's ``--info-fd``, and
killing that pid ends the whole namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

#: Host paths the code can read, when they exist: what the interpreter, numpy, Pillow and
#: matplotlib need from /etc (fonts, the linker's cache, the time zone, Debian's alternatives).
ETC_READ_ONLY = (
    "/etc/fonts",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/alternatives",
)
_LINKED_TOP = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


def bwrap_path() -> str | None:
    """The ``bwrap`` executable, or ``None`` when bubblewrap is not installed."""
    return shutil.which("bwrap")


def _python_roots() -> list[str]:
    """Directories of the interpreter's installation outside ``/usr`` (a venv, pyenv under ``/root``)."""
    roots: list[str] = []
    for path in (sys.prefix, sys.base_prefix, str(Path(os.path.realpath(sys.executable)).parents[1])):
        real = os.path.realpath(path)
        if real == "/usr" or real.startswith("/usr/"):
            continue
        if not any(real == r or real.startswith(r + "/") for r in roots):
            roots = [r for r in roots if not r.startswith(real + "/")] + [real]
    return roots


def _parent_dirs(path: str) -> list[str]:
    """``--dir`` options creating each folder above ``path`` searchable by anyone (``0755``).

    bubblewrap would otherwise create them with the mode of the host's folder, and a ``0700`` host
    ``/root`` (pyenv's home) would hide the interpreter from the unprivileged uid.
    """
    out: list[str] = []
    for parent in reversed(Path(path).parents):
        if str(parent) in ("/", "/tmp"):
            continue
        out += ["--perms", "0755", "--dir", str(parent)]
    return out


def bwrap_arguments(workdir: Path, *, as_root: bool, info_fd: int | None = None) -> list[str]:
    """The ``bwrap ... --`` command that runs a program with ``workdir`` as its only writable folder.

    ``as_root``: glmkit runs as root and a ``setpriv`` inside will drop to an unprivileged uid, so
    no user namespace is made (one that maps only root would make that switch impossible).
    """
    bwrap = bwrap_path()
    if bwrap is None:
        raise FileNotFoundError("bwrap (Debian package bubblewrap) is not installed")
    args = [bwrap, "--ro-bind", "/usr", "/usr"]
    for top in _LINKED_TOP:
        if os.path.islink(top):  # merged /usr: /bin -> usr/bin
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for root in _python_roots():
        args += [*_parent_dirs(root), "--ro-bind", root, root]
    args += ["--perms", "0755", "--dir", "/etc"]
    for path in ETC_READ_ONLY:
        args += ["--ro-bind-try", path, path]
    workdir = str(Path(workdir).resolve())
    args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
    args += [*_parent_dirs(workdir), "--bind", workdir, workdir]
    args += ["--chdir", workdir, "--hostname", "sandbox"]
    if as_root:
        args += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    else:
        args += ["--unshare-all"]  # user, ipc, pid, net, uts, cgroup
    args += ["--as-pid-1", "--die-with-parent", "--new-session"]
    if info_fd is not None:
        args += ["--info-fd", str(info_fd)]
    return [*args, "--"]


@lru_cache(maxsize=4)
def bubblewrap_works(as_root: bool, drop: tuple[str, ...] = ()) -> bool:
    """Whether ``bwrap`` (then the ``drop`` prefix, then the interpreter) runs here, probed once.

    bubblewrap needs permission to create namespaces (unprivileged user namespaces for an ordinary
    user); containers often forbid it, and then the sandbox falls back to ``unshare``.
    """
    if bwrap_path() is None:
        return False
    with tempfile.TemporaryDirectory(prefix="glmkit-bwrap-probe-") as scratch:
        if drop:
            os.chmod(scratch, 0o777)
        command = [
            *bwrap_arguments(Path(scratch), as_root=as_root),
            *drop,
            sys.executable,
            "-I",
            "-c",
            "pass",
        ]
        try:
            probe = subprocess.run(command, capture_output=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return False
    return probe.returncode == 0


def sandbox_pid(info_fd: int) -> int | None:
    """The host pid of the sandbox's init, from bubblewrap's ``--info-fd`` (read without blocking;
    ``None`` if bubblewrap has not written it). The file descriptor is closed."""
    try:
        os.set_blocking(info_fd, False)
        raw = os.read(info_fd, 65536)
    except (BlockingIOError, OSError):
        raw = b""
    finally:
        os.close(info_fd)
    try:
        pid = json.loads(raw.decode("utf-8", "replace") or "{}").get("child-pid")
    except ValueError:
        return None
    return pid if isinstance(pid, int) and pid > 1 else None
