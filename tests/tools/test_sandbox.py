"""The python tool: output, errors, limits, no network, files returned."""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from pathlib import Path

import pytest

from glmkit.tools.base import ToolContext, ToolError
from glmkit.tools.sandbox import (
    PythonTool,
    SandboxLimits,
    process_isolation,
    run_python,
    sandbox_mechanism,
    user_isolation,
)
from glmkit.tools.sandbox.user_switch import searchable_by

FAST = SandboxLimits(cpu_seconds=5, wall_seconds=15, memory_mb=512)


@pytest.fixture
def ctx(tmp_path) -> ToolContext:
    return ToolContext(workdir=tmp_path / "work")


def test_stdout_stderr_and_final_expression(ctx):
    code = "import sys\nprint('hello')\nprint('warn', file=sys.stderr)\n6 * 7"
    result = PythonTool(FAST)({"code": code}, ctx)
    assert result.ok and result.data["status"] == "ok"
    assert result.text.startswith("[finished: exit code 0]")
    assert "--- stdout ---\nhello\n42" in result.text
    assert "--- stderr ---\nwarn" in result.text


def test_exception_text_is_returned_without_sandbox_frames(ctx):
    result = PythonTool(FAST)({"code": "print('before')\ndef f():\n    return 1 / 0\nf()"}, ctx)
    assert result.ok  # a failing program is a normal observation, not a tool error
    assert result.data["status"] == "error" and result.data["exit_code"] == 1
    assert "ZeroDivisionError: division by zero" in result.text
    assert 'File "<code>", line 3, in f' in result.text
    assert "<string>" not in result.text  # the bootstrap's own frame is hidden
    assert "--- stdout ---\nbefore" in result.text  # printed before the error, flushed despite os._exit


def test_syntax_errors_are_reported(ctx):
    result = PythonTool(FAST)({"code": "def broken(:\n  pass"}, ctx)
    assert result.data["status"] == "error" and "SyntaxError" in result.text


def test_infinite_loop_is_killed_by_the_wall_timeout(ctx):
    result = PythonTool(SandboxLimits(cpu_seconds=30, wall_seconds=1.0))(
        {"code": "import time\nwhile True: time.sleep(0.1)"}, ctx
    )
    # the code never ends by itself: only the wall-clock kill can have stopped it
    assert result.data["status"] == "timeout" and "wall-clock timeout" in result.text
    assert result.data["wall_seconds"] >= 1.0


def test_per_call_timeout_cannot_exceed_the_configured_one(ctx):
    result = PythonTool(SandboxLimits(wall_seconds=1.0))(
        {"code": "import time; time.sleep(30)", "timeout_s": 100}, ctx
    )
    # under a 100 s limit the 30 s sleep would have finished ("ok"): a timeout means 1 s held
    assert result.data["status"] == "timeout"


def test_busy_loop_hits_the_cpu_limit(ctx):
    # The wall limit is far above the CPU limit, so a loaded machine cannot turn this into a timeout.
    result = PythonTool(SandboxLimits(cpu_seconds=1, wall_seconds=120))({"code": "while True: pass"}, ctx)
    assert result.data["status"] == "cpu_limit" and "CPU time limit" in result.text


@pytest.fixture
def alive_fifo(tmp_path):
    """A FIFO ``work/alive`` whose read end the test holds; code keeps it open while it runs.

    ``gone()`` says whether every process that opened it has exited, without a timing assumption:
    a live holder keeps it open for a minute, and the wait's bound only ends a failing test.
    """
    work = tmp_path / "work"
    work.mkdir()
    os.chmod(work, 0o777)  # the sandbox may run the code as an unprivileged user
    path = work / "alive"
    os.mkfifo(path)
    os.chmod(path, 0o666)  # mkfifo's mode goes through the umask
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)

    def gone(timeout: float = 60) -> bool:
        # Open and close a writer ourselves: Linux reports a FIFO's hang-up only once some writer
        # has connected, and the code's child may have died before it could.
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready) and os.read(fd, 1) == b""

    yield work, gone
    os.close(fd)


