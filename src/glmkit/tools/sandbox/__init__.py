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

The package, one idea per module: :mod:`.limits` (``SandboxLimits``), :mod:`.bootstrap` (the
program the child runs first), :mod:`.namespaces` and :mod:`.user_switch` (which barriers this host
offers), :mod:`.capture` (capped output), :mod:`.workdir` (files the run wrote), :mod:`.runner`
(:func:`run_python`) and :mod:`.tool` (the registered ``python`` tool).
"""

from glmkit.tools.sandbox.bubblewrap import bubblewrap_works, bwrap_arguments
from glmkit.tools.sandbox.limits import SandboxLimits
from glmkit.tools.sandbox.namespaces import network_isolation, process_isolation, sandbox_mechanism
from glmkit.tools.sandbox.runner import ISOLATION_MODES, SandboxRun, run_python
from glmkit.tools.sandbox.tool import IMAGE_SUFFIXES, PythonTool
from glmkit.tools.sandbox.user_switch import user_isolation
from glmkit.tools.sandbox.workdir import MAX_SNAPSHOT_ENTRIES

__all__ = [
    "IMAGE_SUFFIXES",
    "ISOLATION_MODES",
    "MAX_SNAPSHOT_ENTRIES",
    "PythonTool",
    "SandboxLimits",
    "SandboxRun",
    "bubblewrap_works",
    "bwrap_arguments",
    "network_isolation",
    "process_isolation",
    "run_python",
    "sandbox_mechanism",
    "user_isolation",
]
