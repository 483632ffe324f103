"""Fixtures of the tool tests: images in a context and real HTTP servers on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from glmkit.tools.base import ToolContext
from glmkit.tools.net import NetworkPolicy


@dataclass
class Route:
    """What the server answers on one path."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the status line
    gate: threading.Event | None = None  # when set: wait for it before the status line
    drip: float = 0.0  # seconds between body bytes
    content_length: bool = True


class LocalServer:
    """A threaded ``http.server`` on 127.0.0.1 with a route table and a request log."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                route = server.routes.get(self.path, Route(status=404, body=b"not found"))
                time.sleep(route.delay)
                if route.gate is not None:
                    route.gate.wait(60)  # bounds a broken test only; tests set the gate
                try:
                    self.send_response(route.status)
                    for key, value in route.headers.items():
                        self.send_header(key, value)
                    if route.content_length:
                        self.send_header("Content-Length", str(len(route.body)))
                    self.end_headers()
                    if route.drip:
                        for i in range(len(route.body)):
                            self.wfile.write(route.body[i : i + 1])
                            self.wfile.flush()
                            time.sleep(route.drip)
                    else:
                        self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False  # slow handlers must not hold up teardown
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def policy(self, **kwargs: object) -> NetworkPolicy:
        """A policy that lets exactly this server through."""
        return NetworkPolicy(allow_endpoints=frozenset({("127.0.0.1", self.port)}), **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def make_server() -> Iterator[Callable[[], LocalServer]]:
    servers: list[LocalServer] = []

    def factory() -> LocalServer:
        servers.append(LocalServer())
        return servers[-1]

    yield factory
    for s in servers:
        s.close()


@pytest.fixture
def server(make_server: Callable[[], LocalServer]) -> LocalServer:
    return make_server()


def gradient_image(width: int = 200, height: int = 100) -> Image.Image:
    """An RGB image whose every pixel is distinct: r = x, g = y, b = (x + y) % 256."""
    img = Image.new("RGB", (width, height))
    img.putdata([(x % 256, y % 256, (x + y) % 256) for y in range(height) for x in range(width)])
    return img


@pytest.fixture
def context(tmp_path) -> ToolContext:  # type: ignore[no-untyped-def]
    ctx = ToolContext(workdir=tmp_path / "scratch")
    ctx.add_image(gradient_image())
    ctx.add_image(Image.new("RGB", (100, 100), (255, 255, 255)))
    return ctx


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG file whose header claims ``width`` x ``height`` (a decompression bomb's shape)."""
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


class SlowHeadersServer:
    """A raw TCP server on 127.0.0.1 that starts a response and then sends its headers one byte per
    ``interval`` seconds (``HTTP/1.1 200 OK\\r\\nX-Slow: aaaa...``) for at most ``duration`` seconds."""

    def __init__(self, interval: float = 0.1, duration: float = 8.0) -> None:
        import socket

        self.interval, self.duration = interval, duration
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._dribble, args=(conn,), daemon=True).start()

    def _dribble(self, conn) -> None:  # type: ignore[no-untyped-def]
        end = time.monotonic() + self.duration
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while time.monotonic() < end and not self.stop.is_set():
                conn.sendall(b"a")
                time.sleep(self.interval)
        except OSError:
            pass
        finally:
            conn.close()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def policy(self, **kwargs: object) -> NetworkPolicy:
        return NetworkPolicy(allow_endpoints=frozenset({("127.0.0.1", self.port)}), **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def slow_headers() -> Iterator[SlowHeadersServer]:
    srv = SlowHeadersServer()
    yield srv
    srv.close()