# The code's child opens the FIFO, tells its parent it holds it, and would live for a minute.
HOLD_FIFO = """
import os, time
ready_r, ready_w = os.pipe()
if os.fork() == 0:
    {detach}
    fifo = os.open('alive', os.O_WRONLY)
    os.write(ready_w, b'x')
    os.close(1); os.close(2)
    time.sleep(60)
    os._exit(0)
os.read(ready_r, 1)
print('child holds the fifo', flush=True)
{then}
"""
# The child leaves the session and forks again, so killing the process group misses the grandchild.
DETACH = "os.setsid()\n    if os.fork():\n        os._exit(0)"


@pytest.mark.skipif(
    process_isolation() != "pid_namespace", reason="without a PID namespace the code cannot fork"
)
def test_children_are_killed_with_the_process_group(alive_fifo):
    work, gone = alive_fifo
    # The code's own process dies once its child holds the FIFO (SIGKILL: no cleanup of its own).
    code = HOLD_FIFO.format(detach="pass", then="os.kill(os.getpid(), 9)")
    run = run_python(code, work, FAST)
    assert run.status == "killed" and "child holds the fifo" in run.stdout, run.stderr
    assert gone()  # the child died with the call, not a minute later


def test_a_double_forked_setsid_process_does_not_outlive_the_call(alive_fifo, tmp_path):
    work, gone = alive_fifo
    code = HOLD_FIFO.format(detach=DETACH, then="")
    run = run_python(code, work, FAST)
    assert run.process_isolation == process_isolation()
    if run.process_isolation == "pid_namespace":
        # the call returned when the code's own process ended ("ok": waiting for the grandchild
        # would have hit the wall-clock limit), and the grandchild died with it
        assert run.status == "ok" and "child holds the fifo" in run.stdout, run.stderr
        assert gone()
    else:
        assert run.status == "error" and "(os.fork)" in run.stderr
    hooked = run_python(code, tmp_path / "hooked", FAST, "audit_hook")
    assert hooked.process_isolation == "audit_hook" and hooked.status == "error"
    assert "starting processes is disabled" in hooked.stderr and "(os.fork)" in hooked.stderr


@pytest.mark.skipif(process_isolation() != "pid_namespace", reason="unprivileged PID namespaces unavailable")
def test_pid_namespace_mode_lets_the_code_fork_and_reports_signal_deaths(tmp_path):
    code = (
        "import os\npid = os.fork()\nif pid == 0: os._exit(7)\nprint(os.waitpid(pid, 0)[1] >> 8, os.getpid())"
    )
    run = run_python(code, tmp_path, FAST)
    assert run.status == "ok" and run.stdout.split() == ["7", "2"]  # the namespace's init is pid 1
    killed = run_python("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", tmp_path, FAST)
    assert killed.status == "killed" and killed.exit_code == -15


@pytest.mark.skipif(process_isolation() != "pid_namespace", reason="unprivileged PID namespaces unavailable")
@pytest.mark.skipif(
    user_isolation() == "root", reason="the kernel exempts host root from RLIMIT_NPROC (no setpriv)"
)
def test_process_count_is_limited(tmp_path):
    code = (
        "import os, time\nn = 0\ntry:\n    for _ in range(50):\n        if os.fork() == 0:\n"
        "            time.sleep(5); os._exit(0)\n        n += 1\nexcept OSError as exc:\n    print(n, exc.errno)"
    )
    run = run_python(code, tmp_path, SandboxLimits(max_processes=8, wall_seconds=60))
    assert run.stdout.split()[1] == "11" and int(run.stdout.split()[0]) < 8  # EAGAIN


def test_memory_bomb_is_refused(ctx):
    result = PythonTool(SandboxLimits(memory_mb=256))(
        {"code": "x = bytearray(2 * 1024**3)\nprint('allocated')"}, ctx
    )
    assert "MemoryError" in result.text and "allocated" not in result.text


def test_output_is_truncated_with_a_note(ctx):
    result = PythonTool(SandboxLimits(max_output_chars=1000))(
        {"code": "print('a' * 100_000)\nprint('END')"}, ctx
    )
    assert "output truncated" in result.text and "END" in result.text  # the tail is kept
    assert len(result.text) < 2000


