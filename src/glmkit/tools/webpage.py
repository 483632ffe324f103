"""HTML to readable markdown for ``read_webpage`` (GLM-5V report section 3.1).

The page is parsed into a tree (lxml's HTML parser through BeautifulSoup when lxml is installed,
else Python's ``html.parser``, made linear, see :func:`parse_html`); nothing on it runs. Scripts,
styles, other non-content elements and hidden elements (``hidden``, ``aria-hidden``, an inline
``display: none`` or ``visibility: hidden``) are dropped. Headings, lists, links, emphasis, code
(with its language), quotes and data tables become markdown; layout tables (tables that hold
headings, lists, code or other tables, or say ``role="presentation"``) are read as the blocks they
hold. Links and images are resolved against the page's final URL; a link without text is labelled
by its ``aria-label`` or ``title`` or dropped, and a link to a place on the same page is plain
text. Raster images are also listed at the end, so the model can pass their URLs to
``load_image_from_url`` (SVG images are named, not listed: they cannot be decoded).

Conversion is linear in the page size and stops with :class:`ConversionTimeout` past a time limit.
The parser and the renderer were chosen by measurement against lxml-based and library converters
on Debian's HTML manuals (``benchmarks/webpage_converters.py``; ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import collections
import importlib.util
import re
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urldefrag, urljoin, urlsplit

from bs4 import BeautifulSoup, NavigableString, PageElement, Tag, XMLParsedAsHTMLWarning
from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction

from glmkit.tools.base import ToolError

# Elements whose content is never shown to a reader (or is code); the <title> is shown once, as the header.
DROPPED_TAGS = frozenset(
    {"script", "style", "noscript", "template", "iframe", "object", "embed", "svg", "canvas", "head",
     "select", "option", "input", "button", "textarea", "link", "meta", "base", "frame", "frameset", "applet",
     "title"}
)  # fmt: skip
BLOCK_TAGS = frozenset(
    {"p", "div", "section", "article", "main", "header", "footer", "nav", "aside", "figure", "figcaption",
     "address", "form", "fieldset", "details", "summary", "center", "body", "html", "caption", "legend"}
)  # fmt: skip
_UNSAFE_LINK_SCHEMES = ("javascript", "vbscript", "data", "file")
# An inline style that hides the element from every reader.
_HIDDEN_STYLE = re.compile(
    r"(?:^|;)\s*(?:display\s*:\s*none|visibility\s*:\s*hidden)\s*(?:!important\s*)?(?:;|$)", re.I
)
# Block content that a data table's cell never holds: a table holding it is a layout table.
_LAYOUT_CONTENT = ("h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "pre", "blockquote", "table", "hr")
# Code languages from class names: language-x (highlight.js, Prism, CommonMark), lang-x, highlight-x
# and sourceCode x (Sphinx, pandoc), brush: x (SyntaxHighlighter); bare names in _KNOWN_LANGUAGES
# (rustdoc writes <pre class="rust">).
_CODE_CLASS = re.compile(r"^(?:language|lang|highlight|brush)[-:]([\w+#.-]+)$", re.I)
_KNOWN_LANGUAGES = frozenset(
    {"bash", "c", "cpp", "css", "go", "html", "java", "javascript", "js", "json", "python", "py", "ruby",
     "rust", "sh", "shell", "sql", "toml", "ts", "typescript", "xml", "yaml", "console", "text"}
)  # fmt: skip
_GENERIC_CODE_CLASSES = frozenset({"highlight", "sourcecode", "source", "code", "notranslate", "default"})
_SKIPPED_STRINGS = (Comment, Declaration, Doctype, ProcessingInstruction)
# List continuation lines are indented with this placeholder, which survives the space stripping
# of :func:`_tidy` and becomes a space at the very end.
_INDENT = "\x00"


@dataclass
class WebPage:
    """A page rendered for the model: title, markdown body, and the links and images it contains."""

    title: str
    markdown: str
    url: str | None = None
    links: list[tuple[str, str]] = field(default_factory=list)  # (text, absolute url)
    images: list[tuple[str, str]] = field(default_factory=list)  # (alt text, absolute url)

    def render(self, include_image_list: bool = True) -> str:
        """Markdown with a header (title, URL) and, optionally, the list of image URLs at the end."""
        head = [f"# {self.title}" if self.title else "", f"URL: {self.url}" if self.url else ""]
        parts = ["\n".join(h for h in head if h), self.markdown]
        if include_image_list and self.images:
            listed = [
                f"{i}. {src}" + (f" ({alt})" if alt else "") for i, (alt, src) in enumerate(self.images, 1)
            ]
            parts.append("## Images on this page\n\n" + "\n".join(listed))
        return "\n\n".join(p for p in parts if p).strip() + "\n"


def _safe_url(raw: str | None, base: str | None) -> str | None:
    if not raw:
        return None
    raw = raw.strip()
    try:
        if urlsplit(raw).scheme.lower() in _UNSAFE_LINK_SCHEMES:
            return None
        return urljoin(base, raw) if base else raw
    except ValueError:  # e.g. "http://[broken/" (an invalid IPv6 host): the link becomes plain text
        return None


def _escape_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _inline(parts: list[str]) -> str:
    return re.sub(r"\s+", " ", "".join(parts)).strip()


def _list_start(node: Tag) -> int:
    # Bounded and ASCII-only: "²" passes str.isdigit() but not int(), and a 5000-digit value
    # exceeds Python's int conversion limit.
    match = re.fullmatch(r"\d{1,9}", str(node.get("start", "")).strip(), flags=re.ASCII)
    return int(match.group()) if match else 1


_Finish = Callable[[list[str]], str]


class _Contents(NamedTuple):
    """A pending item rendered as its node's children, each into its own buffer (list items, cells)."""

    node: Tag
    finish: _Finish


