"""Fetching URLs for the model without letting it reach the inside of the network (SSRF).

A URL a model writes is untrusted. :func:`fetch` therefore

1. accepts only ``http`` and ``https`` URLs, with no credentials, whitespace, backslashes or
   control characters (parser differentials such as ``http://127.0.0.1\\@1.1.1.1``);
2. resolves the host itself, within ``connect_timeout`` (a resolver that hangs does not hang the
   call), and refuses it if *any* address is not globally routable
   (:func:`refusal_reason`: loopback, private, link-local, multicast, reserved, unspecified,
   CGNAT, documentation and benchmark ranges, and IPv4 hidden in IPv6 mapped / 6to4 / Teredo);
3. connects to the checked address itself (the URL is rewritten to the IP, the ``Host`` header
   and TLS SNI keep the name, so certificates are still verified against the name), which
   means a second DNS answer (rebinding) is never used;
4. follows redirects by hand, repeating 1-3 for every hop *before* sending it, up to a hop limit;
5. streams the body and stops at a byte limit, with connect, read and total time limits, and
   ignores proxy variables (a proxy would bypass 3). The total limit is a hard deadline: every
   socket operation (connect, TLS handshake, each read and write, so the headers too) is given only
   the time left, so a server that sends its headers one byte a second cannot stretch a call. It asks for ``Accept-Encoding: identity``; a
   server that compresses anyway (gzip, deflate) is decoded here with the output capped at the
   limit, so a gzip bomb never takes more than about ``max_bytes`` of memory; other encodings
   (br, zstd, ...) are refused.

Images fetched here are decoded by :mod:`glmkit.tools.decode` (pixel limit checked first).

Tests serve pages on loopback, which the policy refuses; they opt in explicitly with
``NetworkPolicy(allow_private=True)`` or ``allow_endpoints`` (or
``ToolContext.allow_private_network``). Both are off by default.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import certifi
import httpcore
import httpx

from glmkit.tools.base import ToolError

if TYPE_CHECKING:
    from glmkit.tools.base import ToolContext

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# ``is_global`` changed between Python patch releases (CVE-2024-4032), so these ranges are refused
# explicitly whatever the interpreter thinks of them.
_BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "64:ff9b:1::/48",
        "100::/64",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)


class NetworkPolicyError(ToolError):
    """A URL or address the policy refuses (scheme, private address, redirect target, ...)."""


class FetchError(ToolError):
    """A fetch that failed: timeout, size limit, HTTP error status, unreadable response."""


@dataclass(frozen=True)
class NetworkPolicy:
    """Limits for every fetch a tool makes on the model's behalf.

    ``allow_private`` lifts the address check entirely and ``allow_endpoints`` lifts it for exact
    ``(ip, port)`` pairs; both exist for tests with loopback servers. ``resolver`` replaces DNS
    (``(host, port) -> addresses``), also for tests.
    """

    allow_private: bool = False
    allow_endpoints: frozenset[tuple[str, int]] = frozenset()
    schemes: tuple[str, ...] = ("http", "https")
    max_redirects: int = 5
    max_bytes: int = 10 * 1024 * 1024
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 30.0
    max_image_pixels: int = 50_000_000
    user_agent: str = "glmkit-tools/0.1 (+https://github.com/glmkit)"
    resolver: Resolver | None = field(default=None, compare=False)

    def endpoint_allowed(self, ip: IPAddress, port: int) -> bool:
        """True when the policy explicitly lets ``ip:port`` through despite its range."""
        return self.allow_private or (str(ip), port) in self.allow_endpoints


def policy_for(context: ToolContext | None, default: NetworkPolicy | None = None) -> NetworkPolicy:
    """The policy in force: the context's own, else ``default``, else one from ``allow_private_network``."""
    if context is not None and context.network_policy is not None:
        return context.network_policy
    if default is not None:
        return default
    return NetworkPolicy(allow_private=bool(context is not None and context.allow_private_network))