@pytest.fixture
def tcp_listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                accepted.append(conn)
            except OSError:
                pass

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield sock.getsockname()[1], accepted
    stop.set()
    thread.join()
    sock.close()


@pytest.mark.parametrize("isolation", ["auto", "audit_hook"])
def test_network_is_refused(ctx, tcp_listener, isolation):
    port, accepted = tcp_listener
    code = (
        f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')"
    )
    result = PythonTool(FAST, isolation=isolation)({"code": code}, ctx)
    assert "connected" not in result.text.split("---")[-1]
    assert "network access is disabled" in result.text
    assert accepted == []
    dns = PythonTool(FAST, isolation=isolation)(
        {"code": "import socket; socket.getaddrinfo('example.com', 80)"}, ctx
    )
    assert "network access is disabled" in dns.text


def test_audit_hook_mode_refuses_starting_programs(ctx):
    code = "import subprocess; subprocess.run(['true'])"
    result = PythonTool(FAST, isolation="audit_hook")({"code": code}, ctx)
    assert result.data["network_isolation"] == "audit_hook"
    assert result.data["process_isolation"] == "audit_hook"
    assert "starting processes is disabled" in result.text


def test_audit_hook_mode_refuses_multiprocessing_spawn(ctx):
    # multiprocessing's spawn start method reaches _posixsubprocess.fork_exec without an audit event.
    code = "import multiprocessing as mp\np = mp.get_context('spawn').Process(target=print)\np.start()"
    result = PythonTool(FAST, isolation="audit_hook")({"code": code}, ctx)
    assert result.data["status"] == "error"
    assert "starting processes is disabled in the glmkit python sandbox (fork_exec)" in result.text


@pytest.mark.skipif(process_isolation() != "pid_namespace", reason="unprivileged namespaces unavailable")
def test_namespace_blocks_a_child_process_that_has_no_audit_hook(ctx, tcp_listener):
    port, accepted = tcp_listener
    inner = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)"
    code = f"import subprocess, sys\nr = subprocess.run([sys.executable, '-c', {inner!r}], capture_output=True, text=True)\nprint(r.returncode)\nprint(r.stderr[-200:])"
    result = PythonTool(FAST, isolation="namespace")({"code": code}, ctx)
    assert result.data["network_isolation"] == "namespace"
    # unshare leaves the namespace's loopback down (unreachable); bubblewrap brings up its own
    # loopback, where nothing listens (refused): either way the host's listener is never reached
    assert "--- stdout ---\n1" in result.text
    assert "unreachable" in result.text.lower() or "refused" in result.text.lower()
    assert accepted == []


def test_files_written_are_returned_and_images_come_back_as_images(ctx):
    code = (
        "from PIL import Image\n"
        "Image.new('RGB', (32, 16), (255, 0, 0)).save('red.png')\n"
        "open('table.csv', 'w').write('a,b\\n1,2\\n')\n"
        "import os; os.makedirs('sub', exist_ok=True); open('sub/notes.txt', 'w').write('x')\n"
    )
    result = PythonTool(FAST)({"code": code}, ctx)
    names = sorted(p.name for p in result.files)
    assert names == ["notes.txt", "red.png", "table.csv"]
    assert len(result.images) == 1 and result.images[0].size == (32, 16)
    assert result.image_ids == ["img_0"] and ctx.images["img_0"].getpixel((0, 0)) == (255, 0, 0)
    assert "Files written: red.png, sub/notes.txt, table.csv" in result.text


def test_working_directory_persists_and_only_changes_are_returned(ctx):
    tool = PythonTool(FAST)
    tool({"code": "open('state.txt', 'w').write('1')"}, ctx)
    second = tool({"code": "print(open('state.txt').read())\nopen('new.txt', 'w').write('2')"}, ctx)
    assert "--- stdout ---\n1" in second.text
    assert [p.name for p in second.files] == ["new.txt"]


def test_per_call_directories(ctx):
    tool = PythonTool(FAST, per_call_dir=True)
    tool({"code": "open('state.txt', 'w').write('1')"}, ctx)
    second = tool({"code": "import os; print(os.path.exists('state.txt'))"}, ctx)
    assert "False" in second.text