@dataclass(slots=True)
class _Frame:
    """One open element on the explicit render stack."""

    pending: Iterator[PageElement | _Contents]
    parts: list[str]  # this frame's buffer, or its parent's when ``finish`` is None
    finish: _Finish | None = None  # None: the element writes straight into its parent's buffer
    target: list[str] | None = None  # where the finished text goes
    close: str = ""  # appended to the shared buffer when a ``finish``-less element ends
    depth: int = 0  # buffered elements open, this one included


class ConversionTimeout(ToolError):
    """The page took longer than the conversion time limit (a page built to be slow to convert)."""


# Elements whose markdown needs their rendered content (headings, emphasis, lists, links, ...) copy
# that content once per nesting level; beyond this many the rest render as plain text, so a hostile
# page of deeply nested tags costs linear time. Real pages stay far below it.
MAX_FORMAT_DEPTH = 32


class _Renderer:
    """Walks the parse tree once and emits markdown; records links and images on the way.

    The walk keeps an explicit stack rather than recursing: html.parser nests unclosed tags
    (``<p>``, ``<li>``, ``<td>`` on old-style pages), so a page can be thousands of levels deep.
    """

    def __init__(
        self, base_url: str | None, page_url: str | None = None, deadline: float | None = None
    ) -> None:
        self.base_url = base_url
        self.page = urldefrag(page_url or base_url or "").url
        self.deadline = deadline
        self.links: list[tuple[str, str]] = []
        self.images: list[tuple[str, str]] = []
        self.rows: set[int] = set()  # ids of the <tr> that an open table renders as its own rows
        self.layout: set[int] = set()  # ids of the rows and cells of layout tables: rendered as blocks
        self.items: set[int] = set()  # ids of the <li> that an open list renders as its own items

    def render(self, root: Tag) -> str:
        """Markdown of ``root``'s children."""
        out: list[str] = []
        stack = [_Frame(iter(root.contents), out)]
        steps = 0
        while stack:
            steps += 1
            if self.deadline is not None and steps % 1024 == 0 and time.monotonic() > self.deadline:
                raise ConversionTimeout("the page took too long to convert to text; it was not read")
            frame = stack[-1]
            item = next(frame.pending, None)
            if item is None:
                stack.pop()
                if frame.finish is None:
                    frame.parts.append(frame.close)
                else:
                    assert frame.target is not None
                    frame.target.append(frame.finish(frame.parts))
            elif isinstance(item, _Contents):
                self._buffer(stack, frame, item.node.contents, item.finish)
            else:
                self._open(item, frame, stack)
        return "".join(out)

    @staticmethod
    def _buffer(stack: list[_Frame], parent: _Frame, items: Iterable[Any], finish: _Finish) -> None:
        stack.append(_Frame(iter(items), [], finish, parent.parts, depth=parent.depth + 1))

    @staticmethod
    def _transparent(stack: list[_Frame], parent: _Frame, node: Tag, around: str = "") -> None:
        parent.parts.append(around)
        stack.append(_Frame(iter(node.contents), parent.parts, close=around, depth=parent.depth))

    def _open(self, node: PageElement, frame: _Frame, stack: list[_Frame]) -> None:
        """Emit a leaf's markdown into ``frame`` or push a frame for an element with content."""
        out = frame.parts
        if isinstance(node, _SKIPPED_STRINGS):
            return
        if isinstance(node, NavigableString):
            out.append(re.sub(r"\s+", " ", str(node).replace(_INDENT, "")))
            return
        if not isinstance(node, Tag):
            return
        name = node.name.lower()
        if name in DROPPED_TAGS or _hidden(node):
            return
        if (name == "tr" and id(node) in self.rows) or (name == "li" and id(node) in self.items):
            return
        if id(node) in self.layout:
            self._transparent(stack, frame, node, "\n\n")
        elif name == "pre":
            fence = "```" + _code_language(node)
            out.append(f"\n\n{fence}\n" + node.get_text().strip("\n") + "\n```\n\n")
        elif name == "br":
            out.append("\n")
        elif name == "hr":
            out.append("\n\n---\n\n")
        elif name == "img":
            out.append(self.image(node))
        elif name == "code":
            out.append(_wrap(re.sub(r"\s+", " ", node.get_text()), "`"))
        elif name in BLOCK_TAGS or name == "dl":
            self._transparent(stack, frame, node, "\n\n")
        elif frame.depth >= MAX_FORMAT_DEPTH or not self._format(node, name, frame, stack):
            self._transparent(stack, frame, node)

    def _format(self, node: Tag, name: str, frame: _Frame, stack: list[_Frame]) -> bool:
        """Push a buffered frame for an element whose markdown wraps its content; False if none."""
        finish: _Finish
        if re.fullmatch(r"h[1-6]", name):
            hashes = "#" * int(name[1])

            def finish(parts: list[str]) -> str:
                text = _inline(parts)
                return f"\n\n{hashes} {text}\n\n" if text else ""

        elif name in ("ul", "ol", "menu"):
            self.list_block(node, name == "ol", frame, stack)
            return True
        elif name == "li":  # a stray <li> outside a list

            def finish(parts: list[str]) -> str:
                return "\n\n- " + _inline(parts) + "\n\n"

        elif name == "blockquote":
            finish = _quote
        elif name == "table":
            self.table(node, frame, stack)
            return True
        elif name == "dt":

            def finish(parts: list[str]) -> str:
                return "\n\n**" + _inline(parts) + "**\n"

        elif name == "dd":
            finish = _definition

        elif name == "a":
            finish = self.link(node)
        elif name in ("strong", "b"):

            def finish(parts: list[str]) -> str:
                return _wrap("".join(parts), "**")

        elif name in ("em", "i"):

            def finish(parts: list[str]) -> str:
                return _wrap("".join(parts), "*")

        else:
            return False
        self._buffer(stack, frame, node.contents, finish)
        return True

    def link(self, node: Tag) -> _Finish:
        """The finish of an ``<a>``: a markdown link to its safe absolute href, else plain text.

        A link without text (an icon) takes its ``aria-label`` or ``title``, or is dropped; a link to a
        place on this same page is plain text.
        """
        href = _safe_url(node.get("href"), self.base_url)  # type: ignore[arg-type]
        if href and self.page and urldefrag(href).url == self.page and "#" in href:
            href = None  # same-page anchor: the model cannot go there

        def finish(parts: list[str]) -> str:
            text = "".join(parts).strip()
            if not text:
                label = node.get("aria-label") or node.get("title") or ""
                text = re.sub(r"\s+", " ", str(label)).strip()
            if not href or not text:
                return text
            self.links.append((re.sub(r"\s+", " ", text), href))
            return f"[{text}]({href})"

        return finish

    def image(self, node: Tag) -> str:
        """``![alt](src)``, the image listed for ``load_image_from_url``; ``[image: alt]`` for an SVG
        or inline image, which that tool cannot load."""
        raw = node.get("src") or node.get("data-src")
        src = _safe_url(raw, self.base_url)  # type: ignore[arg-type]
        alt = re.sub(r"\s+", " ", str(node.get("alt") or "")).strip()
        if not src or _is_svg(src):  # inline data, script URLs and vector images are not listed
            return f"[image: {alt}]" if alt else ""
        self.images.append((alt, src))
        return f"![{alt}]({src})"

    def list_block(self, node: Tag, ordered: bool, frame: _Frame, stack: list[_Frame]) -> None:
        """Push a frame rendering each direct ``<li>`` into its own buffer, then numbering them."""
        first_number = _list_start(node) if ordered else 1

        def finish(bodies: list[str]) -> str:
            lines = []
            for number, body in enumerate(bodies, first_number):
                marker = f"{number}. " if ordered else "- "
                body = _tidy(body).strip()
                body = re.sub(r"\n{2,}", "\n", body)  # list items stay compact
                first, *rest = body.split("\n") if body else [""]
                lines.append(marker + first)
                lines.extend(_INDENT * len(marker) + line for line in rest)
            return "\n\n" + "\n".join(lines) + "\n\n"

        own = _own_items(node)
        self.items.update(id(li) for li in own)  # rendered here, so skipped inside an earlier item
        items = [_Contents(li, "".join) for li in own]
        self._buffer(stack, frame, items, finish)

    def table(self, node: Tag, frame: _Frame, stack: list[_Frame]) -> None:
        """Push a frame rendering each cell of this table's own rows, then laying out the grid.

        A layout table is read as the blocks its cells hold, in order."""
        rows = _own_rows(node)
        if _is_layout_table(node, rows):
            for tr in rows:
                self.layout.add(id(tr))
                self.layout.update(id(cell) for cell in tr.find_all(["th", "td"], recursive=False))
            self._transparent(stack, frame, node, "\n\n")
            return
        widths, cells = [], []
        for tr in rows:
            self.rows.add(id(tr))  # rendered here as a row, so skipped inside an enclosing cell
            row = tr.find_all(["th", "td"], recursive=False)
            if row:
                widths.append(len(row))
                cells.extend(_Contents(cell, _cell) for cell in row)

        def finish(texts: list[str]) -> str:
            if not widths:
                return "\n\n\n\n"
            rows, at = [], 0
            for n in widths:
                rows.append(texts[at : at + n])
                at += n
            width = max(widths)
            rows = [r + [""] * (width - len(r)) for r in rows]
            lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * width]
            lines.extend("| " + " | ".join(r) + " |" for r in rows[1:])
            return "\n\n" + "\n".join(lines) + "\n\n"

        self._buffer(stack, frame, cells, finish)