def _embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip in ipaddress.ip_network("64:ff9b::/96"):  # NAT64 well-known prefix
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def refusal_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be contacted (``"loopback"``, ``"private"``, ...), or None if it is global."""
    for inner in _embedded_ipv4(ip):
        reason = refusal_reason(inner)
        if reason is not None:
            return f"{reason} (embedded in {ip})"
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    )
    for reason, hit in checks:
        if hit:
            return reason
    if any(ip.version == net.version and ip in net for net in _BLOCKED_NETWORKS):
        return "non-global (special-purpose range)"
    if not ip.is_global:
        return "non-global"
    return None


def check_url(url: str, policy: NetworkPolicy) -> httpx.URL:
    """Parse ``url`` and refuse schemes, credentials and characters that parsers disagree on."""
    if not isinstance(url, str) or not url:
        raise NetworkPolicyError("the URL is empty")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url) or "\\" in url:
        raise NetworkPolicyError(
            f"refusing URL {url!r}: it contains whitespace, control characters or backslashes"
        )
    try:
        parsed = httpx.URL(url)
    except Exception as exc:
        raise NetworkPolicyError(f"refusing URL {url!r}: cannot parse it ({exc})") from None
    if parsed.scheme not in policy.schemes:
        allowed = ", ".join(f"{s}://" for s in policy.schemes)
        raise NetworkPolicyError(
            f"refusing URL {url!r}: scheme {parsed.scheme or '(none)'!r} is not allowed (only {allowed})"
        )
    if not parsed.host:
        raise NetworkPolicyError(f"refusing URL {url!r}: it has no host")
    if parsed.userinfo:
        raise NetworkPolicyError(f"refusing URL {url!r}: credentials in URLs are not allowed")
    return parsed


def _default_port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def _lookup(host: str, port: int, policy: NetworkPolicy) -> list[str]:
    if policy.resolver is not None:
        return list(policy.resolver(host, port))
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def resolve(host: str, port: int, policy: NetworkPolicy, timeout: float | None = None) -> list[IPAddress]:
    """All addresses of ``host`` (an IP literal resolves to itself), within ``timeout`` seconds.

    ``getaddrinfo`` has no timeout of its own, so the lookup runs in a daemon thread; on timeout
    the call raises :class:`FetchError` and the thread is left to finish on its own (a daemon, so it
    never holds up interpreter exit). ``timeout`` defaults to ``policy.connect_timeout``.
    """
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    timeout = policy.connect_timeout if timeout is None else timeout
    outcome: list[object] = []
    done = threading.Event()

    def work() -> None:
        try:
            outcome.append(_lookup(host, port, policy))
        except BaseException as exc:  # handed to the caller
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=work, name=f"resolve {host}", daemon=True).start()
    if not done.wait(max(timeout, 0.0)):
        raise FetchError(f"resolving host {host!r} took longer than {timeout:g} s; gave up")
    answers = outcome[0]
    try:
        if isinstance(answers, BaseException):
            raise answers
        addresses = [ipaddress.ip_address(str(a).split("%", 1)[0]) for a in answers]  # type: ignore[attr-defined]
    except (OSError, UnicodeError, ValueError) as exc:
        raise FetchError(f"cannot resolve host {host!r}: {exc}") from None
    if not addresses:
        raise FetchError(f"host {host!r} has no addresses")
    return list(dict.fromkeys(addresses))


def pin_address(url: httpx.URL, policy: NetworkPolicy, timeout: float | None = None) -> IPAddress:
    """Resolve ``url``'s host (within ``timeout``, see :func:`resolve`), refuse it if any address is
    non-global, return the address to dial."""
    port = _default_port(url)
    host = _ascii_host(url)
    addresses = resolve(host, port, policy, timeout)
    for ip in addresses:
        reason = refusal_reason(ip)
        if reason is not None and not policy.endpoint_allowed(ip, port):
            shown = host if host == str(ip) else f"{host} ({ip})"
            raise NetworkPolicyError(
                f"refusing to connect to {shown}: {reason} addresses are not reachable from tools"
            )
    return addresses[0]


@dataclass
class FetchedResponse:
    """A fetched body with the final URL (after redirects) and the URLs of every hop."""

    url: str
    status: int
    headers: dict[str, str]
    content: bytes
    hops: list[str]

    @property
    def content_type(self) -> str:
        """The media type without parameters, lowercased (``"text/html"``)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    @property
    def charset(self) -> str | None:
        """The ``charset`` parameter of Content-Type, if any."""
        for part in self.headers.get("content-type", "").split(";")[1:]:
            key, _, value = part.partition("=")
            if key.strip().lower() == "charset" and value.strip():
                return value.strip().strip('"')
        return None


