"""Design2Code's OCR-free text blocks (``metrics/ocr_free_utils.py``, ``get_blocks_ocr_free``).

The rendered parity test runs the reference's procedure as written, re-implemented on its own in
``tests/eval/design2code_reference.py`` (two recoloured copies of the page, each rendered afresh,
the text pixels diffed). glmkit recolours the live DOM of one load instead; on these pages both
must give the very same blocks, and so the same Design2Code scores.
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
from tests.eval.design2code_reference import PAGES, reference_blocks


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
            reference[name] = reference_blocks(renderer, page, tmp_path)
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