def _own_rows(table: Tag) -> list[Tag]:
    """The ``<tr>`` of ``table`` in document order; rows of nested tables render inside their cell.

    html.parser nests an unclosed ``<tr>`` inside the previous row, so rows are searched inside rows.
    """
    rows, pending = [], list(reversed(table.contents))
    while pending:
        node = pending.pop()
        if not isinstance(node, Tag) or node.name.lower() == "table":
            continue
        if node.name.lower() == "tr":
            rows.append(node)
        pending.extend(reversed(node.contents))
    return rows


def _hidden(node: Tag) -> bool:
    """``hidden``, ``aria-hidden="true"`` or an inline style hiding the element."""
    if node.get("hidden") is not None or node.get("aria-hidden") == "true":
        return True
    style = node.get("style")
    return isinstance(style, str) and _HIDDEN_STYLE.search(style) is not None


def _is_layout_table(table: Tag, rows: list[Tag]) -> bool:
    """A table used for page layout, not data: ``role="presentation"``/``"none"``, or a cell that holds
    headings, lists, code, quotes or another table (libxslt's manual, old sites, e-mails)."""
    if str(table.get("role", "")).lower() in ("presentation", "none"):
        return True
    for tr in rows:
        for cell in tr.find_all(["th", "td"], recursive=False):
            if cell.find(_LAYOUT_CONTENT) is not None:
                return True
    return False


