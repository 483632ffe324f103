"""HTML to markdown: structure kept, scripts dropped, links resolved against the final URL."""

from __future__ import annotations

import re
import time

import pytest

from glmkit.tools.webpage import ConversionTimeout, html_to_markdown

PAGE = """<!doctype html>
<html><head><title> Test  Page </title>
<style>body { color: red }</style>
<script>document.write("INJECTED"); fetch("http://10.0.0.1/steal")</script>
</head>
<body onload="alert('x')">
<nav><a href="/home">Home</a> <a href="javascript:alert(1)">Evil</a></nav>
<h1>Main <em>title</em></h1>
<p>Some   <b>bold</b>
   text with a <a href="page2.html">relative link</a>.<br>Second line.</p>
<h2>Lists</h2>
<ul><li>one</li><li>two<ul><li>two-a</li><li>two-b</li></ul></li></ul>
<ol start="3"><li>three</li><li>four</li></ol>
<img src="/img/cat.png" alt="A cat"><img data-src="lazy.jpg" alt="">
<img src="data:image/png;base64,AAAA" alt="inline">
<pre><code>def f():
    return 1</code></pre>
<blockquote><p>quoted</p></blockquote>
<table><tr><th>k</th><th>v</th></tr><tr><td>a|b</td><td>2</td></tr></table>
<noscript>Please enable JavaScript</noscript>
<!-- a comment -->
<template><p>template text</p></template>
<div hidden>hidden text</div>
</body></html>"""


def render():
    return html_to_markdown(PAGE, "https://example.com/dir/index.html")


def test_title_and_headings():
    page = render()
    assert page.title == "Test Page"
    assert "# Main *title*" in page.markdown
    assert "## Lists" in page.markdown


def test_inline_formatting_and_whitespace():
    md = render().markdown
    assert (
        "Some **bold** text with a [relative link](https://example.com/dir/page2.html).\nSecond line." in md
    )


def test_nested_and_ordered_lists():
    md = render().markdown
    assert "- one\n- two\n  - two-a\n  - two-b" in md
    assert "3. three\n4. four" in md


def test_scripts_styles_and_hidden_content_are_dropped():
    md = render().render()
    for gone in ("INJECTED", "document.write", "color: red", "enable JavaScript", "a comment", "template text",
                 "hidden text", "alert", "10.0.0.1"):  # fmt: skip
        assert gone not in md, gone


def test_links_resolve_against_the_page_url_and_unsafe_ones_are_plain_text():
    page = render()
    assert ("Home", "https://example.com/home") in page.links
    assert all(not url.startswith("javascript") for _, url in page.links)
    assert "Evil" in page.markdown and "[Evil]" not in page.markdown


def test_images_are_inlined_and_listed():
    page = render()
    assert page.images == [
        ("A cat", "https://example.com/img/cat.png"),
        ("", "https://example.com/dir/lazy.jpg"),
    ]
    assert "![A cat](https://example.com/img/cat.png)" in page.markdown
    text = page.render()
    assert (
        "## Images on this page\n\n1. https://example.com/img/cat.png (A cat)\n2. https://example.com/dir/lazy.jpg"
        in text
    )
    assert "data:image" not in text


def test_code_quotes_and_tables():
    md = render().markdown
    assert "```\ndef f():\n    return 1\n```" in md
    assert "> quoted" in md
    assert "| k | v |\n|---|---|\n| a\\|b | 2 |" in md


def test_base_tag_and_bytes_with_declared_encoding():
    html = '<html><head><base href="https://cdn.example.org/x/"></head><body><a href="y">é</a></body></html>'
    page = html_to_markdown(html.encode("latin-1"), "https://example.com/", encoding="latin-1")
    assert page.links == [("é", "https://cdn.example.org/x/y")]


def test_render_header():
    text = render().render(include_image_list=False)
    assert text.startswith("# Test Page\nURL: https://example.com/dir/index.html\n\n")
    assert "Images on this page" not in text


def test_deeply_nested_and_unclosed_tags_render_without_recursion():
    for tag in ("p", "li", "td", "font", "b"):  # html.parser nests unclosed tags inside each other
        page = html_to_markdown("<h1>FAQ</h1>" + "".join(f"<{tag}>item {i}\n" for i in range(400)))
        assert [int(n) for n in re.findall(r"item (\d+)", page.markdown)] == list(range(400)), tag
    page = html_to_markdown("<div>" * 2000 + "deep text" + "</div>" * 2000)
    assert page.markdown == "deep text"


def test_unclosed_table_rows_are_rendered_once():
    html = "<table>" + "".join(f"<tr><td>r{i}" for i in range(300)) + "</table>"
    md = html_to_markdown(html).markdown
    assert [int(n) for n in re.findall(r"r(\d+)", md)] == list(range(300))


def test_malformed_urls_become_plain_text_instead_of_failing_the_page():
    page = html_to_markdown(
        '<base href="http://[x"><p>See <a href="http://[broken/">here</a> and <a href="ok">ok</a>'
        '<img src="https://[::1/a.png" alt="pic"></p>',
        "https://example.com/dir/page.html",
    )
    assert page.links == [("ok", "https://example.com/dir/ok")]  # the broken <base> is ignored
    assert "See here and [ok]" in page.markdown and "[image: pic]" in page.markdown
    assert page.images == []


