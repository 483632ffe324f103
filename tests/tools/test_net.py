"""SSRF-safe fetching: refusals before connecting, redirect checks, pinning, size and time limits."""

from __future__ import annotations

import gzip
import ipaddress
import re
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable

import pytest

from glmkit.tools.base import ToolContext
from glmkit.tools.net import (
    FetchError,
    NetworkPolicy,
    NetworkPolicyError,
    check_url,
    fetch,
    pin_address,
    policy_for,
    refusal_reason,
    resolve,
)

from .conftest import Route

# ---- policy defaults and address classes -----------------------------------------------------


def test_policy_opt_in_is_off_by_default():
    policy = NetworkPolicy()
    assert policy.allow_private is False and policy.allow_endpoints == frozenset()
    assert policy_for(ToolContext()).allow_private is False
    assert policy_for(ToolContext(allow_private_network=True)).allow_private is True
    own = NetworkPolicy(max_bytes=5)
    assert policy_for(ToolContext(network_policy=own)) is own
    assert policy_for(None, own) is own


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("fc00::1", "private"),
        ("100.64.0.1", "non-global"),  # CGNAT: neither private nor global
        ("100.100.100.200", "non-global"),  # a cloud metadata service in CGNAT space
        ("192.0.0.8", ""),  # is_global differs across Python patch releases; refused anyway
        ("198.18.0.1", ""),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a00:1::1", "private"),  # 6to4 of 10.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
    ],
)
def test_non_global_addresses_are_refused(address, reason):
    got = refusal_reason(ipaddress.ip_address(address))
    assert got is not None and reason in got


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111"])
def test_global_addresses_pass(address):
    assert refusal_reason(ipaddress.ip_address(address)) is None


# ---- URL checks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("file:///etc/passwd", "scheme 'file'"),
        ("ftp://example.com/x", "scheme 'ftp'"),
        ("gopher://example.com/", "scheme 'gopher'"),
        ("javascript:alert(1)", "scheme"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://127.0.0.1\\@1.1.1.1/", "backslashes"),
        ("http://exa mple.com/", "whitespace"),
        ("http://example.com/\r\nHost: x", "control"),
        ("http:///nohost", "no host"),
    ],
)
def test_bad_urls_are_refused(url, match):
    with pytest.raises(NetworkPolicyError, match=match):
        check_url(url, NetworkPolicy())


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost/",
        "http://10.0.0.1/admin",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:7f00:1]/",
        "https://192.168.0.1/",
        "http://0.0.0.0:8080/",
        "http://2130706433/",  # 127.0.0.1 as one decimal number
        "http://0x7f000001/",  # ... in hex
        "http://017700000001/",  # ... in octal
        "http://127.1/",  # ... shortened
    ],
)
def test_private_targets_are_refused_before_connecting(url):
    with pytest.raises(NetworkPolicyError, match="refusing to connect"):
        fetch(url)


def test_loopback_test_server_is_refused_without_the_opt_in(server):
    server.routes["/"] = Route(body=b"secret")
    for url in (server.url("/"), f"http://localhost:{server.port}/", f"http://[::1]:{server.port}/"):
        with pytest.raises(NetworkPolicyError):
            fetch(url)
    assert server.requests == []  # nothing was ever sent


def test_every_resolved_address_must_be_global():
    policy = NetworkPolicy(resolver=lambda host, port: ["93.184.216.34", "10.0.0.7"])
    with pytest.raises(NetworkPolicyError, match=r"mixed.test \(10.0.0.7\): private"):
        pin_address(check_url("http://mixed.test/", policy), policy)
    public = NetworkPolicy(resolver=lambda host, port: ["93.184.216.34"])
    assert str(pin_address(check_url("https://public.test/", public), public)) == "93.184.216.34"


def test_international_names_are_resolved_in_punycode():
    seen = []
    policy = NetworkPolicy(resolver=lambda host, port: seen.append(host) or ["10.0.0.1"])
    with pytest.raises(NetworkPolicyError, match=r"xn--bcher-kva.de \(10.0.0.1\)"):
        fetch("http://bücher.de/", policy)
    assert seen == ["xn--bcher-kva.de"]


def test_unresolvable_host_is_a_fetch_error():
    def fail(host, port):
        raise OSError("no such host")

    with pytest.raises(FetchError, match="cannot resolve host 'nowhere.test'"):
        fetch("http://nowhere.test/", NetworkPolicy(resolver=fail))