def _code_language(pre: Tag) -> str:
    """The language of a ``<pre>`` block from its, its ``<code>``'s or its wrappers' classes ('' if none)."""
    code = pre.find("code", recursive=False)
    candidates: list[Tag] = [pre, *([code] if isinstance(code, Tag) else [])]
    parent = pre.parent
    for _ in range(2):  # Sphinx: <div class="highlight-python"><div class="highlight"><pre>
        if isinstance(parent, Tag):
            candidates.append(parent)
            parent = parent.parent
    for position, node in enumerate(candidates):
        lang = node.get("data-lang")
        if isinstance(lang, str) and re.fullmatch(r"[\w+#.-]{1,32}", lang):
            return lang.lower()
        classes = node.get("class") or []
        for name in classes if isinstance(classes, list) else str(classes).split():
            match = _CODE_CLASS.match(name)
            if match and match.group(1).lower() not in _GENERIC_CODE_CLASSES:
                return match.group(1).lower()
            if position < 2 and name.lower() in _KNOWN_LANGUAGES:  # bare names on <pre>/<code> only
                return name.lower()
    return ""


def _is_svg(url: str) -> bool:
    """A vector image (``.svg``/``.svgz`` path or an SVG data URL), which image decoders cannot read."""
    path = urlsplit(url).path.lower()
    return path.endswith((".svg", ".svgz")) or url.lower().startswith("data:image/svg")