def test_description_says_whether_the_working_directory_persists():
    persistent = PythonTool().schema()["function"]["description"]
    fresh = PythonTool(per_call_dir=True).schema()["function"]["description"]
    assert "persists between calls" in persistent and "new, empty working directory" not in persistent
    assert "nothing persists between calls" in fresh and "directory persists" not in fresh
    assert PythonTool.description == persistent  # the class attribute is untouched
    assert "per_call_dir=True" in (PythonTool.__doc__ or "")


def test_isolation_argument_is_checked():
    with pytest.raises(ValueError, match="audit_hook"):
        PythonTool(isolation="docker")


ROOT_ONLY = pytest.mark.skipif(
    os.geteuid() != 0 or not user_isolation().startswith("dropped"),
    reason="needs glmkit running as root with util-linux setpriv",
)


@ROOT_ONLY
@pytest.mark.parametrize("isolation", ["auto", "audit_hook"])
def test_root_runs_the_code_as_an_unprivileged_user(tmp_path, isolation):
    outside = tmp_path / "outside"  # root-owned, 0755: only root may write here
    outside.mkdir()
    code = (
        "import os\nprint(os.getuid(), os.getgid(), os.getgroups())\n"
        "open('inside.txt', 'w').write('ok')\n"
        f"open({str(outside / 'x')!r}, 'w').write('escaped')"
    )
    limits = SandboxLimits(cpu_seconds=5, wall_seconds=15, memory_mb=512, run_as_uid=65534, run_as_gid=65534)
    run = run_python(code, tmp_path / "work", limits, isolation)
    # bubblewrap does not even show the folder; otherwise the unprivileged uid may not write there
    refusal = "FileNotFoundError" if run.sandbox == "bubblewrap" else "PermissionError"
    assert run.status == "error" and refusal in run.stderr, run.stderr
    assert run.stdout.split("\n")[0] == "65534 65534 []"
    assert not (outside / "x").exists()
    assert [p.name for p in run.files] == ["inside.txt"] and run.files[0].read_text() == "ok"
    assert run.files[0].stat().st_uid == 65534
    assert run.user_isolation in ("dropped", "dropped_read_all")


@ROOT_ONLY
def test_tool_reports_the_user_isolation(ctx):
    result = PythonTool(FAST)({"code": "import os; os.getuid()"}, ctx)
    assert "65534" in result.text and result.data["user_isolation"].startswith("dropped")


def test_searchable_by_checks_every_parent(tmp_path):
    closed = tmp_path / "closed"
    (closed / "work").mkdir(parents=True)
    closed.chmod(0o700)
    assert not searchable_by(closed / "work", 65534, 65534)
    closed.chmod(0o711)
    assert searchable_by(closed / "work", 65534, 65534) == searchable_by(tmp_path / "x", 65534, 65534)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_timeout_is_refused_not_unbounded(ctx, value):
    """json.loads accepts NaN, JSON Schema's bounds let it through, and min(nan, limit) is nan: a
    NaN timeout would switch the wall-clock kill off."""
    result = PythonTool(SandboxLimits(wall_seconds=1.0))({"code": "print(1)", "timeout_s": value}, ctx)
    assert not result.ok and "timeout_s: NaN and infinity are not allowed" in result.error


def test_output_cap_counts_characters_and_never_splits_one(ctx):
    result = PythonTool(SandboxLimits(max_output_chars=1000))({"code": "print('字' * 30000)"}, ctx)
    stdout = result.text.split("--- stdout ---\n", 1)[1]
    head, note_and_tail = stdout.split("\n[... output truncated: ", 1)
    assert head == "字" * 1000 and "\ufffd" not in stdout
    omitted, tail = note_and_tail.split(" bytes omitted ...]\n", 1)
    # the tail keeps the last 250 characters, 249 of them and the final newline (stripped in the text)
    assert tail == "字" * 249 and int(omitted) == (30000 - 1000 - 249) * 3


def test_a_file_name_that_is_not_utf8_is_listed_and_encodable(ctx):
    code = "import os\nwith open(os.fsdecode(b'\\xfe.txt'), 'w') as fh:\n    fh.write('x')"
    result = PythonTool(FAST)({"code": code}, ctx)
    assert "Files written: \\xfe.txt" in result.text
    result.to_text().encode("utf-8")  # what the MCP server and the agent loop send on