def _ascii_host(url: httpx.URL) -> str:
    # IDNA-encoded (punycode) name: what DNS, the Host header and SNI all need.
    return url.raw_host.decode("ascii")


def _host_header(url: httpx.URL) -> str:
    host = _ascii_host(url)
    host = f"[{host}]" if ":" in host else host
    return host if url.port is None else f"{host}:{url.port}"


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every operation gets at most the time left before ``deadline``.

    httpx's read timeout applies to each read, so a server that sends one byte a second never
    triggers it; the headers are read inside httpcore, before any check of ours could run. Giving
    each socket operation only the time left makes the total limit a hard one.
    """

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self.inner, self.deadline = inner, deadline

    def _left(self, timeout: float | None, error: type[Exception]) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise error("the total time limit of the fetch was reached")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Read with the time left (or ``timeout``, if shorter)."""
        return self.inner.read(max_bytes, self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Write with the time left (or ``timeout``, if shorter)."""
        self.inner.write(buffer, self._left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        """Close the socket."""
        self.inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        """The TLS handshake, with the time left."""
        inner = self.inner.start_tls(
            ssl_context, server_hostname, self._left(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(inner, self.deadline)

    def get_extra_info(self, info: str) -> Any:
        """As the wrapped stream."""
        return self.inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's synchronous sockets, each one a :class:`_DeadlineStream`."""

    def __init__(self, deadline: float) -> None:
        self.inner, self.deadline = httpcore.SyncBackend(), deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        """Connect within the time left (or ``timeout``, if shorter)."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ConnectTimeout("the total time limit of the fetch was reached")
        timeout = left if timeout is None else min(timeout, left)
        stream = self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _DeadlineStream(stream, self.deadline)

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        """Never used: fetches go to checked TCP addresses only."""
        raise httpcore.ConnectError("unix sockets are not reachable from tools")

    def sleep(self, seconds: float) -> None:
        """As httpcore's backend."""
        self.inner.sleep(seconds)


def _deadline_transport(deadline: float) -> httpx.HTTPTransport:
    """An httpx transport (no proxies, certifi's CA bundle) whose sockets all stop at ``deadline``."""
    import ssl

    transport = httpx.HTTPTransport(trust_env=False)
    # httpx has no option for httpcore's network backend; its HTTPTransport keeps the pool in _pool.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=ssl.create_default_context(cafile=certifi.where()),
        network_backend=_DeadlineBackend(deadline),
    )
    return transport


def fetch(url: str, policy: NetworkPolicy | None = None, *, accept: str = "*/*") -> FetchedResponse:
    """GET ``url`` under ``policy`` (see the module docstring for every check made).

    ``policy.total_timeout`` bounds the whole call, every hop, the headers and the body included.
    """
    policy = policy or NetworkPolicy()
    deadline = time.monotonic() + policy.total_timeout
    return _fetch(url, policy, accept, deadline)


def _fetch(url: str, policy: NetworkPolicy, accept: str, deadline: float) -> FetchedResponse:
    timeout = httpx.Timeout(policy.read_timeout, connect=policy.connect_timeout)
    hops: list[str] = []
    current = url
    transport = _deadline_transport(deadline)
    with httpx.Client(
        transport=transport, trust_env=False, follow_redirects=False, timeout=timeout
    ) as client:
        for _ in range(policy.max_redirects + 1):
            if time.monotonic() > deadline:
                raise FetchError(f"{url} took longer than {policy.total_timeout:g} s in total (redirects)")
            target = check_url(current, policy)
            ip = pin_address(target, policy, min(policy.connect_timeout, deadline - time.monotonic()))
            hops.append(str(target))
            request = client.build_request(
                "GET",
                target.copy_with(host=str(ip)),
                headers={
                    "Host": _host_header(target),
                    "User-Agent": policy.user_agent,
                    "Accept": accept,
                    "Accept-Encoding": "identity",  # compressed bodies are decoded by _read_limited only
                },
                extensions={"sni_hostname": _ascii_host(target)},
            )
            try:
                response = client.send(request, stream=True)
            except httpx.TimeoutException:
                if time.monotonic() >= deadline:
                    raise FetchError(
                        f"{current} took longer than {policy.total_timeout:g} s in total (connecting or "
                        "receiving the headers); gave up"
                    ) from None
                raise FetchError(f"timed out connecting to or waiting for {current}") from None
            except httpx.HTTPError as exc:
                raise FetchError(f"request to {current} failed: {type(exc).__name__}: {exc}") from None
            try:
                if response.status_code in REDIRECT_STATUSES:
                    location = response.headers.get("location")
                    if not location:
                        raise FetchError(
                            f"{current} answered {response.status_code} without a Location header"
                        )
                    current = urljoin(str(target), location)
                    continue
                body = _read_limited(response, policy, deadline, current)
            finally:
                response.close()
            if response.status_code >= 400:
                raise FetchError(f"{current} answered HTTP {response.status_code} {response.reason_phrase}")
            return FetchedResponse(
                url=str(target),
                status=response.status_code,
                headers={k.lower(): v for k, v in response.headers.items()},
                content=body,
                hops=hops,
            )
    raise FetchError(f"too many redirects (more than {policy.max_redirects}) starting from {url}")


