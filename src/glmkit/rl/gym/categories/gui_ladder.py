"""The GUI ladder on generated interface screenshots, in the report's four levels (section 2.3):

1. ``gui_perception``: what is on the screen (the window title, the open tab, a checkbox's state,
   an element's kind, a field's content); normalised match;
2. ``gui_grounding``: the box of a named element in 0-1000; the reward is the IoU;
3. ``gui_action``: the one click that achieves a goal (``click(x, y)`` in 0-1000); the point must
   fall in the right element;
4. ``gui_trajectory``: a multi-step task: find a piece of information that sits on another tab,
   sometimes behind a ``Show ...`` button, by clicking with the ``click`` tool (each click returns
   the new screenshot), then answer with it; exact match.

:meth:`GuiTrajectory.oracle_trajectory` scripts level 4 (the clicks, then the answer) for the RL stage's
SFT warm start. Screens are :class:`~glmkit.rl.gym.gui.app.GuiApp` windows of 500x500 pixels by default (sides that
divide 1000, so boxes have exact 0-1000 forms).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from glmkit.eval.benchmarks import GROUNDING_PROMPT, SHORT_PROMPT
from glmkit.eval.demo.common import choice
from glmkit.rl.gym.categories.grounding import GROUNDING_IOU
from glmkit.rl.gym.categories.ocr import EXACT_MATCH
from glmkit.rl.gym.categories.pointing import POINTING
from glmkit.rl.gym.category import TASK_CATEGORIES, Draft, TaskCategory, VerifierSpec, tool_call_reply
from glmkit.rl.gym.gui.app import KIND_NAMES, GuiApp
from glmkit.rl.gym.gui.generate import INFO_TABS, goal, random_app
from glmkit.rl.gym.gui.tool import ClickTool
from glmkit.scoring import Sample
from glmkit.tools.base import Tool

if TYPE_CHECKING:
    from glmkit.agent.formats import ToolCallFormat

NORMALIZED_MATCH = VerifierSpec("normalized_match")
"""VQA-normalised equality (case, punctuation and articles ignored)."""
ACTION_PROMPT = (
    "This is a screenshot of an application. Which single click achieves this goal: {goal}?\n"
    "Answer with click(x, y), x and y integers from 0 to 1000 relative to the screen width and height."
)
TRAJECTORY_PROMPT = (
    "This is a screenshot of the {title} application. Find its {info} and answer with it only. "
    "It is not on the current screen: use the click tool to click on the screen (a point in 0-1000 "
    "coordinates); each click returns the new screenshot."
)
PERCEPTION_ASKS = ("title", "tab", "checked", "kind", "field")


class _GuiCategory(TaskCategory):
    """What the four levels share: the screen size and drawing the app."""

    def __init__(
        self,
        screen_size: Sequence[int] = (500, 500),
        seed: int = 0,
        size: int = 100_000,
        source: str | None = None,
        data_dir: str | None = None,
    ) -> None:
        super().__init__(seed, size, source, data_dir)
        if len(screen_size) != 2 or min(screen_size) < 400:
            raise ValueError(
                f"{self.name}: screen_size must be (width, height) >= 400 pixels, got {screen_size!r}"
            )
        self.screen_size = (int(screen_size[0]), int(screen_size[1]))

    def _app(self, rng: np.random.Generator) -> GuiApp:
        return random_app(rng, self.screen_size)


@TASK_CATEGORIES.register("gui_perception")
class GuiPerception(_GuiCategory):
    """Level 1: a question about what the screen shows (module docstring)."""

    name = "gui_perception"

    def draw(self, rng: np.random.Generator, index: int) -> Draft:
        app = self._app(rng)
        widgets = app.widget_elements()
        ask = choice(rng, PERCEPTION_ASKS)
        filled = [e for e in widgets if e.kind == "field" and e.value]
        if ask == "field" and not filled:
            ask = "kind"
        if ask == "title":
            question, answer = "What is the title of the window?", app.title
        elif ask == "tab":
            question, answer = "Which tab is open?", app.active
        elif ask == "checked":
            box = choice(rng, [e for e in widgets if e.kind == "checkbox"])
            question = f"Is the {box.label!r} checkbox ticked? Answer yes or no."
            answer = "yes" if box.checked else "no"
        elif ask == "kind":
            element = choice(rng, widgets)
            names = ", ".join(sorted({KIND_NAMES[k] for k in ("button", "checkbox", "field", "link")}))
            question = f"What kind of element is {element.label!r}? Answer with one of: {names}."
            answer = element.kind_name
        else:
            field = choice(rng, filled)
            question, answer = f"What is written in the {field.label} field?", field.value
        return Draft(
            SHORT_PROMPT.format(question=question), answer, [app.render()], {"ask": ask, "app": app.to_dict()}
        )

    def verifiers(self) -> dict[str, VerifierSpec]:
        return {"normalized_match": NORMALIZED_MATCH}

    def oracle(self, sample: Sample) -> str:
        return str(sample.answer)


@TASK_CATEGORIES.register("gui_grounding")
class GuiGrounding(_GuiCategory):
    """Level 2: the 0-1000 box of a named tab, button, checkbox, field or link."""

    name = "gui_grounding"

    def draw(self, rng: np.random.Generator, index: int) -> Draft:
        app = self._app(rng)
        target = choice(rng, app.elements())
        answer = {"box": list(target.box), "space": "pixels"}
        question = GROUNDING_PROMPT.format(question=f"Find the {target.label!r} {target.kind_name}.")
        return Draft(question, answer, [app.render()], {"target": target.label, "kind": target.kind})

    def verifiers(self) -> dict[str, VerifierSpec]:
        return {"grounding_iou": GROUNDING_IOU}

    def oracle(self, sample: Sample) -> str:
        return GROUNDING_IOU.build().oracle(sample)


@TASK_CATEGORIES.register("gui_action")
class GuiAction(_GuiCategory):
    """Level 3: the one click that achieves a goal stated in words (not by the element's label for
    buttons and links: ``save your changes`` means the ``Save`` button)."""

    name = "gui_action"

    def draw(self, rng: np.random.Generator, index: int) -> Draft:
        app = self._app(rng)
        candidates = [
            e for e in app.elements() if e.kind != "text" and not (e.kind == "tab" and e.label == app.active)
        ]
        target = choice(rng, candidates)
        answer = {"box": list(target.box), "space": "pixels"}
        question = ACTION_PROMPT.format(goal=goal(app, target))
        return Draft(question, answer, [app.render()], {"target": target.label, "kind": target.kind})

    def verifiers(self) -> dict[str, VerifierSpec]:
        return {"pointing": POINTING}

    def oracle(self, sample: Sample) -> str:
        x1, y1, x2, y2 = sample.answer["box"]
        width, height = sample.image_size()
        return f"click({round((x1 + x2) / 2 * 1000 / width)}, {round((y1 + y2) / 2 * 1000 / height)})"


@TASK_CATEGORIES.register("gui_trajectory")
class GuiTrajectory(_GuiCategory):
    """Level 4, multi-step: open the tab that holds a piece of information (an account ID, a licence
    key, ...), click ``Show ...`` if it is hidden, and answer with it. The first screen never shows it.

    Args:
        max_turns: policy replies per episode (each click is one).
        reveal_fraction: the fraction of samples whose information sits behind a ``Show`` button
            (two clicks) rather than on the tab itself (one click).
        screen_size / seed / size / source / data_dir: see :class:`_GuiCategory`.
    """

    name = "gui_trajectory"

    def __init__(
        self,
        max_turns: int = 6,
        reveal_fraction: float = 0.5,
        screen_size: Sequence[int] = (500, 500),
        seed: int = 0,
        size: int = 100_000,
        source: str | None = None,
        data_dir: str | None = None,
    ) -> None:
        super().__init__(screen_size, seed, size, source, data_dir)
        if not isinstance(max_turns, int) or max_turns < 2:
            raise ValueError(
                f"{self.name}: max_turns must be an int >= 2 (a click, then the answer), got {max_turns!r}"
            )
        if not 0.0 <= reveal_fraction <= 1.0:
            raise ValueError(f"{self.name}: reveal_fraction must be in [0, 1], got {reveal_fraction!r}")
        self.max_turns = max_turns
        self.reveal_fraction = float(reveal_fraction)

    def draw(self, rng: np.random.Generator, index: int) -> Draft:
        info = choice(rng, list(INFO_TABS))
        reveal = bool(rng.random() < self.reveal_fraction)
        app = random_app(rng, self.screen_size, info=info, reveal=reveal)
        code = next(w.value for w in app.pages[INFO_TABS[info]] if w.kind == "text")
        question = TRAJECTORY_PROMPT.format(title=app.title, info=info)
        metadata = {"info": info, "tab": INFO_TABS[info], "reveal": reveal, "app": app.to_dict()}
        return Draft(question, code, [app.render()], metadata)

    def verifiers(self) -> dict[str, VerifierSpec]:
        return {"exact_match": EXACT_MATCH}

    def oracle(self, sample: Sample) -> str:
        return str(sample.answer)

    def tools(self, sample: Sample) -> dict[str, Tool]:
        """A ``click`` tool on a fresh copy of the sample's app."""
        return {"click": ClickTool(GuiApp.from_dict(sample.metadata["app"]))}

    def oracle_trajectory(
        self, sample: Sample, tool_format: str | ToolCallFormat = "hermes"
    ) -> list[str | dict[str, Any]]:
        """Click the tab that holds the information (unless it is open), then its ``Show`` button
        (when the information is hidden), each at the element's centre in 0-1000 and in
        ``tool_format``; then answer."""
        app = GuiApp.from_dict(sample.metadata["app"])
        width, height = app.size
        replies: list[str | dict[str, Any]] = []

        def click(label: str) -> None:
            x, y = app.element(label).center
            app.click(x, y)
            point = [round(x * 1000 / width), round(y * 1000 / height)]
            replies.append(tool_call_reply(tool_format, "click", {"point": point}, f"Click {label!r}."))

        tab = sample.metadata["tab"]
        if app.active != tab:
            click(tab)
        reveal = next((e.label for e in app.widget_elements() if e.reveals), None)
        if reveal is not None and tab not in app.revealed:
            click(reveal)
        return [*replies, self.oracle(sample)]