def test_a_working_directory_with_too_many_entries_is_walked_only_so_far(ctx, monkeypatch):
    from glmkit.tools.sandbox import workdir

    monkeypatch.setattr(workdir, "MAX_SNAPSHOT_ENTRIES", 5)
    result = PythonTool(FAST)({"code": "for i in range(12):\n    open(f'f{i}.txt', 'w').close()"}, ctx)
    assert result.ok and "holds more than 5 entries; only the first were checked" in result.text


BWRAP = pytest.mark.skipif(
    sandbox_mechanism() != "bubblewrap", reason="bubblewrap (Debian package bubblewrap) unavailable here"
)


@BWRAP
def test_bubblewrap_hides_a_file_planted_outside_the_scratch_folder(ctx, tmp_path):
    """The planted file is readable by anyone on the host; the code must not find it."""
    planted = tmp_path / "planted" / "secret.txt"
    planted.parent.mkdir()
    planted.write_text("planted-token-5831")
    planted.chmod(0o644)
    home_file = Path.home() / ".glmkit-sandbox-probe"
    home_file.write_text("home-token-7702")
    try:
        code = (
            "import os\n"
            f"for path in ({str(planted)!r}, {str(home_file)!r}, '/etc/shadow', '/etc/passwd'):\n"
            "    try:\n        print(path, 'was read:', open(path).read())\n"
            "    except OSError as exc:\n        print(path, type(exc).__name__)\n"
            "print(sorted(os.listdir('/')))\n"
            "open('/usr/escape', 'w')"
        )
        result = PythonTool(FAST)({"code": code}, ctx)
    finally:
        home_file.unlink()
    assert result.data["sandbox"] == "bubblewrap" and result.data["filesystem_isolation"] == "private"
    assert "was read:" not in result.text, result.text
    assert "planted-token-5831" not in result.text and "home-token-7702" not in result.text
    assert f"{planted} FileNotFoundError" in result.text
    assert "Read-only file system" in result.text  # the system folders are read-only
    assert "'home'" not in result.text and "'work'" not in result.text
    assert result.data["network_isolation"] == "namespace"
    assert result.data["process_isolation"] == "pid_namespace"


@BWRAP
def test_bubblewrap_sandbox_still_runs_numpy_matplotlib_and_returns_files(ctx):
    code = (
        "import numpy as np, matplotlib.pyplot as plt\n"
        "plt.plot(np.arange(5))\nplt.savefig('plot.png')\nprint(np.arange(3).sum())"
    )
    result = PythonTool(FAST)({"code": code}, ctx)
    assert result.ok and result.data["status"] == "ok", result.text
    assert "--- stdout ---\n3" in result.text and [p.name for p in result.files] == ["plot.png"]
    assert len(result.images) == 1


@BWRAP
def test_bubblewrap_wall_timeout_kills_the_whole_sandbox(tmp_path):
    code = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\ntime.sleep(60)"
    limits = SandboxLimits(cpu_seconds=5, wall_seconds=1.5, memory_mb=512)
    start = time.monotonic()
    run = run_python(code, tmp_path / "work", limits)
    assert run.status == "timeout" and run.sandbox == "bubblewrap"
    assert time.monotonic() - start < 6


def test_without_bubblewrap_the_previous_mechanism_runs_and_says_so(ctx, monkeypatch):
    from glmkit.tools.sandbox import bubblewrap, runner

    monkeypatch.setattr(runner, "bubblewrap_works", lambda *args: False)
    result = PythonTool(FAST)({"code": "print('hi')"}, ctx)
    assert result.ok and result.data["sandbox"] in ("unshare", "audit_hook")
    assert result.data["filesystem_isolation"] == "none"
    with pytest.raises(ToolError, match="bubblewrap is unavailable"):
        run_python("pass", ctx.scratch_dir() / "b", FAST, "bubblewrap")
    monkeypatch.setattr(bubblewrap, "bwrap_path", lambda: None)
    bubblewrap.bubblewrap_works.cache_clear()
    try:
        assert bubblewrap.bubblewrap_works(False) is False
    finally:
        bubblewrap.bubblewrap_works.cache_clear()
