"""Design2Code's OCR-free text blocks (``metrics/ocr_free_utils.py``, ``get_blocks_ocr_free``).

The rendered parity test runs the reference's procedure as written, re-implemented here on its own:
the page is parsed with BeautifulSoup's ``html.parser``, recoloured twice (``process_html``), each
version written out and rendered afresh, the text pixels diffed, the text-colour tree read from the
recoloured soup (``extract_text_with_color``), and each text node's pixels found with
``cv2.inRange`` (``get_blocks_from_image_diff_pixels``). glmkit recolours the live DOM of one load
instead; on these pages both must give the very same blocks, and so the same Design2Code scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from glmkit.eval.metrics.design2code import Block, design2code_scores, page_blocks
from glmkit.eval.render import PageRender, TextBlock, chromium_unavailable_reason
from glmkit.eval.text_blocks import (
    blocks_from_renders,
    node_colour,
    palette,
    style_colour,
    text_colours,
    text_pixel_mask,
)


def test_palette_is_handed_out_from_the_end_of_the_channel_grid() -> None:
    first = palette(0)
    assert len(first) == 4096 and len(set(first)) == 4096
    assert first[:3] == ["#FAFAFA", "#FAFAEA", "#FAFADA"]  # (250, 250, 250), then B steps down by 16
    assert first[-1] == "#0A0A0A"
    assert palette(50)[0] == "#2C2C2C"  # (250 + 50) % 256 = 44
    assert palette(50)[-1] == "#3C3C3C"


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        (None, None),  # no style attribute
        ("margin: 0", None),
        ("color: #FAFAEA !important", "#FAFAEA"),  # as written, !important removed
        ("color: red", "#ff0000"),  # a name goes through PIL's ImageColor
        ("color: rgb(1, 2, 3)", "#010203"),
        ("color: rgba(1, 2, 3, 0.5)", None),  # "(1" is no integer: unreadable, the parent's applies
        ("color: inherit", None),
        ("background-color: #000", None),  # background colours never count
        ("border-color: #123456", "#123456"),  # but any other "...color" entry does
        ("color: #111; background-color: #fff; color: #222", "#222"),  # the last one wins
        ("color: #abc", "#abc"),  # short hex is returned as written (and later finds no pixel)
        ("color:", None),  # the reference stops with an error here
        ("color: hsl(0, 100%, 50%)", "#ff0000"),
    ],
)
def test_style_colour_reads_style_attributes_as_extract_text_with_color(
    style: str | None, expected: str | None
) -> None:
    assert style_colour(style) == expected


def test_text_nodes_take_the_nearest_styled_ancestor() -> None:
    assert node_colour([None, None]) == "#000000"  # nothing styled: black
    assert node_colour(["color: #101010", "margin: 0", None]) == "#101010"
    assert node_colour(["color: #101010", "color: rgba(0,0,0,1)"]) == "#101010"  # unreadable: parent's
    nodes = [["  Hello\n  world ", ["color: #202020"]], ["\n   ", [None]], ["x", [None]]]
    assert text_colours(nodes) == [("Hello\n  world", "#202020"), ("x", "#000000")]


def test_blocks_come_from_the_text_pixels_of_each_colour() -> None:
    h, w = 20, 30
    original = np.full((h, w, 3), 255, np.uint8)
    recoloured = np.full((h, w, 3), 255, np.uint8)
    shifted = np.full((h, w, 3), 255, np.uint8)
    # element A: two glyph runs in colour (250, 250, 250) / shifted (44, 44, 44)
    for ys, xs in ((slice(2, 5), slice(3, 8)), (slice(6, 9), slice(10, 12))):
        recoloured[ys, xs] = (250, 250, 250)
        shifted[ys, xs] = (44, 44, 44)
        original[ys, xs] = (10, 20, 30)
    original[2, 3] = (13, 20, 30)  # the mean is truncated to integers
    # element B: within the tolerances (4 on the colour, 8 on the shift)
    recoloured[12:14, 20:25] = (252, 247, 234)
    shifted[12:14, 20:25] = (52, 41, 28)
    original[12:14, 20:25] = (200, 0, 0)
    # an image pixel in A's colour that does not move with the palette is no text
    recoloured[18, 0] = (250, 250, 250)
    shifted[18, 0] = (250, 250, 250)
    text = text_pixel_mask(recoloured, shifted)
    assert text.sum() == 15 + 6 + 10 and not text[18, 0]
    nodes = [
        ("A one", "#FAFAFA"),
        ("A two", "#FAFAFA"),
        ("B", "#FAFAEA"),
        ("gone", "#0A0A0A"),
        ("bad", "#xyz"),
    ]
    blocks = blocks_from_renders(original, recoloured, shifted, nodes)
    a = {"x": 3, "y": 2, "w": 9, "h": 7, "color": (10, 20, 30)}  # mean R = 10 + 3/21, truncated
    assert blocks == [
        {"text": "A one", **a},
        {"text": "A two", **a},
        {"text": "B", "x": 20, "y": 12, "w": 5, "h": 2, "color": (200, 0, 0)},
    ]
    # no text pixel at all, or screenshots of different sizes: no block
    assert blocks_from_renders(original, recoloured, recoloured, nodes) == []
    assert blocks_from_renders(original[:10], recoloured, shifted, nodes) == []
    # colour bounds wrap as uint8 arithmetic does: #020202 - 4 -> 254 > 6, so nothing is in range
    dark = recoloured.copy()
    dark[0, 0], shifted[0, 0] = (2, 2, 2), (52, 52, 52)
    assert blocks_from_renders(original, dark, shifted, [("dark", "#020202")]) == []


# --- the reference's procedure, re-implemented independently, on real renders -----------------

_REF_TAGS = [
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "div", "span", "a", "b", "li", "table", "td", "th",
    "button", "footer", "header", "figcaption",
]  # fmt: skip


def _ref_recolour(html: str, offset: int) -> str:
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
    for el in soup.find_all(_REF_TAGS):
        put(el, "color", "#" + pool.pop())
        put(el, "opacity", 1.0)
    return str(soup)


def _ref_colour(el) -> str | None:
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


def _ref_text_tree(html: str) -> list[tuple[str, str]]:
    from bs4 import BeautifulSoup, Comment, NavigableString, Tag

    out: list[tuple[str, str]] = []

    def walk(node, colour: str) -> None:
        if isinstance(node, Comment):
            return
        if isinstance(node, NavigableString):
            if node.strip():
                out.append((node.strip(), colour))
        elif isinstance(node, Tag):
            own = _ref_colour(node) or colour
            for child in node.children:
                walk(child, own)

    body = BeautifulSoup(html, "html.parser").body
    if body is not None:
        walk(body, "#000000")
    return out


def _ref_blocks(original: np.ndarray, first: np.ndarray, second: np.ndarray, tree: list) -> list[TextBlock]:
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


@pytest.mark.chromium
@pytest.mark.skipif(chromium_unavailable_reason() is not None, reason="needs headless Chromium")
def test_blocks_and_scores_equal_the_reference_procedure(tmp_path: Path) -> None:
    from glmkit.eval.render import ChromiumRenderer

    ours: dict[str, list[TextBlock]] = {}
    reference: dict[str, list[TextBlock]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    with ChromiumRenderer(timeout=10.0) as renderer:
        for name, html in PAGES.items():
            page = tmp_path / f"{name}.html"
            page.write_text(html, encoding="utf-8")
            rendered = renderer.render_file(page)
            ours[name], sizes[name] = rendered.blocks, (rendered.width, rendered.height)
            shots = []
            for offset in (0, 50):
                version = tmp_path / f"{name}_p{offset}.html"
                version.write_text(_ref_recolour(html, offset), encoding="utf-8")
                shots.append(renderer.render_file(version, text_blocks=False).screenshot)
            original = renderer.render_file(page, text_blocks=False).screenshot
            tree = _ref_text_tree(_ref_recolour(html, 0))
            reference[name] = _ref_blocks(original, shots[0], shots[1], tree)
    for name in PAGES:
        assert ours[name] == reference[name], name
    texts = {name: [b.text for b in blocks] for name, blocks in ours.items()}
    assert texts["nesting"] == [
        "Acme Rockets", "Fly to the", "moon", "today", "Our rockets are", "tested", "on every", "launch pad.",
        "Copyright the", "rocket", "company",
    ]  # fmt: skip
    assert {"this", "that", "hidden paragraph", "invisible paragraph"}.isdisjoint(texts["colours"])
    assert "var answer = 42;" in texts["colours"]  # script text is a text node of its element
    assert "Second   item\n   continued" in texts["structure"]  # stripped, not collapsed
    half = next(b for b in ours["colours"] if b.text == "Half transparent text")
    assert half.color[2] < 230 and half.color[0] > 100  # read from the screenshot, not the CSS colour

    def as_blocks(name: str, blocks: list[TextBlock]) -> list[Block]:
        return page_blocks(PageRender(blocks, *sizes[name]))

    def visual(pred: list[Block], ref: list[Block]) -> float:
        return 0.5

    for a in PAGES:
        for b in PAGES:
            got = design2code_scores(as_blocks(a, ours[a]), as_blocks(b, ours[b]), visual)
            want = design2code_scores(as_blocks(a, reference[a]), as_blocks(b, reference[b]), visual)
            assert got == want, (a, b)
    same = design2code_scores(
        as_blocks("nesting", ours["nesting"]), as_blocks("nesting", ours["nesting"]), visual
    )
    assert same["block_match"] == same["text"] == same["position"] == same["color"] == 1.0
