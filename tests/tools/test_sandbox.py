"""The python tool: output, errors, limits, no network, files returned."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from glmkit.tools.base import ToolContext
from glmkit.tools.sandbox import PythonTool, SandboxLimits, network_isolation, run_python

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
    result = PythonTool(FAST)({"code": "def f():\n    return 1 / 0\nf()"}, ctx)
    assert result.ok  # a failing program is a normal observation, not a tool error
    assert result.data["status"] == "error" and result.data["exit_code"] == 1
    assert "ZeroDivisionError: division by zero" in result.text
    assert 'File "<code>", line 2, in f' in result.text
    assert "<string>" not in result.text  # the bootstrap's own frame is hidden


def test_syntax_errors_are_reported(ctx):
    result = PythonTool(FAST)({"code": "def broken(:\n  pass"}, ctx)
    assert result.data["status"] == "error" and "SyntaxError" in result.text


def test_infinite_loop_is_killed_by_the_wall_timeout(ctx):
    result = PythonTool(SandboxLimits(cpu_seconds=30, wall_seconds=1.0))(
        {"code": "import time\nwhile True: time.sleep(0.1)"}, ctx
    )
    assert result.data["status"] == "timeout" and "wall-clock timeout" in result.text
    assert result.data["wall_seconds"] < 3


def test_per_call_timeout_cannot_exceed_the_configured_one(ctx):
    result = PythonTool(SandboxLimits(wall_seconds=1.0))(
        {"code": "import time; time.sleep(30)", "timeout_s": 100}, ctx
    )
    assert result.data["status"] == "timeout" and result.data["wall_seconds"] < 3


def test_busy_loop_hits_the_cpu_limit(ctx):
    result = PythonTool(SandboxLimits(cpu_seconds=1, wall_seconds=10))({"code": "while True: pass"}, ctx)
    assert result.data["status"] == "cpu_limit" and "CPU time limit" in result.text


def test_children_are_killed_with_the_process_group(tmp_path):
    marker = tmp_path / "work" / "alive"
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    time.sleep(1); open('alive', 'w').write('x'); os._exit(0)\n"
        "time.sleep(30)"
    )
    run = run_python(code, tmp_path / "work", SandboxLimits(wall_seconds=0.5))
    assert run.status == "timeout"
    time.sleep(1.2)
    assert not marker.exists()


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
    assert "starting programs is disabled" in result.text


@pytest.mark.skipif(network_isolation() != "namespace", reason="unprivileged network namespaces unavailable")
def test_namespace_blocks_a_child_process_that_has_no_audit_hook(ctx, tcp_listener):
    port, accepted = tcp_listener
    inner = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)"
    code = f"import subprocess, sys\nr = subprocess.run([sys.executable, '-c', {inner!r}], capture_output=True, text=True)\nprint(r.returncode)\nprint(r.stderr[-200:])"
    result = PythonTool(FAST, isolation="namespace")({"code": code}, ctx)
    assert result.data["network_isolation"] == "namespace"
    assert "--- stdout ---\n1" in result.text and "unreachable" in result.text.lower()
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


def test_isolation_argument_is_checked():
    with pytest.raises(ValueError, match="audit_hook"):
        PythonTool(isolation="docker")
