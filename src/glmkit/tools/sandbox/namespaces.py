"""Which Linux namespaces the sandbox can give its child: network and PID, through util-linux ``unshare``.

An empty network namespace (no interface but a down loopback) is the network barrier; a PID
namespace makes every process the code starts die with it. What works here is probed once per
process by running a trivial program under each candidate ``unshare`` command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import lru_cache

from glmkit.tools.sandbox.bubblewrap import bubblewrap_works
from glmkit.tools.sandbox.limits import SandboxLimits
from glmkit.tools.sandbox.user_switch import setpriv_command, user_isolation

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


@lru_cache(maxsize=2)
def namespace_prefix(user_namespace: bool = True) -> tuple[str, ...] | None:
    """The first ``unshare ... --`` command that works here (``None``: none does), probed once.

    ``user_namespace=False`` tries only commands without a user namespace.
    """
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


def default_prefix() -> tuple[str, ...] | None:
    """The namespace command a call with default limits uses (root creates the namespaces itself)."""
    return namespace_prefix(user_namespace=user_isolation() in ("host_user", "root"))


def sandbox_mechanism() -> str:
    """What runs a call with default limits: ``"bubblewrap"``, ``"unshare"`` or ``"audit_hook"``."""
    as_root = os.geteuid() == 0
    drop = setpriv_command(SandboxLimits().run_as_uid, SandboxLimits().run_as_gid) if as_root else ()
    if bubblewrap_works(as_root, drop):
        return "bubblewrap"
    return "unshare" if default_prefix() is not None else "audit_hook"


def network_isolation() -> str:
    """``"namespace"`` when children get an empty network namespace, else ``"audit_hook"``."""
    return "namespace" if sandbox_mechanism() != "audit_hook" else "audit_hook"


def process_isolation() -> str:
    """``"pid_namespace"`` when the code's descendants die with it, else ``"audit_hook"`` (no forking)."""
    if sandbox_mechanism() == "bubblewrap":
        return "pid_namespace"
    prefix = default_prefix()
    return "pid_namespace" if prefix is not None and "--pid" in prefix else "audit_hook"