DECODED_ENCODINGS = ("identity", "gzip", "x-gzip", "deflate")


class _CappedDecoder:
    """Decodes a gzip or deflate body chunk by chunk, never producing more than ``limit + 1`` bytes.

    httpx's own decoders inflate each raw chunk completely before the caller can count it (a
    200 KB gzip chunk can become hundreds of MB); ``zlib``'s ``max_length`` stops inside a chunk.
    """

    def __init__(self, encoding: str, limit: int) -> None:
        self.encoding, self.limit = encoding, limit
        # gzip: wbits 16+15 (gzip header); deflate: zlib-wrapped as RFC 9110 says, raw as some servers send.
        self.zlib = zlib.decompressobj(31 if encoding in ("gzip", "x-gzip") else 15)
        self.started = False

    def feed(self, data: bytes, produced: int) -> list[bytes]:
        """Decoded pieces of ``data``, stopping once ``produced`` + their size exceeds the limit."""
        if self.encoding == "identity":
            return [data]
        pieces = []
        while data:
            try:
                piece = self.zlib.decompress(data, self.limit - produced + 1)
            except zlib.error:
                if self.started or self.encoding != "deflate":
                    raise
                self.zlib = zlib.decompressobj(-15)  # raw deflate, without the zlib wrapper
                continue
            self.started = True
            pieces.append(piece)
            produced += len(piece)
            if produced > self.limit or self.zlib.eof:
                break
            data = self.zlib.unconsumed_tail
        return pieces


def _read_limited(response: httpx.Response, policy: NetworkPolicy, deadline: float, url: str) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
        raise FetchError(f"{url} is {int(declared)} bytes, above the limit of {policy.max_bytes} bytes")
    encoding = response.headers.get("content-encoding", "identity").strip().lower() or "identity"
    if encoding not in DECODED_ENCODINGS:
        raise FetchError(
            f"{url} sent Content-Encoding {encoding!r}, which is not decoded here "
            f"(only {', '.join(DECODED_ENCODINGS)}); download stopped"
        )
    decoder = _CappedDecoder(encoding, policy.max_bytes)
    chunks: list[bytes] = []
    total = 0
    try:
        for raw in response.iter_raw():  # undecoded: the decoder caps what compression expands to
            for chunk in decoder.feed(raw, total):
                total += len(chunk)
                if total > policy.max_bytes:
                    raise FetchError(
                        f"{url} sent more than the limit of {policy.max_bytes} bytes"
                        + (f" (after {encoding} decoding)" if encoding != "identity" else "")
                        + "; download stopped"
                    )
                chunks.append(chunk)
            if time.monotonic() > deadline:
                raise FetchError(
                    f"{url} took longer than {policy.total_timeout:g} s in total; download stopped"
                )
    except zlib.error as exc:
        raise FetchError(f"{url} sent a corrupt {encoding} body: {exc}") from None
    except httpx.TimeoutException:
        if time.monotonic() >= deadline:
            raise FetchError(
                f"{url} took longer than {policy.total_timeout:g} s in total; download stopped"
            ) from None
        raise FetchError(f"timed out reading {url} (no data for {policy.read_timeout:g} s)") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"reading {url} failed: {type(exc).__name__}: {exc}") from None
    return b"".join(chunks)