def _definition(parts: list[str]) -> str:
    """A ``<dd>``: ``: text`` after its term, or its blocks as they are when it holds code, lists or
    paragraphs (Sphinx and texinfo API pages put whole sections in one)."""
    joined = "".join(parts)
    if "\n" not in joined.strip():  # text is whitespace-collapsed: a newline means block content
        return ": " + _inline(parts) + "\n"
    return "\n\n" + _tidy(joined).strip() + "\n\n"


def _own_items(lst: Tag) -> list[Tag]:
    """The ``<li>`` of a list in document order; items of nested lists render inside their item.

    html.parser nests an unclosed ``<li>`` inside the previous one, so items are searched inside items.
    """
    items, pending = [], list(reversed(lst.contents))
    while pending:
        node = pending.pop()
        if not isinstance(node, Tag) or node.name.lower() in ("ul", "ol", "menu", "dl", "table"):
            continue
        if node.name.lower() == "li":
            items.append(node)
        pending.extend(reversed(node.contents))
    return items


def _cell(parts: list[str]) -> str:
    return _escape_cell(_inline(parts))


def _quote(parts: list[str]) -> str:
    inner = _tidy("".join(parts)).strip()
    return "\n\n" + "\n".join("> " + line if line else ">" for line in inner.split("\n")) + "\n\n"


def _wrap(text: str, mark: str) -> str:
    stripped = text.strip()
    if not stripped:
        return text
    lead = " " if text[:1].isspace() else ""
    trail = " " if text[-1:].isspace() else ""
    return f"{lead}{mark}{stripped}{mark}{trail}"


def _tidy(markdown: str) -> str:
    """Strip the spaces that HTML source indentation leaves at line ends; keep code and list indents."""
    out, fenced = [], False
    for line in markdown.split("\n"):
        if line.lstrip(_INDENT + " ").startswith("```"):
            fenced = not fenced
            out.append(line.strip(" "))
        else:
            out.append(line.rstrip() if fenced else line.strip(" "))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out))