def blocking_resolver() -> tuple[threading.Event, Callable[[str, int], list[str]]]:
    """A resolver that answers only once released: (release, resolver).

    A fetch against it can only end by giving up on the lookup, so the error alone shows the
    timeout worked; no clock is read.
    """
    release = threading.Event()

    def resolver(host: str, port: int) -> list[str]:
        release.wait(60)  # bounds a broken test only; every test releases it
        return ["93.184.216.34"]

    return release, resolver


def test_a_hanging_resolver_times_out_with_the_host_named():
    release, slow = blocking_resolver()
    policy = NetworkPolicy(resolver=slow, connect_timeout=0.3)
    try:
        with pytest.raises(FetchError, match=r"resolving host 'slow.test' took longer than 0.3 s"):
            fetch("http://slow.test/", policy)
        with pytest.raises(FetchError, match="'slow.test' took longer than 0.1 s"):
            resolve("slow.test", 80, policy, timeout=0.1)
    finally:
        release.set()
    fast = NetworkPolicy(resolver=lambda host, port: ["93.184.216.34", "93.184.216.34"])
    assert [str(ip) for ip in resolve("fast.test", 80, fast, timeout=30)] == ["93.184.216.34"]


def test_total_timeout_also_bounds_resolution():
    release, slow = blocking_resolver()
    policy = NetworkPolicy(resolver=slow, connect_timeout=5, total_timeout=0.3)
    try:
        with pytest.raises(FetchError, match=r"resolving host 'slow.test' took longer than (\S+) s") as info:
            fetch("http://slow.test/", policy)
    finally:
        release.set()
    # the lookup was given what was left of the total time, not the 5 s connect timeout
    waited = float(re.search(r"took longer than (\S+) s", str(info.value)).group(1))
    assert waited <= 0.3


# ---- real fetches against loopback servers ---------------------------------------------------


def test_fetch_with_explicit_endpoint_opt_in(server):
    server.routes["/page"] = Route(body=b"<p>hi</p>", headers={"Content-Type": "text/html; charset=utf-8"})
    response = fetch(server.url("/page"), server.policy())
    assert response.content == b"<p>hi</p>" and response.status == 200
    assert response.content_type == "text/html" and response.charset == "utf-8"


def test_connection_is_pinned_to_the_checked_address(server):
    server.routes["/pinned"] = Route(body=b"ok")
    calls = []

    def resolver(host, port):
        calls.append(host)
        return ["127.0.0.1"]

    policy = NetworkPolicy(allow_endpoints=frozenset({("127.0.0.1", server.port)}), resolver=resolver)
    # rebind.test exists only in our resolver: the request can reach the server only through the pinned IP
    response = fetch(f"http://rebind.test:{server.port}/pinned", policy)
    assert response.content == b"ok"
    assert calls == ["rebind.test"]  # resolved once, by us; the HTTP client never resolved it again
    assert server.requests[-1][1]["host"] == f"rebind.test:{server.port}"  # the name still travels in Host


def test_redirects_are_followed_and_recorded(server):
    server.routes["/a"] = Route(status=302, headers={"Location": "/b"})
    server.routes["/b"] = Route(status=301, headers={"Location": server.url("/c")})
    server.routes["/c"] = Route(body=b"final")
    response = fetch(server.url("/a"), server.policy())
    assert response.content == b"final" and response.url == server.url("/c")
    assert response.hops == [server.url("/a"), server.url("/b"), server.url("/c")]


@pytest.mark.parametrize(
    "target",
    [
        "http://10.0.0.5/internal",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "file:///etc/passwd",
    ],
)
def test_redirect_to_a_private_address_is_refused(server, target):
    server.routes["/jump"] = Route(status=302, headers={"Location": target})
    with pytest.raises(NetworkPolicyError):
        fetch(server.url("/jump"), server.policy())


def test_redirect_to_another_loopback_server_is_refused_before_it_is_contacted(make_server):
    allowed, internal = make_server(), make_server()
    internal.routes["/admin"] = Route(body=b"internal secret")
    allowed.routes["/jump"] = Route(status=307, headers={"Location": internal.url("/admin")})
    with pytest.raises(NetworkPolicyError, match="loopback"):
        fetch(allowed.url("/jump"), allowed.policy())
    assert [path for path, _ in allowed.requests] == ["/jump"]
    assert internal.requests == []


def test_redirect_loops_stop_at_the_hop_limit(server):
    server.routes["/loop"] = Route(status=302, headers={"Location": "/loop"})
    with pytest.raises(FetchError, match="too many redirects"):
        fetch(server.url("/loop"), server.policy(max_redirects=3))
    assert len(server.requests) == 4


