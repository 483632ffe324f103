"""``ui2code``: write the HTML of a page from its screenshot; the answer is rendered and scored visually.

Pages are the ``demo-ui2code`` generator's (:func:`glmkit.eval.demo.ui2code.page_html`: a header, a
landing or article body and a footer, inline CSS). The screenshot the policy sees is rendered by
headless Chromium (:class:`glmkit.eval.render.ChromiumRenderer`), or drawn as a rough mock where
Chromium is missing (``screenshots="auto"``; ``metadata.screenshot`` says which). The reward is
eval's Design2Code metric, which renders the answer's HTML in Chromium and compares it with the
reference page (block match, text, position, colour, SSIM); it needs Chromium and selenium.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from PIL import Image

from glmkit.eval.benchmarks import UI2CODE_PROMPT
from glmkit.eval.demo.common import choice
from glmkit.eval.demo.ui2code import mock_screenshot, page_html
from glmkit.eval.render import ChromiumRenderer, chromium_unavailable_reason
from glmkit.rl.gym.category import TASK_CATEGORIES, Draft, TaskCategory, VerifierSpec
from glmkit.scoring import Sample

DESIGN2CODE = VerifierSpec("design2code")
"""Design2Code-style visual scores of the rendered answer against the reference page (mean of five)."""
SCREENSHOT_MODES = ("auto", "chromium", "mock")
LAYOUTS = ("landing", "article")


@TASK_CATEGORIES.register("ui2code")
class UI2Code(TaskCategory):
    """Reproduce a generated web page from its screenshot as one self-contained HTML file.

    Args:
        screenshots: ``"chromium"`` (render; an error if Chromium is missing), ``"mock"`` (a rough
            drawing of the page's text, no browser) or ``"auto"`` (Chromium when available).
        max_width: screenshots wider than this are shrunk to it (the demo's 640).
        seed / size / source / data_dir: see :class:`~glmkit.rl.gym.category.TaskCategory`.
    """

    name = "ui2code"

    def __init__(
        self,
        screenshots: Literal["auto", "chromium", "mock"] = "auto",
        max_width: int = 640,
        seed: int = 0,
        size: int = 100_000,
        source: str | None = None,
        data_dir: str | None = None,
    ) -> None:
        super().__init__(seed, size, source, data_dir)
        if screenshots not in SCREENSHOT_MODES:
            raise ValueError(
                f"{self.name}: screenshots must be one of {', '.join(SCREENSHOT_MODES)}, got {screenshots!r}"
            )
        reason = chromium_unavailable_reason()
        if screenshots == "chromium" and reason is not None:
            raise RuntimeError(f"{self.name}: screenshots='chromium' needs headless Chromium: {reason}")
        self.screenshots = screenshots
        self.use_chromium = screenshots == "chromium" or (screenshots == "auto" and reason is None)
        if max_width < 64:
            raise ValueError(f"{self.name}: max_width must be >= 64, got {max_width}")
        self.max_width = int(max_width)
        self._renderer: ChromiumRenderer | None = None

    def draw(self, rng: np.random.Generator, index: int) -> Draft:
        layout = choice(rng, LAYOUTS)
        html = page_html(rng, layout)
        page = f"pages/{self.sample_id(index)}.html"
        if self.use_chromium:
            if self._renderer is None:
                self._renderer = ChromiumRenderer()
            shot = Image.fromarray(self._renderer.render_html(html, text_blocks=False).screenshot)
            shot.thumbnail((self.max_width, 4 * self.max_width))
            how = "chromium"
        else:
            shot, how = mock_screenshot(html), "mock"
        question = UI2CODE_PROMPT.format(question="Here is a screenshot of a web page.")
        return Draft(question, {"html": page}, [shot], {"layout": layout, "screenshot": how}, {page: html})

    def verifiers(self) -> dict[str, VerifierSpec]:
        return {"design2code": DESIGN2CODE}

    def oracle(self, sample: Sample) -> str:
        return "```html\n" + sample.resolve(sample.answer["html"]).read_text(encoding="utf-8") + "\n```"

    def close(self) -> None:
        """Quit the screenshot browser (it starts again on the next draw)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_renderer"] = None  # a live browser does not travel to data-loader workers
        return state