class _CountedNames(collections.Counter):  # type: ignore[type-arg]
    """A multiset standing in for bs4's list of void tags awaiting a stray end tag.

    bs4's ``html.parser`` builder keeps that list as a Python list and scans it at every end tag, so
    80,000 ``<br>`` then 80,000 ``</i>`` take minutes; a counter makes each check O(1)."""

    def append(self, name: str) -> None:
        self[name] += 1

    def remove(self, name: str) -> None:
        self[name] -= 1
        if self[name] <= 0:
            del self[name]

    def __contains__(self, name: object) -> bool:
        return self.get(name, 0) > 0  # type: ignore[call-overload]


def _linear_html_parser_builder() -> Any:
    """bs4's ``html.parser`` tree builder with :class:`_CountedNames` (``None`` if bs4 changed)."""
    try:
        from bs4.builder._htmlparser import BeautifulSoupHTMLParser, HTMLParserTreeBuilder
    except ImportError:
        return None

    class _Parser(BeautifulSoupHTMLParser):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.already_closed_empty_element = _CountedNames()  # type: ignore[assignment]

    class _Builder(HTMLParserTreeBuilder):
        def feed(self, markup: Any, _parser_class: Any = _Parser) -> None:
            super().feed(markup, _parser_class=_parser_class)

    return _Builder()


def default_parser() -> str:
    """``"lxml"`` when lxml is installed (faster, and by the benchmark the better converter's parser),
    else ``"html.parser"``."""
    return "lxml" if importlib.util.find_spec("lxml") is not None else "html.parser"


def parse_html(html: str | bytes, *, encoding: str | None = None, parser: str | None = None) -> BeautifulSoup:
    """A parse tree of ``html``, in time linear in its size; ``parser`` is ``"lxml"`` or
    ``"html.parser"`` (default: :func:`default_parser`)."""
    parser = parser or default_parser()
    from_encoding = encoding if isinstance(html, bytes) else None
    with warnings.catch_warnings():  # XHTML pages (gtk-doc, DocBook) are read as HTML on purpose
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        if parser == "html.parser":
            builder = _linear_html_parser_builder()
            if builder is not None:
                return BeautifulSoup(html, builder=builder, from_encoding=from_encoding)
        return BeautifulSoup(html, parser, from_encoding=from_encoding)


def html_to_markdown(
    html: str | bytes,
    base_url: str | None = None,
    *,
    encoding: str | None = None,
    time_limit: float | None = 20.0,
    parser: str | None = None,
) -> WebPage:
    """Render ``html`` as markdown; relative links and images resolve against ``base_url``.

    ``encoding`` is the charset from the HTTP headers, if any (bytes without it are sniffed from
    ``<meta charset>`` and the content). Conversion stops with :class:`ConversionTimeout` after
    ``time_limit`` seconds (``None``: no limit); ``parser`` as in :func:`parse_html`.
    """
    deadline = None if time_limit is None else time.monotonic() + time_limit
    soup = parse_html(html, encoding=encoding, parser=parser)
    if deadline is not None and time.monotonic() > deadline:
        raise ConversionTimeout("the page took too long to parse; it was not read")
    # <base href> only changes how links resolve: the page is still the one fetched from ``base_url``.
    link_base = base_url
    base_tag = soup.find("base", href=True)
    if isinstance(base_tag, Tag):
        link_base = _safe_url(str(base_tag["href"]), base_url) or base_url
    title_tag = soup.find("title")
    title = re.sub(r"\s+", " ", title_tag.get_text()).strip() if isinstance(title_tag, Tag) else ""
    renderer = _Renderer(link_base, base_url, deadline)
    body = _tidy(renderer.render(soup)).strip()
    body = body.replace(_INDENT, " ")
    if not title:
        h1 = soup.find("h1")
        title = re.sub(r"\s+", " ", h1.get_text()).strip() if isinstance(h1, Tag) else ""
    return WebPage(title=title, markdown=body, url=base_url, links=renderer.links, images=renderer.images)
