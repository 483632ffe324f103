"""HTML to readable markdown for ``read_webpage`` (GLM-5V report section 3.1).

The page is parsed with BeautifulSoup's built-in parser, which builds a tree and runs nothing:
scripts, styles and other non-content elements are dropped before rendering. Headings, lists,
links, emphasis, code, quotes and tables become markdown; links and images are resolved against
the page's final URL and the images are also listed at the end, so the model can pass their URLs
to ``load_image_from_url``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction

# Elements whose content is never shown to a reader (or is code).
DROPPED_TAGS = frozenset(
    {"script", "style", "noscript", "template", "iframe", "object", "embed", "svg", "canvas", "head",
     "select", "option", "input", "button", "textarea", "link", "meta", "base", "frame", "frameset", "applet"}
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
    if urlsplit(raw).scheme.lower() in _UNSAFE_LINK_SCHEMES:
        return None
    return urljoin(base, raw) if base else raw


def _escape_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


class _Renderer:
    """Walks the parse tree once and emits markdown; records links and images on the way."""

    def __init__(self, base_url: str | None) -> None:
        self.base_url = base_url
        self.links: list[tuple[str, str]] = []
        self.images: list[tuple[str, str]] = []

    def children(self, node: Tag, pre: bool = False) -> str:
        return "".join(self.node(child, pre) for child in node.children)

    def node(self, node: object, pre: bool = False) -> str:
        if isinstance(node, _SKIPPED_STRINGS):
            return ""
        if isinstance(node, NavigableString):
            text = str(node).replace(_INDENT, "")
            return text if pre else re.sub(r"\s+", " ", text)
        if not isinstance(node, Tag):
            return ""
        name = node.name.lower()
        if name in DROPPED_TAGS or node.get("hidden") is not None or node.get("aria-hidden") == "true":
            return ""
        if re.fullmatch(r"h[1-6]", name):
            text = self.inline(node)
            return f"\n\n{'#' * int(name[1])} {text}\n\n" if text else ""
        if name in ("ul", "ol", "menu"):
            return "\n\n" + self.list_block(node, ordered=name == "ol") + "\n\n"
        if name == "li":  # a stray <li> outside a list
            return "\n\n- " + self.inline(node) + "\n\n"
        if name == "pre":
            return "\n\n```\n" + node.get_text().strip("\n") + "\n```\n\n"
        if name == "blockquote":
            inner = _tidy(self.children(node)).strip()
            return "\n\n" + "\n".join("> " + line if line else ">" for line in inner.split("\n")) + "\n\n"
        if name == "table":
            return "\n\n" + self.table(node) + "\n\n"
        if name in ("dl",):
            return "\n\n" + self.children(node) + "\n\n"
        if name == "dt":
            return "\n\n**" + self.inline(node) + "**\n"
        if name == "dd":
            return ": " + self.inline(node) + "\n"
        if name == "br":
            return "\n"
        if name == "hr":
            return "\n\n---\n\n"
        if name == "a":
            return self.link(node, pre)
        if name == "img":
            return self.image(node)
        if name in ("strong", "b"):
            return _wrap(self.children(node, pre), "**")
        if name in ("em", "i"):
            return _wrap(self.children(node, pre), "*")
        if name == "code":
            text = node.get_text()
            return text if pre else _wrap(re.sub(r"\s+", " ", text), "`")
        if name in BLOCK_TAGS:
            return "\n\n" + self.children(node, pre) + "\n\n"
        return self.children(node, pre)

    def inline(self, node: Tag) -> str:
        return re.sub(r"\s+", " ", self.children(node)).strip()

    def link(self, node: Tag, pre: bool) -> str:
        text = self.children(node, pre).strip()
        href = _safe_url(node.get("href"), self.base_url)  # type: ignore[arg-type]
        if not href:
            return text
        self.links.append((re.sub(r"\s+", " ", text), href))
        return f"[{text or href}]({href})"

    def image(self, node: Tag) -> str:
        src = _safe_url(node.get("src") or node.get("data-src"), self.base_url)  # type: ignore[arg-type]
        alt = re.sub(r"\s+", " ", str(node.get("alt") or "")).strip()
        if not src:  # inline data or script URLs are not listed
            return f"[image: {alt}]" if alt else ""
        self.images.append((alt, src))
        return f"![{alt}]({src})"

    def list_block(self, node: Tag, ordered: bool) -> str:
        lines = []
        number = int(node.get("start", 1)) if ordered and str(node.get("start", "1")).isdigit() else 1
        for item in node.find_all("li", recursive=False):
            marker = f"{number}. " if ordered else "- "
            number += 1
            body = _tidy(self.children(item)).strip()
            body = re.sub(r"\n{2,}", "\n", body)  # list items stay compact
            first, *rest = body.split("\n") if body else [""]
            lines.append(marker + first)
            lines.extend(_INDENT * len(marker) + line for line in rest)
        return "\n".join(lines)

    def table(self, node: Tag) -> str:
        rows = []
        for tr in node.find_all("tr"):
            if tr.find_parent("table") is not node:
                continue  # rows of nested tables are rendered inside their cell's text
            cells = [_escape_cell(self.inline(cell)) for cell in tr.find_all(["th", "td"], recursive=False)]
            if cells:
                rows.append(cells)
        if not rows:
            return ""
        width = max(len(r) for r in rows)
        rows = [r + [""] * (width - len(r)) for r in rows]
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * width]
        lines.extend("| " + " | ".join(r) + " |" for r in rows[1:])
        return "\n".join(lines)


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
    base_tag = soup.find("base", href=True)
    if isinstance(base_tag, Tag):
        base_url = _safe_url(str(base_tag["href"]), base_url) or base_url
    title_tag = soup.find("title")
    title = re.sub(r"\s+", " ", title_tag.get_text()).strip() if isinstance(title_tag, Tag) else ""
    renderer = _Renderer(base_url)
    body = _tidy(renderer.children(soup)).strip()
    body = body.replace(_INDENT, " ")
    if not title:
        h1 = soup.find("h1")
        title = re.sub(r"\s+", " ", h1.get_text()).strip() if isinstance(h1, Tag) else ""
    return WebPage(title=title, markdown=body, url=base_url, links=renderer.links, images=renderer.images)