def test_ordered_list_start_must_be_a_small_ascii_number():
    for start, first in (("\u00b2", 1), ("9" * 5000, 1), ("12", 12), (" 7 ", 7), ("-3", 1)):
        md = html_to_markdown(f'<ol start="{start}"><li>a</li><li>b</li></ol>').markdown
        assert md == f"{first}. a\n{first + 1}. b", start


def test_base_href_resolves_links_but_the_page_keeps_its_own_url():
    page = html_to_markdown(
        '<base href="https://other.example/"><p>hi <a href="a">a</a></p>', "https://example.com/p"
    )
    assert page.url == "https://example.com/p"
    assert page.links == [("a", "https://other.example/a")]
    assert "URL: https://example.com/p\n" in page.render() and "other.example/\n" not in page.render()


def test_title_outside_head_is_shown_once():
    page = html_to_markdown("<title>Notes</title><p>body text</p>", "https://example.com/")
    assert page.title == "Notes" and page.markdown == "body text"
    assert page.render().count("Notes") == 1


PARSERS = pytest.mark.parametrize("parser", ["lxml", "html.parser"])


@PARSERS
def test_conversion_is_linear_in_the_page_size(parser):
    """80,000 <br> then 80,000 </i> (640 KB): bs4's html.parser builder scanned a list per end tag."""
    if parser == "lxml":
        pytest.importorskip("lxml")
    page = "<p>" + "<br>" * 80_000 + "</i>" * 80_000 + "<b>end</b></p>"
    start = time.monotonic()
    converted = html_to_markdown(page, parser=parser)
    assert time.monotonic() - start < 10
    assert converted.markdown.endswith("**end**")


def test_conversion_stops_at_its_time_limit():
    page = "<div>" + "<p><b>x</b> y</p>" * 50_000 + "</div>"
    with pytest.raises(ConversionTimeout, match="too long"):
        html_to_markdown(page, time_limit=0.01)


@PARSERS
def test_inline_display_none_and_visibility_hidden_are_dropped(parser):
    page = (
        '<p>shown</p><div style="display:none">secret one</div>'
        '<span style="color: red; DISPLAY : none !important">secret two</span>'
        '<p style="visibility:hidden">secret three</p><p style="display: block">also shown</p>'
    )
    markdown = html_to_markdown(page, parser=parser).markdown
    assert "secret" not in markdown and "shown" in markdown and "also shown" in markdown


@PARSERS
def test_a_layout_table_is_read_as_its_blocks(parser):
    page = (
        "<table><tr><td><a href='/'>Home</a></td><td><h1>Guide</h1><p>Intro.</p>"
        "<h2>Steps</h2><ul><li>one</li><li>two</li></ul><pre>code</pre></td></tr></table>"
        "<table><tr><th>k</th><th>v</th></tr><tr><td>a</td><td>1</td></tr></table>"
    )
    markdown = html_to_markdown(page, "https://x.org/a.html", parser=parser).markdown
    assert "# Guide" in markdown and "## Steps" in markdown
    assert "- one\n- two" in markdown and "```\ncode\n```" in markdown
    assert "| k | v |\n|---|---|\n| a | 1 |" in markdown  # a data table stays a table


@PARSERS
def test_icon_links_anchors_code_languages_and_svg(parser):
    page = (
        '<h2 id="new">new<a class="anchor" href="#new"></a></h2>'
        '<a href="/src/vec.rs.html#400"><span class="icon"></span></a>'
        '<a href="/copy" aria-label="Copy item path"><img src="/clipboard.svg" alt=""></a>'
        '<p>See <a href="#method.push">push</a> and <a href="https://doc.rs/vec.html#method.pop">pop</a>.</p>'
        '<pre class="rust rust-example-rendered"><code>let v = vec![1];</code></pre>'
        '<div class="highlight-python notranslate"><div class="highlight"><pre>print(1)</pre></div></div>'
        '<pre><code class="language-js">x()</code></pre><pre>plain</pre>'
        '<img src="/logo.svg" alt="Logo"><img src="/shot.png" alt="Shot">'
    )
    page_url = "https://doc.rs/vec.html"
    converted = html_to_markdown(page, page_url, parser=parser)
    markdown = converted.markdown
    assert "](https://doc.rs/src" not in markdown and "[https://" not in markdown  # no bare-URL icon link
    assert "[Copy item path](https://doc.rs/copy)" in markdown
    assert "See push and pop." in markdown  # same-page anchors are plain text
    assert "```rust\nlet v = vec![1];\n```" in markdown
    assert "```python\nprint(1)\n```" in markdown and "```js\nx()\n```" in markdown
    assert "```\nplain\n```" in markdown
    assert "[image: Logo]" in markdown and [src for _, src in converted.images] == ["https://doc.rs/shot.png"]


@PARSERS
def test_unclosed_list_items_are_separate_items(parser):
    page = "<ul><li>one<li>two<ul><li>two-a<li>two-b</ul><li>three</ul>"
    markdown = html_to_markdown(page, parser=parser).markdown
    assert markdown == "- one\n- two\n  - two-a\n  - two-b\n- three"
