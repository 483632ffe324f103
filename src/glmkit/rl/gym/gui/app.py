"""A generated application window: tabs, form widgets, their exact boxes, its screenshot and clicks.

The GUI ladder's screenshots (report section 2.3: element perception, element grounding,
single-step action, multi-step trajectory) are drawn from a :class:`GuiApp`: a title bar, a row
of tabs and the active tab's page of widgets (text fields, checkboxes, links, plain text and rows
of buttons). The layout is a pure function of the app's state, so every element's box is exact
(half-open pixel boxes ``[x1, x2) x [y1, y2)``, the metrics' convention) and a click at a pixel
hits exactly one element. Clicking changes the state: a tab opens its page, a checkbox toggles,
a button marked ``reveals`` shows its page's hidden widgets. The whole state is JSON-able
(:meth:`GuiApp.to_dict`), so a sample carries its app and a tool rebuilds it per episode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw

from glmkit.data.fonts import load_font

WIDGET_KINDS = ("button", "checkbox", "field", "link", "text")
KIND_NAMES = {
    "button": "button",
    "checkbox": "checkbox",
    "field": "text field",
    "link": "link",
    "text": "text",
    "tab": "tab",
}
"""How questions name each kind of element."""

TITLE_H, TAB_Y, TAB_H, CONTENT_Y, ROW_H, MARGIN = 36, 42, 28, 88, 44, 24
FIELD_X = 170
BACKGROUND, PANEL, INK, MUTED = (236, 236, 236), (255, 255, 255), (30, 30, 30), (150, 150, 150)
LINK_BLUE = (20, 80, 200)
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Widget:
    """One widget of a page, before layout.

    Args:
        kind: one of :data:`WIDGET_KINDS`.
        label: its text (unique in the app: a label names one element).
        value: a field's content; a text widget's value (what a question asks for).
        checked: a checkbox's state.
        reveals: a button that shows its page's hidden widgets.
        hidden: shown only once its page's ``reveals`` button was clicked.
    """

    kind: str
    label: str
    value: str = ""
    checked: bool = False
    reveals: bool = False
    hidden: bool = False

    def __post_init__(self) -> None:
        if self.kind not in WIDGET_KINDS:
            raise ValueError(f"unknown widget kind {self.kind!r}; valid kinds: {', '.join(WIDGET_KINDS)}")
        if not self.label:
            raise ValueError(f"a {self.kind} widget needs a non-empty label")


@dataclass(frozen=True)
class Element:
    """A tab or widget as drawn: its kind, label and half-open pixel box ``(x1, y1, x2, y2)``."""

    kind: str
    label: str
    box: Box
    value: str = ""
    checked: bool = False
    reveals: bool = False

    @property
    def center(self) -> tuple[float, float]:
        """The centre of the box in continuous pixel coordinates."""
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2

    @property
    def kind_name(self) -> str:
        """How a question names the element's kind (``text field`` for a field)."""
        return KIND_NAMES[self.kind]

    def contains(self, x: float, y: float) -> bool:
        """True when pixel ``(x, y)`` lies in the half-open box."""
        return self.box[0] <= x < self.box[2] and self.box[1] <= y < self.box[3]


