"""HTML to readable markdown for ``read_webpage`` (GLM-5V report section 3.1).

The page is parsed with BeautifulSoup's built-in parser, which builds a tree and runs nothing:
scripts, styles and other non-content elements are dropped before rendering. Headings, lists,
links, emphasis, code, quotes and tables become markdown; links and images are resolved against
the page's final URL and the images are also listed at the end, so the model can pass their URLs
to ``load_image_from_url``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urljoin, urlsplit

from bs4 import BeautifulSoup, NavigableString, PageElement, Tag
from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction

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


# Elements whose markdown needs their rendered content (headings, emphasis, lists, links, ...) copy
# that content once per nesting level; beyond this many the rest render as plain text, so a hostile
# page of deeply nested tags costs linear time. Real pages stay far below it.
MAX_FORMAT_DEPTH = 32


class _Renderer:
    """Walks the parse tree once and emits markdown; records links and images on the way.

    The walk keeps an explicit stack rather than recursing: html.parser nests unclosed tags
    (``<p>``, ``<li>``, ``<td>`` on old-style pages), so a page can be thousands of levels deep.
    """

    def __init__(self, base_url: str | None) -> None:
        self.base_url = base_url
        self.links: list[tuple[str, str]] = []
        self.images: list[tuple[str, str]] = []
        self.rows: set[int] = set()  # ids of the <tr> that an open table renders as its own rows

    def render(self, root: Tag) -> str:
        """Markdown of ``root``'s children."""
        out: list[str] = []
        stack = [_Frame(iter(root.contents), out)]
        while stack:
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
        if name in DROPPED_TAGS or node.get("hidden") is not None or node.get("aria-hidden") == "true":
            return
        if name == "tr" and id(node) in self.rows:
            return
        if name == "pre":
            out.append("\n\n```\n" + node.get_text().strip("\n") + "\n```\n\n")
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

            def finish(parts: list[str]) -> str:
                return ": " + _inline(parts) + "\n"

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
        """The finish of an ``<a>``: a markdown link to its safe absolute href, else plain text."""
        href = _safe_url(node.get("href"), self.base_url)  # type: ignore[arg-type]

        def finish(parts: list[str]) -> str:
            text = "".join(parts).strip()
            if not href:
                return text
            self.links.append((re.sub(r"\s+", " ", text), href))
            return f"[{text or href}]({href})"

        return finish

    def image(self, node: Tag) -> str:
        src = _safe_url(node.get("src") or node.get("data-src"), self.base_url)  # type: ignore[arg-type]
        alt = re.sub(r"\s+", " ", str(node.get("alt") or "")).strip()
        if not src:  # inline data or script URLs are not listed
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

        items = [_Contents(li, "".join) for li in node.find_all("li", recursive=False)]
        self._buffer(stack, frame, items, finish)

    def table(self, node: Tag, frame: _Frame, stack: list[_Frame]) -> None:
        """Push a frame rendering each cell of this table's own rows, then laying out the grid."""
        widths, cells = [], []
        for tr in _own_rows(node):
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


def html_to_markdown(
    html: str | bytes, base_url: str | None = None, *, encoding: str | None = None
) -> WebPage:
    """Render ``html`` as markdown; relative links and images resolve against ``base_url``.

    ``encoding`` is the charset from the HTTP headers, if any (bytes without it are sniffed from
    ``<meta charset>`` and the content).
    """
    soup = BeautifulSoup(html, "html.parser", from_encoding=encoding if isinstance(html, bytes) else None)
    # <base href> only changes how links resolve: the page is still the one fetched from ``base_url``.
    link_base = base_url
    base_tag = soup.find("base", href=True)
    if isinstance(base_tag, Tag):
        link_base = _safe_url(str(base_tag["href"]), base_url) or base_url
    title_tag = soup.find("title")
    title = re.sub(r"\s+", " ", title_tag.get_text()).strip() if isinstance(title_tag, Tag) else ""
    renderer = _Renderer(link_base)
    body = _tidy(renderer.render(soup)).strip()
    body = body.replace(_INDENT, " ")
    if not title:
        h1 = soup.find("h1")
        title = re.sub(r"\s+", " ", h1.get_text()).strip() if isinstance(h1, Tag) else ""
    return WebPage(title=title, markdown=body, url=base_url, links=renderer.links, images=renderer.images)