def test_declared_oversize_body_is_refused(server):
    server.routes["/big"] = Route(body=b"x" * 5000)
    with pytest.raises(FetchError, match="above the limit of 1000 bytes"):
        fetch(server.url("/big"), server.policy(max_bytes=1000))


def test_undeclared_oversize_body_is_cut_off_while_streaming(server):
    server.routes["/stream"] = Route(body=b"x" * 200_000, content_length=False)
    with pytest.raises(FetchError, match="more than the limit of 1000 bytes"):
        fetch(server.url("/stream"), server.policy(max_bytes=1000))


def test_slow_server_times_out(server):
    gate = threading.Event()  # the server answers only once the fetch has given up
    server.routes["/slow"] = Route(body=b"late", gate=gate)
    try:
        with pytest.raises(FetchError, match="timed out"):
            fetch(server.url("/slow"), server.policy(read_timeout=0.5))
    finally:
        gate.set()


def test_trickling_server_hits_the_total_time_limit(server):
    # Each byte comes well within read_timeout, and the body would take 20 minutes in all: only the
    # total limit can end this fetch.
    server.routes["/drip"] = Route(body=b"y" * 12_000, drip=0.1)
    with pytest.raises(FetchError, match="took longer than 0.8 s in total; download stopped"):
        fetch(server.url("/drip"), server.policy(total_timeout=0.8, read_timeout=10))


def test_headers_sent_one_byte_at_a_time_hit_the_total_time_limit(slow_headers):
    """Each read returns a byte, so no read timeout fires; the total limit must still hold."""
    policy = slow_headers.policy(read_timeout=1.0, total_timeout=1.0)
    start = time.monotonic()
    with pytest.raises(FetchError, match=r"took longer than 1 s in total"):
        fetch(slow_headers.url(), policy)
    assert time.monotonic() - start < 2.0


def test_http_errors_are_reported(server):
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch(server.url("/missing"), server.policy())


# ---- content encodings -----------------------------------------------------------------------


def test_identity_is_requested_and_compressed_bodies_are_still_decoded(server):
    text = b"<p>" + b"hello " * 1000 + b"</p>"
    server.routes["/gz"] = Route(body=gzip.compress(text), headers={"Content-Encoding": "gzip"})
    server.routes["/zlib"] = Route(body=zlib.compress(text), headers={"Content-Encoding": "deflate"})
    raw = zlib.compressobj(wbits=-15)
    server.routes["/raw"] = Route(
        body=raw.compress(text) + raw.flush(), headers={"Content-Encoding": "deflate"}
    )
    for path in ("/gz", "/zlib", "/raw"):
        assert fetch(server.url(path), server.policy()).content == text, path
    assert all(headers["accept-encoding"] == "identity" for _, headers in server.requests)


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, br"])
def test_undecodable_encodings_are_refused(server, encoding):
    server.routes["/enc"] = Route(body=b"\x00" * 100, headers={"Content-Encoding": encoding})
    with pytest.raises(FetchError, match=f"Content-Encoding '{encoding}'.*only identity, gzip"):
        fetch(server.url("/enc"), server.policy())


def test_corrupt_gzip_is_a_fetch_error(server):
    server.routes["/bad"] = Route(body=b"not gzip at all", headers={"Content-Encoding": "gzip"})
    with pytest.raises(FetchError, match="corrupt gzip body"):
        fetch(server.url("/bad"), server.policy())


def test_gzip_bomb_is_refused_within_bounded_memory(server):
    limit = 2_000_000
    bomb = gzip.compress(b"\x00" * 64_000_000, compresslevel=9)  # ~60 KB that inflates to 64 MB
    server.routes["/bomb"] = Route(body=bomb, headers={"Content-Encoding": "gzip"})
    server.routes["/small"] = Route(body=b"x" * 1000)

    def peak(path):
        error = None
        tracemalloc.start()
        try:
            fetch(server.url(path), server.policy(max_bytes=limit))
        except FetchError as exc:
            error = exc
        finally:
            used = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        return used, error

    baseline, _ = peak("/small")  # the client itself (TLS context, ...)
    used, error = peak("/bomb")
    assert error is not None and "more than the limit of 2000000 bytes (after gzip decoding)" in str(error)
    assert used - baseline < 3 * limit, f"peak {used / 1e6:.1f} MB, baseline {baseline / 1e6:.1f} MB"