def _text_box(text: str, size: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of ``text`` drawn at the origin in the font of ``size``."""
    return ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=load_font(size))


class GuiApp:
    """An application window (module docstring).

    Args:
        title: the window title.
        tabs: tab names, left to right.
        pages: ``{tab: [Widget or its dict]}``; every tab has a page (possibly empty).
        active: the open tab (default: the first).
        size: the screen ``(width, height)``.
        accent: the title bar and primary buttons' colour (any PIL colour).
        revealed: tabs whose hidden widgets are shown.
    """

    def __init__(
        self,
        title: str,
        tabs: Sequence[str],
        pages: Mapping[str, Sequence[Widget | Mapping[str, Any]]],
        active: str | None = None,
        size: Sequence[int] = (500, 500),
        accent: str | Sequence[int] = "#1f3b73",
        revealed: Sequence[str] = (),
    ) -> None:
        if not tabs:
            raise ValueError("a GUI app needs at least one tab")
        missing = [t for t in tabs if t not in pages]
        extra = [t for t in pages if t not in tabs]
        if missing or extra:
            raise ValueError(
                f"pages must have one entry per tab: tabs without a page {missing}, pages without a tab {extra}"
            )
        self.title = title
        self.tabs = list(tabs)
        self.pages = {
            tab: [w if isinstance(w, Widget) else Widget(**w) for w in pages[tab]] for tab in self.tabs
        }
        labels = [w.label for ws in self.pages.values() for w in ws] + self.tabs
        dupes = sorted({label for label in labels if labels.count(label) > 1})
        if dupes:
            raise ValueError(
                f"labels must be unique in an app (a label names one element); repeated: {dupes}"
            )
        self.active = active if active is not None else self.tabs[0]
        if self.active not in self.tabs:
            raise ValueError(f"active tab {self.active!r} is not one of {self.tabs}")
        self.size = (int(size[0]), int(size[1]))
        self.accent = accent if isinstance(accent, str) else tuple(int(c) for c in accent)
        self.revealed = set(revealed)

    # -- layout and drawing -------------------------------------------------------------------------

    def tab_elements(self) -> list[Element]:
        """The tabs as drawn, left to right."""
        out, x = [], 12
        for tab in self.tabs:
            left, _, right, _ = _text_box(tab, 14)
            width = right - left + 24
            out.append(Element("tab", tab, (x, TAB_Y, x + width, TAB_Y + TAB_H), checked=tab == self.active))
            x += width + 4
        return out

    def visible_widgets(self) -> list[Widget]:
        """The open page's widgets that are shown."""
        shown = self.active in self.revealed
        return [w for w in self.pages[self.active] if not w.hidden or shown]

    def widget_elements(self) -> list[Element]:
        """The open page's shown widgets as drawn; consecutive buttons share a row."""
        width, height = self.size
        out: list[Element] = []
        y, x, in_button_row = CONTENT_Y, MARGIN, False
        for w in self.visible_widgets():
            if w.kind == "button":
                if not in_button_row:
                    x, in_button_row = MARGIN, True
                left, _, right, _ = _text_box(w.label, 14)
                box = (x, y, x + right - left + 32, y + 30)
                x = box[2] + 12
            else:
                if in_button_row:
                    y, in_button_row = y + ROW_H, False
                left, top, right, bottom = _text_box(w.label, 14)
                if w.kind == "field":
                    box = (FIELD_X, y, width - MARGIN, y + 30)
                elif w.kind == "checkbox":
                    box = (MARGIN, y + 4, MARGIN + 28 + right - left + 2, y + 26)
                else:  # link, text: the text's own box, padded
                    text = w.label if w.kind == "link" else f"{w.label}: {w.value}" if w.value else w.label
                    left, top, right, bottom = _text_box(text, 14)
                    box = (MARGIN - 2, y + 6 - 2, MARGIN + right - left + 2, y + 6 + bottom - top + 2)
                y += ROW_H
            out.append(Element(w.kind, w.label, box, w.value, w.checked, w.reveals))
        bottom = max((e.box[3] for e in out), default=CONTENT_Y)
        if bottom > height - 12 or any(e.box[2] > width - 8 for e in out):
            raise ValueError(
                f"the page {self.active!r} does not fit a {width}x{height} screen; give it fewer widgets"
            )
        return out

    def elements(self) -> list[Element]:
        """Every element on screen: tabs, then the open page's widgets."""
        return self.tab_elements() + self.widget_elements()

    def element(self, label: str) -> Element:
        """The element on screen labelled ``label``."""
        for element in self.elements():
            if element.label == label:
                return element
        shown = ", ".join(repr(e.label) for e in self.elements())
        raise KeyError(f"no element labelled {label!r} on screen (tab {self.active!r}); shown: {shown}")

    def visible_text(self) -> list[str]:
        """Every text on screen (title, tab names, labels, values)."""
        return [self.title] + [t for e in self.elements() for t in (e.label, e.value) if t]

    def render(self) -> Image.Image:
        """The screenshot of the current state."""
        width, height = self.size
        image = Image.new("RGB", self.size, BACKGROUND)
        draw = ImageDraw.Draw(image)
        font, title_font = load_font(14), load_font(16)
        draw.rectangle((0, 0, width - 1, TITLE_H - 1), fill=self.accent)
        draw.text((14, 9), self.title, font=title_font, fill=(255, 255, 255))
        draw.rectangle((8, TAB_Y + TAB_H, width - 9, height - 9), fill=PANEL, outline=(200, 200, 200))
        for tab in self.tab_elements():
            x1, y1, x2, y2 = tab.box
            draw.rectangle(
                (x1, y1, x2 - 1, y2 - 1),
                fill=PANEL if tab.checked else (210, 210, 210),
                outline=(160, 160, 160),
            )
            _centred(draw, tab.label, tab.box, font, INK)
        first_button = next((w.label for w in self.visible_widgets() if w.kind == "button"), None)
        for e in self.widget_elements():
            x1, y1, x2, y2 = e.box
            if e.kind == "button":
                primary = e.reveals or e.label == first_button
                fill = self.accent if primary else (225, 225, 225)
                draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=fill, outline=MUTED)
                _centred(draw, e.label, e.box, font, (255, 255, 255) if primary else INK)
            elif e.kind == "field":
                left, top, _, _ = _text_box(e.label, 14)
                draw.text((MARGIN - left, y1 + 8 - top), e.label, font=font, fill=INK)
                draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=PANEL, outline=MUTED)
                if e.value:
                    draw.text((x1 + 8 - left, y1 + 8 - top), e.value, font=font, fill=INK)
            elif e.kind == "checkbox":
                draw.rectangle((x1, y1 + 2, x1 + 17, y1 + 19), fill=PANEL, outline=(90, 90, 90), width=2)
                if e.checked:
                    draw.line((x1 + 4, y1 + 11, x1 + 8, y1 + 15, x1 + 14, y1 + 6), fill=INK, width=2)
                left, top, _, _ = _text_box(e.label, 14)
                draw.text((x1 + 28 - left, y1 + 4 - top), e.label, font=font, fill=INK)
            else:
                text = e.label if e.kind == "link" else f"{e.label}: {e.value}" if e.value else e.label
                left, top, _, bottom = _text_box(text, 14)
                colour = LINK_BLUE if e.kind == "link" else INK
                draw.text((x1 + 2 - left, y1 + 2 - top), text, font=font, fill=colour)
                if e.kind == "link":
                    draw.line((x1 + 2, y2 - 2, x2 - 3, y2 - 2), fill=colour)
        return image

    # -- interaction --------------------------------------------------------------------------------

    def element_at(self, x: float, y: float) -> Element | None:
        """The element under pixel ``(x, y)``, or None."""
        return next((e for e in self.elements() if e.contains(x, y)), None)

    def click(self, x: float, y: float) -> str:
        """Click pixel ``(x, y)``; returns what happened, in words."""
        hit = self.element_at(x, y)
        if hit is None:
            return "nothing there"
        if hit.kind == "tab":
            self.active = hit.label
            return f"opened the {hit.label!r} tab"
        if hit.kind == "checkbox":
            page = self.pages[self.active]
            i = next(k for k, w in enumerate(page) if w.label == hit.label)
            page[i] = dataclasses.replace(page[i], checked=not page[i].checked)
            return f"{'ticked' if page[i].checked else 'cleared'} the {hit.label!r} checkbox"
        if hit.kind == "button" and hit.reveals:
            self.revealed.add(self.active)
            return f"clicked the {hit.label!r} button"
        return f"clicked the {hit.label!r} {hit.kind_name}"

    # -- state --------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The whole state as JSON-able data (:meth:`from_dict` reads it back)."""
        return {
            "title": self.title,
            "tabs": list(self.tabs),
            "pages": {t: [dataclasses.asdict(w) for w in ws] for t, ws in self.pages.items()},
            "active": self.active,
            "size": list(self.size),
            "accent": self.accent if isinstance(self.accent, str) else list(self.accent),
            "revealed": sorted(self.revealed),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GuiApp:
        """An app in the state :meth:`to_dict` wrote."""
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"not a GUI app's state ({exc}); keys given: {sorted(data)}") from None

    def copy(self) -> GuiApp:
        """An independent copy of the app in its current state."""
        return GuiApp.from_dict(self.to_dict())


def _centred(draw: ImageDraw.ImageDraw, text: str, box: Box, font: Any, fill: Any) -> None:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = (box[0] + box[2] - (right - left)) / 2 - left
    y = (box[1] + box[3] - (bottom - top)) / 2 - top
    draw.text((x, y), text, font=font, fill=fill)
