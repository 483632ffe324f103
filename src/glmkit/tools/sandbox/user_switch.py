"""Who runs the sandboxed code: when glmkit runs as root, an unprivileged uid through ``setpriv``.

Root may write the whole filesystem and is exempt from ``RLIMIT_NPROC``, so a root parent switches
the child to ``SandboxLimits.run_as_uid``/``run_as_gid`` with util-linux ``setpriv`` (no
supplementary groups, ``no_new_privs``). Where the interpreter or the working directory cannot be
reached by that uid, the child keeps exactly ``CAP_DAC_READ_SEARCH`` (``"dropped_read_all"``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from glmkit.tools.sandbox.limits import SandboxLimits

_READ_SEARCH = "dac_read_search"


@lru_cache(maxsize=8)
def drop_commands(uid: int, gid: int) -> dict[str, tuple[str, ...]]:
    """``setpriv`` prefixes that switch root to ``uid:gid`` and work here, by user-isolation mode.

    ``"dropped"`` keeps no capability; ``"dropped_read_all"`` keeps ``CAP_DAC_READ_SEARCH`` for an
    interpreter or working directory the uid cannot reach. Each is probed once: the interpreter must
    start under it and find its own installation (``sys.prefix``).
    """
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return {}
    variants = {mode: setpriv_command(uid, gid, mode) for mode in ("dropped", "dropped_read_all")}
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


def setpriv_command(uid: int, gid: int, mode: str = "dropped") -> tuple[str, ...]:
    """The ``setpriv ... --`` prefix of a user-isolation ``mode`` (not probed; ``()`` without setpriv).

    ``"dropped"`` keeps no capability; ``"dropped_read_all"`` keeps ``CAP_DAC_READ_SEARCH``.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return ()
    base = (setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs")
    if mode == "dropped":
        return (*base, "--inh-caps=-all", "--bounding-set=-all", "--")
    keep = f"-all,+{_READ_SEARCH}"
    return (*base, f"--inh-caps={keep}", f"--ambient-caps={keep}", f"--bounding-set={keep}", "--")


def searchable_by(path: Path, uid: int, gid: int) -> bool:
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


def user_plan(limits: SandboxLimits, workdir: Path | None) -> tuple[str, tuple[str, ...]]:
    """The user-isolation mode and the ``setpriv`` prefix (empty when none) for one call."""
    if os.geteuid() != 0:
        return "host_user", ()
    commands = drop_commands(limits.run_as_uid, limits.run_as_gid)
    reachable = workdir is None or searchable_by(workdir, limits.run_as_uid, limits.run_as_gid)
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
    return user_plan(limits or SandboxLimits(), None)[0]
