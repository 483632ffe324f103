"""Random applications for the GUI ladder: titles, tabs, pages of uniquely labelled widgets, and
what a user might want to do with each widget (the single-step action goals)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from glmkit.eval.demo.common import WORDS, choice, randint, sample, serial_code
from glmkit.eval.demo.ui2code import PALETTE
from glmkit.rl.gym.gui.app import Element, GuiApp, Widget

TITLES = (
    "Settings",
    "Preferences",
    "Control panel",
    "Profile editor",
    "Mail client",
    "Photo manager",
    "Sign-up form",
)
TAB_NAMES = ("General", "Account", "About", "Display", "Network", "Security", "Devices", "Privacy")
FIELD_LABELS = ("Username", "Email", "City", "Phone", "Company", "Nickname", "Website", "Postcode", "Country")
CHECKBOX_LABELS = (
    "Remember me",
    "Dark mode",
    "Send newsletters",
    "Auto update",
    "Show hints",
    "Sync contacts",
    "Sound effects",
    "Private profile",
)
LINK_GOALS = {
    "Forgot password?": "reset a forgotten password",
    "Terms of use": "read the terms of use",
    "Privacy policy": "read the privacy policy",
    "Learn more": "learn more about the product",
    "Contact support": "contact the support team",
}
BUTTON_GOALS = {
    "Save": "save your changes",
    "Cancel": "discard your changes",
    "Delete": "delete this item",
    "Next": "continue to the next step",
    "Back": "go back to the previous step",
    "Search": "start the search",
    "Sign in": "log in to your account",
    "Help": "open the help pages",
    "Apply": "apply the new settings",
    "Export": "export the data to a file",
    "Refresh": "reload the content",
    "Upload": "upload a file",
}
INFO_TABS = {
    "account ID": "Account",
    "licence key": "About",
    "device code": "Devices",
    "backup code": "Security",
}
"""What a trajectory asks for, and the tab that holds it."""


class _Labels:
    """Draws labels without repeats across an app (a label names one element)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.left = {
            "field": list(sample(rng, FIELD_LABELS, len(FIELD_LABELS))),
            "checkbox": list(sample(rng, CHECKBOX_LABELS, len(CHECKBOX_LABELS))),
            "link": list(sample(rng, list(LINK_GOALS), len(LINK_GOALS))),
            "button": list(sample(rng, list(BUTTON_GOALS), len(BUTTON_GOALS))),
        }

    def take(self, kind: str) -> str:
        return self.left[kind].pop()


def random_page(rng: np.random.Generator, labels: _Labels) -> list[Widget]:
    """1-2 fields, 1-2 checkboxes, sometimes a link, then a row of 2-3 buttons."""
    widgets = []
    for _ in range(randint(rng, 1, 2)):
        value = choice(rng, WORDS) if rng.random() < 0.6 else ""
        widgets.append(Widget("field", labels.take("field"), value=value))
    for _ in range(randint(rng, 1, 2)):
        widgets.append(Widget("checkbox", labels.take("checkbox"), checked=bool(rng.random() < 0.5)))
    if rng.random() < 0.5:
        widgets.append(Widget("link", labels.take("link")))
    widgets += [Widget("button", labels.take("button")) for _ in range(randint(rng, 2, 3))]
    return widgets


def random_app(
    rng: np.random.Generator, size: Sequence[int] = (500, 500), info: str | None = None, reveal: bool = True
) -> GuiApp:
    """An app of three tabs with a page of widgets each.

    With ``info`` (a key of :data:`INFO_TABS`) the tab that holds it gets a text widget with a
    fresh serial code as its value, behind a ``Show <info>`` button when ``reveal``, and another tab
    is open, so the code is not on the first screen.
    """
    labels = _Labels(rng)
    target = INFO_TABS[info] if info is not None else None
    others = [t for t in TAB_NAMES if t != target]
    tabs = sample(rng, others, 3 if target is None else 2)
    if target is not None:
        tabs.insert(randint(rng, 0, 2), target)
    pages = {tab: random_page(rng, labels) for tab in tabs}
    active = choice(rng, tabs)
    if target is not None:
        active = choice(rng, [t for t in tabs if t != target])
        page = pages[target][:2]  # keep the page short: two widgets, then the information
        if reveal:
            page.append(Widget("button", f"Show {info}", reveals=True))
        page.append(Widget("text", info[0].upper() + info[1:], value=serial_code(rng), hidden=reveal))
        pages[target] = page
    return GuiApp(choice(rng, TITLES), tabs, pages, active=active, size=size, accent=choice(rng, PALETTE))


def goal(app: GuiApp, element: Element) -> str:
    """What a user clicking ``element`` wants, in words (the single-step action's instruction)."""
    if element.kind == "button":
        return BUTTON_GOALS.get(element.label, f"press {element.label!r}")
    if element.kind == "checkbox":
        return f"turn {'off' if element.checked else 'on'} the {element.label!r} option"
    if element.kind == "field":
        return f"start typing in the {element.label} field"
    if element.kind == "link":
        return LINK_GOALS.get(element.label, f"follow the {element.label!r} link")
    if element.kind == "tab":
        return f"open the {element.label} tab"
    raise ValueError(f"{element.kind} elements cannot be acted on")
