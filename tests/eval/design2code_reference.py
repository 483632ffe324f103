"""Design2Code's text-block procedure as the reference implementation runs it, re-implemented here on
its own (``metrics/ocr_free_utils.py``, ``get_blocks_ocr_free``), and the pages that exercise it.

The page is parsed with BeautifulSoup's ``html.parser``, recoloured twice (``process_html``), each
version written out and rendered afresh, the text pixels diffed, the text-colour tree read from the
recoloured soup (``extract_text_with_color``), and each text node's pixels found with
``cv2.inRange`` (``get_blocks_from_image_diff_pixels``). ``tests/eval/test_text_blocks.py`` checks
glmkit's one-load procedure against it; ``benchmarks/design2code_blocks.py`` times both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from glmkit.eval.render import TextBlock

REF_TAGS = [
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "div", "span", "a", "b", "li", "table", "td", "th",
    "button", "footer", "header", "figcaption",
]  # fmt: skip


def ref_recolour(html: str, offset: int) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")

    def put(el, prop: str, value: object) -> None:
        entries = [
            e for e in el.attrs.get("style", "").split(";") if e.strip() and not e.strip().startswith(prop)
        ]
        el["style"] = "; ".join([*entries, f"{prop}: {value} !important"]).strip()

    for el in soup.find_all(True):
        put(el, "background-color", "rgba(255, 255, 255, 0.0)")
    steps = range(10, 251, 16)
    pool = [
        bytes([(r + offset) % 256, (g + offset) % 256, (b + offset) % 256]).hex().upper()
        for r in steps
        for g in steps
        for b in steps
    ]
    for el in soup.find_all(REF_TAGS):
        put(el, "color", "#" + pool.pop())
        put(el, "opacity", 1.0)
    return str(soup)


def ref_colour(el) -> str | None:
    from PIL import ImageColor

    if "style" not in el.attrs:
        return None
    found = [e for e in el["style"].split(";") if "color" in e and "background-color" not in e]
    if not found:
        return None
    value = found[-1].split(":")[1].strip().replace(" !important", "")
    if value.startswith("#"):
        return value
    try:
        rgb = (
            tuple(int(v) for v in value[4:-1].split(","))
            if value.startswith("rgb")
            else ImageColor.getrgb(value)
        )
    except ValueError:
        return None
    return "#" + "".join(f"{v:02x}" for v in rgb[:3])


def ref_text_tree(html: str) -> list[tuple[str, str]]:
    from bs4 import BeautifulSoup, Comment, NavigableString, Tag

    out: list[tuple[str, str]] = []

    def walk(node, colour: str) -> None:
        if isinstance(node, Comment):
            return
        if isinstance(node, NavigableString):
            if node.strip():
                out.append((node.strip(), colour))
        elif isinstance(node, Tag):
            own = ref_colour(node) or colour
            for child in node.children:
                walk(child, own)

    body = BeautifulSoup(html, "html.parser").body
    if body is not None:
        walk(body, "#000000")
    return out


def ref_blocks(original: np.ndarray, first: np.ndarray, second: np.ndarray, tree: list) -> list[TextBlock]:
    import cv2

    a, b = first.astype(int), second.astype(int)
    moved = np.ones(a.shape[:2], bool)
    for c in range(3):
        moved &= np.abs((a[..., c] + 50) % 256 - b[..., c]) <= 8
    text = set(zip(*np.nonzero(moved), strict=True))
    bgr = cv2.cvtColor(first, cv2.COLOR_RGB2BGR)
    blocks = []
    for words, colour in tree:
        digits = colour.lstrip("#")
        try:
            target = np.array([int(digits[i : i + 2], 16) for i in (4, 2, 0)], dtype=np.uint8)
        except ValueError:
            continue
        hits = sorted(
            p for p in zip(*np.nonzero(cv2.inRange(bgr, target - 4, target + 4)), strict=True) if p in text
        )
        if not hits:
            continue
        ys, xs = [p[0] for p in hits], [p[1] for p in hits]
        mean = np.mean([original[y, x] for y, x in hits], axis=0).astype(int)
        colour_rgb = tuple(int(v) for v in mean)
        blocks.append(
            TextBlock(words, min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1, colour_rgb)
        )
    return blocks


PAGES = {
    # inline children without a text tag share their parent's colour (one box, merged later); a span
    # has its own; loose text in <body>, <section> or <strong> outside text tags finds no pixel
    "nesting": """<html><body style="margin:0;font-family:sans-serif">
<header style="background:#1f3b73;padding:20px"><span style="color:#ffffff;font-size:28px">Acme Rockets</span></header>
<h1 style="color:#8a1c1c;margin:30px">Fly to the <em>moon</em> today</h1>
<p style="color:#333;margin:30px">Our rockets are <span>tested</span> on every<br>launch pad.</p>
Loose text in the body <section>and in a section</section>
<footer style="background:#eee;color:#555;padding:12px">Copyright the <a href="#">rocket</a> company</footer>
</body></html>""",
    # colours read from the original screenshot (opacity, gradients), hidden text, styled inline children
    "colours": """<html><body style="margin:10px;font-family:serif">
<p style="opacity:0.5;color:#0000aa">Half transparent text</p>
<div style="background:linear-gradient(90deg,#fc0,#0cf);padding:10px;font-size:22px">Over a gradient</div>
<p>Read <em style="color: red">this</em> and <strong style="border-color:#abcdef">that</strong> too</p>
<p style="display:none">hidden paragraph</p><p style="visibility:hidden">invisible paragraph</p>
<div>Script text joins <script>var answer = 42;</script>its element</div>
</body></html>""",
    # tables, lists, buttons, figure captions, Chinese (a block only where a CJK font is installed),
    # whitespace inside a node
    "structure": """<html><body style="margin:0">
<table style="margin:8px"><tr><th>Name</th><th>Price</th></tr><tr><td>Tea</td><td style="color:#070">3.50</td></tr></table>
<ul><li>First item</li><li>Second   item
   continued</li></ul>
<button style="font-size:18px">Buy now</button>
<figure><figcaption>欢迎光临本店</figcaption></figure>
<h2 style="color:rgb(200, 30, 40)">Red heading</h2>
</body></html>""",
}


def reference_blocks(renderer: Any, page: Path, workdir: Path) -> list[TextBlock]:
    """The reference procedure on ``page``: two recoloured copies and the original, each loaded
    afresh in ``renderer`` (a :class:`glmkit.eval.render.ChromiumRenderer`), then the pixel diff."""
    html = page.read_text(encoding="utf-8")
    shots = []
    for offset in (0, 50):
        version = workdir / f"{page.stem}_p{offset}.html"
        version.write_text(ref_recolour(html, offset), encoding="utf-8")
        shots.append(renderer.render_file(version, text_blocks=False).screenshot)
    original = renderer.render_file(page, text_blocks=False).screenshot
    return ref_blocks(original, shots[0], shots[1], ref_text_tree(ref_recolour(html, 0)))
