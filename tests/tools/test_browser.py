"""load_image_from_url and read_webpage against loopback servers (through the explicit opt-in)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from PIL import Image

from glmkit.tools.base import ToolContext
from glmkit.tools.browser import LoadImageFromUrlTool, ReadWebpageTool

from .conftest import Route, png_header_only


def png_bytes(size=(40, 30), color=(0, 128, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def test_load_image_is_refused_on_loopback_by_default(server):
    server.routes["/a.png"] = Route(body=png_bytes(), headers={"Content-Type": "image/png"})
    result = LoadImageFromUrlTool()({"url": server.url("/a.png")}, ToolContext())
    assert not result.ok and "loopback" in result.error
    assert server.requests == []


def test_load_image_with_the_test_opt_in(server):
    server.routes["/a.png"] = Route(body=png_bytes(), headers={"Content-Type": "image/png"})
    ctx = ToolContext(allow_private_network=True)
    result = LoadImageFromUrlTool()({"url": server.url("/a.png")}, ctx)
    assert result.ok, result.error
    assert result.image_ids == ["img_0"] and ctx.images["img_0"].size == (40, 30)
    assert ctx.images["img_0"].getpixel((0, 0)) == (0, 128, 255)
    assert "40x30" in result.text


def test_load_image_follows_a_redirect_but_not_to_private_space(server):
    server.routes["/a.png"] = Route(body=png_bytes(), headers={"Content-Type": "image/png"})
    server.routes["/r"] = Route(status=302, headers={"Location": "/a.png"})
    server.routes["/evil"] = Route(status=302, headers={"Location": "http://192.168.1.1/cam.jpg"})
    tool = LoadImageFromUrlTool(policy=server.policy())
    ok = tool({"url": server.url("/r")}, ToolContext())
    assert ok.ok and "redirected to" in ok.text
    refused = tool({"url": server.url("/evil")}, ToolContext())
    assert not refused.ok and "192.168.1.1" in refused.error and "private" in refused.error


def test_load_image_refuses_a_bomb(server):
    server.routes["/bomb.png"] = Route(
        body=png_header_only(20_000, 20_000), headers={"Content-Type": "image/png"}
    )
    result = LoadImageFromUrlTool(policy=server.policy())({"url": server.url("/bomb.png")}, ToolContext())
    assert not result.ok and "decompression bomb" in result.error


def test_load_image_refuses_html_and_file_urls(server):
    server.routes["/page"] = Route(body=b"<html></html>", headers={"Content-Type": "text/html"})
    tool = LoadImageFromUrlTool(policy=server.policy())
    result = tool({"url": server.url("/page")}, ToolContext())
    assert not result.ok and "read_webpage" in result.error
    result = tool({"url": "file:///etc/passwd"}, ToolContext())
    assert not result.ok and "scheme 'file'" in result.error


HTML = b"""<html><head><title>Shop</title><script>steal()</script></head><body>
<h1>Products</h1><ul><li><a href="/p/1">Lamp</a></li><li>Chair</li></ul><img src="/i/lamp.jpg" alt="lamp">
</body></html>"""


def test_read_webpage_returns_markdown_with_links_and_images(server):
    server.routes["/shop"] = Route(body=HTML, headers={"Content-Type": "text/html; charset=utf-8"})
    result = ReadWebpageTool(policy=server.policy())({"url": server.url("/shop")}, ToolContext())
    assert result.ok, result.error
    assert result.text.startswith("# Shop\nURL: " + server.url("/shop"))
    assert "# Products" in result.text and f"- [Lamp]({server.url('/p/1')})" in result.text
    assert "steal" not in result.text
    assert result.data["images"] == [server.url("/i/lamp.jpg")]
    assert result.data["links"] == [["Lamp", server.url("/p/1")]]


def test_read_webpage_paginates_long_pages(server):
    body = ("<p>" + "word " * 2000 + "</p>").encode()
    server.routes["/long"] = Route(body=body, headers={"Content-Type": "text/html"})
    tool = ReadWebpageTool(policy=server.policy())
    first = tool({"url": server.url("/long"), "max_chars": 1000}, ToolContext())
    total = first.data["total_chars"]
    assert "call again with start=1000" in first.text
    rest = tool({"url": server.url("/long"), "start": 1000, "max_chars": 100_000}, ToolContext())
    assert "truncated" not in rest.text and len(rest.text) == total - 1000
    past = tool({"url": server.url("/long"), "start": total + 5}, ToolContext())
    assert not past.ok and "past the end" in past.error


def test_read_webpage_plain_text_and_refuses_binary(server):
    server.routes["/notes.txt"] = Route(
        body="plain é".encode(), headers={"Content-Type": "text/plain; charset=utf-8"}
    )
    server.routes["/a.png"] = Route(body=png_bytes(), headers={"Content-Type": "image/png"})
    tool = ReadWebpageTool(policy=server.policy())
    assert tool({"url": server.url("/notes.txt")}, ToolContext()).text == "plain é"
    result = tool({"url": server.url("/a.png")}, ToolContext())
    assert not result.ok and "load_image_from_url" in result.error


def test_read_webpage_refuses_private_addresses_by_default():
    for url in ("http://127.0.0.1:9/", "http://169.254.169.254/latest/meta-data/", "http://[::1]/"):
        result = ReadWebpageTool()({"url": url}, ToolContext())
        assert not result.ok and "refusing" in result.error


def test_read_webpage_size_limit(server):
    server.routes["/huge"] = Route(
        body=b"<p>" + b"a" * 50_000 + b"</p>", headers={"Content-Type": "text/html"}
    )
    result = ReadWebpageTool(policy=server.policy(max_bytes=10_000))(
        {"url": server.url("/huge")}, ToolContext()
    )
    assert not result.ok and "limit of 10000 bytes" in result.error


def test_read_webpage_plain_text_with_an_unknown_charset_reads_as_utf8(server):
    tool = ReadWebpageTool(policy=server.policy())
    for charset in ("x-unknown-42", "rot13"):
        server.routes["/t.txt"] = Route(
            body="plain é \xff".encode() + b"\xfe", headers={"Content-Type": f"text/plain; charset={charset}"}
        )
        result = tool({"url": server.url("/t.txt")}, ToolContext())
        assert result.ok, result.error
        assert result.text == "plain é \xff\ufffd"


def test_read_webpage_survives_old_style_and_malformed_html(server):
    old_style = b"<h1>FAQ</h1>" + b"".join(b"<p>Question %d answered here\n" % i for i in range(300))
    server.routes["/old"] = Route(body=old_style, headers={"Content-Type": "text/html"})
    server.routes["/bad"] = Route(
        body=b'<base href="https://other.example/"><title>T</title><p>See <a href="http://[broken/">x</a>'
        b' <a href="a">a</a></p>',
        headers={"Content-Type": "text/html"},
    )
    tool = ReadWebpageTool(policy=server.policy())
    old = tool({"url": server.url("/old")}, ToolContext())
    assert old.ok, old.error
    assert "Question 0 answered" in old.text and "Question 299 answered" in old.text
    bad = tool({"url": server.url("/bad")}, ToolContext())
    assert bad.ok, bad.error
    assert bad.text == f"# T\nURL: {server.url('/bad')}\n\nSee x [a](https://other.example/a)\n"


def test_read_webpage_fetches_and_converts_a_page_once_per_context(server, monkeypatch):
    import glmkit.tools.browser as browser

    body = ("<p>" + "word " * 4000 + "</p>").encode()
    server.routes["/long"] = Route(body=body, headers={"Content-Type": "text/html"})
    conversions = []
    real = browser.html_to_markdown
    monkeypatch.setattr(browser, "html_to_markdown", lambda *a, **k: conversions.append(1) or real(*a, **k))
    tool = ReadWebpageTool(policy=server.policy())
    context = ToolContext()
    texts = [
        tool({"url": server.url("/long"), "start": s, "max_chars": 5000}, context).text
        for s in (0, 5000, 10000)
    ]
    assert len(server.requests) == 1 and len(conversions) == 1
    assert "word word" in texts[1] and "start=15000" in texts[2]
    tool({"url": server.url("/long")}, ToolContext())  # another conversation fetches again
    assert len(server.requests) == 2


def test_page_cache_is_bounded():
    from glmkit.tools.browser import PageCache, ReadPage

    cache = PageCache(max_chars=100, max_pages=3)
    for i in range(5):
        cache.put(f"u{i}", ReadPage(f"u{i}", "x" * 40))
    assert len(cache) == 2 and cache.get("u0") is None and cache.get("u4") is not None
    cache.put("big", ReadPage("big", "x" * 101))  # alone over the limit: not kept
    assert cache.get("big") is None


MANUALS = Path("/usr/share/doc/libxml2/html")


@pytest.mark.skipif(not (MANUALS / "FAQ.html").exists(), reason="Debian package libxml2-doc not installed")
def test_read_webpage_on_a_real_manual_with_layout_tables(server):
    """libxml2's HTML manual lays every page out in tables: its headings and lists must survive."""
    from bs4 import BeautifulSoup

    raw = (MANUALS / "FAQ.html").read_bytes()
    server.routes["/FAQ.html"] = Route(body=raw, headers={"Content-Type": "text/html"})
    result = ReadWebpageTool(policy=server.policy())(
        {"url": server.url("/FAQ.html"), "max_chars": 100_000}, ToolContext()
    )
    assert result.ok, result.error
    soup = BeautifulSoup(raw, "html.parser")
    headings = len(soup.find_all(re.compile(r"^h[1-6]$")))
    items = len(soup.find_all("li"))
    assert headings >= 5 and items >= 50
    body = result.text.split("## Images on this page")[0]
    assert len(re.findall(r"^#{1,6} ", body, re.M)) >= headings  # the page title adds one
    assert len(re.findall(r"^\s*(?:[-*+]|\d+\.) ", body, re.M)) == items
