"""The program the sandbox's child interpreter runs around the model's code (see :mod:`glmkit.tools.sandbox`).

It reads the code from stdin, sets the resource limits, acts as init when it is alone in a PID
namespace, installs the audit hook that refuses network access (and, without a PID namespace,
starting processes), then executes the code. Its arguments, in order: CPU seconds, address-space
bytes, file-size bytes, open files, processes (0: no limit), strict (1: refuse starting processes),
and the file descriptor on which a namespace init reports the code's wait status.
"""

# Executed with ``python -I -c``; it echoes the value of a final expression, as a notebook would, and
# prints a traceback without its own frames.
BOOTSTRAP = r"""
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
