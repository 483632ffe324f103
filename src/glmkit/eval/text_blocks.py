"""Design2Code's OCR-free text blocks: recolour every text element, render twice, diff the pixels.

Reference: Design2Code (NoviScl/Design2Code) ``metrics/ocr_free_utils.py``, ``get_blocks_ocr_free``
(with ``process_html``, ``find_different_pixels``, ``extract_text_with_color`` and
``get_blocks_from_image_diff_pixels``). The algorithm, which this module and
:class:`~glmkit.eval.render.ChromiumRenderer` follow:

1. **Recolour** (:data:`RECOLOUR_JS`, ``process_html``): every element gets
   ``background-color: rgba(255, 255, 255, 0.0) !important``; then every element whose tag is in
   :data:`TEXT_TAGS`, in document order, gets its own colour from a palette and ``opacity: 1.0
   !important``. An entry of the ``style`` attribute is replaced when it *starts with* the property
   name, the new one appended, the entries joined by ``"; "``. The palette holds the 16^3 colours whose
   channels are 10, 26, ..., 250 (R outermost), handed out from the end; a second palette adds 50 to
   every channel, modulo 256 (:func:`palette`).
2. **Render both** recoloured pages; a pixel is *text* when every channel of the second render is
   within 8 of the first's + 50 (modulo 256) (:func:`text_pixel_mask`).
3. **Colour of each text node** (:func:`node_colour`, ``extract_text_with_color``): the text nodes
   under ``<body>`` in document order (script and style text included, whitespace-only ones dropped,
   text stripped), each with the colour of its nearest ancestor whose ``style`` attribute holds a
   colour (:func:`style_colour`), else ``#000000``. Text outside every text tag keeps its page colour
   in both renders, so it finds no text pixel and gives no block.
4. **Box and colour** (:func:`blocks_from_renders`, ``get_blocks_from_image_diff_pixels``): the pixels
   of the first render within 4 of the node's colour (each channel; bounds computed in ``uint8``, so
   they wrap) that are also text pixels; none -> no block; else the box is their bounding box
   (``x, y, max - min + 1``) and the colour the mean of the **original** screenshot at those pixels,
   truncated to integers. All text nodes of one element share its pixels, hence one box, and
   Design2Code's ``merge_blocks_by_bbox`` joins them later.

Where glmkit differs on purpose: the reference writes the recoloured HTML through BeautifulSoup's
``html.parser`` and loads each version afresh (three page loads); glmkit loads the page once and
recolours the live DOM in place (the original ``style`` attributes restored before each palette,
CSS transitions switched off so the new colours show at once). On well-formed pages the two are the
same (the parity test renders both ways); on malformed markup the tree is the browser's (HTML5
parsing) rather than ``html.parser``'s, a page without a ``<body>`` tag still has one (the
reference finds no block there), and ``<template>``/``<noscript>`` contents follow the DOM. Where the
reference stops with an error (a ``color:`` entry without a value, ``rgb()`` with fewer than three
numbers, more than 4096 text elements) glmkit reads no colour, or leaves the extra elements
unrecoloured, and goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

TEXT_TAGS: tuple[str, ...] = (
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "div", "span", "a", "b", "li", "table", "td", "th",
    "button", "footer", "header", "figcaption",
)  # fmt: skip
"""The tags whose text Design2Code recolours (``process_html``'s list)."""

_CHANNELS = tuple(range(10, 251, 16))
TEXT_TOLERANCE = 8  # find_different_pixels: |(first + 50) % 256 - second| <= 8 on every channel
COLOUR_TOLERANCE = 4  # get_blocks_from_image_diff_pixels: inRange(colour - 4, colour + 4)
SHIFT = 50

RECOLOUR_JS = r"""
const [colours, tags] = arguments;
if (!window.__glmkitStyles) {
  // the original style attributes, so that every palette starts from the page as written
  window.__glmkitStyles = new Map();
  for (const el of document.querySelectorAll('*')) window.__glmkitStyles.set(el, el.getAttribute('style'));
  const calm = document.createElement('style');
  calm.textContent = '*, *::before, *::after { transition: none !important; }';
  (document.head || document.documentElement).appendChild(calm);
}
const update = (el, prop, value) => {
  const kept = (el.getAttribute('style') || '').split(';')
    .filter(s => !s.trim().startsWith(prop) && s.trim().length > 0);
  kept.push(`${prop}: ${value} !important`);
  el.setAttribute('style', kept.join('; ').trim());
};
for (const [el, style] of window.__glmkitStyles) {
  if (style === null) el.removeAttribute('style'); else el.setAttribute('style', style);
  update(el, 'background-color', 'rgba(255, 255, 255, 0.0)');
}
const targets = Array.from(document.querySelectorAll(tags.join(',')));
targets.slice(0, colours.length).forEach((el, i) => {
  update(el, 'color', colours[i]);
  update(el, 'opacity', '1.0');
});
return targets.length;
"""
"""Step 1 in the live DOM: ``arguments = (colours in hand-out order, TEXT_TAGS)``; returns the
number of text elements."""

TEXT_NODES_JS = r"""
const out = [];
const body = document.body;
if (!body) return out;
const walker = document.createTreeWalker(body, NodeFilter.SHOW_TEXT);
let node;
while ((node = walker.nextNode())) {
  const chain = [];
  for (let el = node.parentElement; el; el = el.parentElement) {
    chain.push(el.getAttribute('style'));
    if (el === body) break;
  }
  out.push([node.data, chain.reverse()]);
}
return out;
"""
"""The text nodes under ``<body>``: ``[text, [style attribute of body, ..., of the parent]]``."""


def palette(offset: int = 0) -> list[str]:
    """The recolouring palette in the order it is handed out (``#RRGGBB``, upper case)."""
    colours = [
        f"#{(r + offset) % 256:02X}{(g + offset) % 256:02X}{(b + offset) % 256:02X}"
        for r in _CHANNELS
        for g in _CHANNELS
        for b in _CHANNELS
    ]
    return colours[::-1]


def style_colour(style: str | None) -> str | None:
    """The colour a ``style`` attribute gives its text, read as ``extract_text_with_color`` does.

    The last entry that contains ``color`` but not ``background-color`` (so ``border-color`` counts)
    gives the value after its first ``:``, with `` !important`` removed: a ``#...`` value is
    returned as written; ``rgb...`` becomes hex from the integers between the first four characters
    and the last; anything else goes through PIL's ``ImageColor.getrgb``; what cannot be read gives
    None (the parent's colour then applies).
    """
    if style is None:
        return None
    entries = [s for s in style.split(";") if "color" in s and "background-color" not in s]
    if not entries:
        return None
    parts = entries[-1].split(":")
    if len(parts) < 2:
        return None  # the reference stops with an IndexError here
    value = parts[1].strip().replace(" !important", "")
    if not value:
        return None  # likewise
    if value[0] == "#":
        return value
    from PIL import ImageColor

    try:
        rgb = tuple(map(int, value[4:-1].split(","))) if value.startswith("rgb") else ImageColor.getrgb(value)
    except ValueError:
        return None
    if len(rgb) < 3:
        return None  # the reference stops with an IndexError here
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def node_colour(styles: Sequence[str | None]) -> str:
    """The colour of a text node from the ``style`` attributes of its ancestors, ``<body>`` first."""
    colour = "#000000"
    for style in styles:
        colour = style_colour(style) or colour
    return colour


def text_colours(nodes: Sequence[Sequence[Any]]) -> list[tuple[str, str]]:
    """``(stripped text, colour)`` of each non-blank text node (:data:`TEXT_NODES_JS`'s output)."""
    out = []
    for text, styles in nodes:
        stripped = str(text).strip()
        if stripped:
            out.append((stripped, node_colour(styles)))
    return out


def _hex_rgb(colour: str) -> np.ndarray | None:
    digits = colour.lstrip("#")
    try:
        return np.array([int(digits[i : i + 2], 16) for i in (0, 2, 4)], dtype=np.int64)
    except ValueError:
        return None


def text_pixel_mask(recoloured: np.ndarray, shifted: np.ndarray) -> np.ndarray:
    """Step 2: (H, W) bool, True where ``shifted`` is ``recoloured`` + 50 (mod 256) within 8."""
    moved = (recoloured[..., :3].astype(np.uint8) + np.uint8(SHIFT)).astype(np.int16)  # uint8 wraps: mod 256
    return np.all(np.abs(moved - shifted[..., :3].astype(np.int16)) <= TEXT_TOLERANCE, axis=-1)


def blocks_from_renders(
    original: np.ndarray,
    recoloured: np.ndarray,
    shifted: np.ndarray,
    nodes: Sequence[tuple[str, str]],
) -> list[dict[str, Any]]:
    """Steps 2 and 4: one block per text node whose colour shows on text pixels.

    Args:
        original: the page's screenshot (H, W, 3), where block colours are read.
        recoloured / shifted: the screenshots with the first and the shifted palette.
        nodes: ``(text, colour)`` of each text node (:func:`text_colours`).

    Returns:
        ``{"text", "x", "y", "w", "h", "color"}`` per block, boxes in pixels; text as written (Design2Code
        lower-cases it when it scores). No text pixel at all, or screenshots of different sizes, give none.
    """
    if recoloured.shape[:2] != shifted.shape[:2] or recoloured.shape[:2] != original.shape[:2]:
        return []
    rows, cols = np.nonzero(text_pixel_mask(recoloured, shifted))  # row-major, as the reference's
    if rows.size == 0:
        return []
    pixels = recoloured[rows, cols, :3].astype(np.int64)
    blocks = []
    for content, colour in nodes:
        rgb = _hex_rgb(colour)
        if rgb is None:
            continue
        low, high = (rgb - COLOUR_TOLERANCE) % 256, (rgb + COLOUR_TOLERANCE) % 256  # uint8 wrap
        hit = np.all((pixels >= low) & (pixels <= high), axis=-1)
        if not hit.any():
            continue
        ys, xs = rows[hit], cols[hit]
        mean = np.mean(original[ys, xs, :3], axis=0).astype(int)
        blocks.append(
            {
                "text": content,
                "x": int(xs.min()),
                "y": int(ys.min()),
                "w": int(xs.max() - xs.min() + 1),
                "h": int(ys.max() - ys.min() + 1),
                "color": tuple(int(v) for v in mean),
            }
        )
    return blocks
