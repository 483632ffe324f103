"""Headless-Chromium page renderer: full-page screenshots and Design2Code's text blocks.

Pages are rendered in Debian's ``chromium`` + ``chromedriver`` through Selenium (one browser reused
for a whole run, network requests blocked so offline rendering is deterministic; untrusted HTML is
loaded from a ``data:`` URL so that it cannot embed local files). For each page we take a
full-page screenshot and, when asked, the text blocks as Design2Code finds them without OCR
(:mod:`glmkit.eval.text_blocks`: the loaded page is recoloured in place with two palettes and
captured twice more). Used by the Design2Code metric (:mod:`glmkit.eval.metrics.design2code`), the
UI-to-code demo data and the RL UI-to-code category.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glmkit.eval.text_blocks import (
    RECOLOUR_JS,
    SHIFT,
    TEXT_NODES_JS,
    TEXT_TAGS,
    blocks_from_renders,
    palette,
    text_colours,
)

DEFAULT_CHROMIUM = "/usr/bin/chromium"
DEFAULT_CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--force-color-profile=srgb",
    "--disable-dev-shm-usage",
)


@dataclass
class TextBlock:
    """A text block: its text, its box in screenshot pixels (x, y, w, h) and its RGB colour (the
    mean of its glyph pixels in the screenshot)."""

    text: str
    x: float
    y: float
    w: float
    h: float
    color: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass
class PageRender:
    """A rendered page: text blocks, the screenshot (H, W, 3 uint8) and the page size in pixels."""

    blocks: list[TextBlock]
    width: int
    height: int
    screenshot: np.ndarray | None = None
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def blank_page(width: int = 1280, height: int = 960, error: str | None = None) -> PageRender:
    """A white page without text (what a page that fails to render is scored as)."""
    return PageRender([], width, height, np.full((height, width, 3), 255, np.uint8), error=error)


_PAGE_HEIGHT_JS = (
    "return Math.max(document.documentElement.scrollHeight, document.body ? document.body.scrollHeight : 0);"
)


def chromium_paths(chromium: str | None = None, chromedriver: str | None = None) -> tuple[str, str]:
    """The browser and driver binaries: the arguments, else ``$GLMKIT_CHROMIUM`` and
    ``$GLMKIT_CHROMEDRIVER``, else ``/usr/bin/chromium`` and ``/usr/bin/chromedriver``."""
    return (
        chromium or os.environ.get("GLMKIT_CHROMIUM", DEFAULT_CHROMIUM),
        chromedriver or os.environ.get("GLMKIT_CHROMEDRIVER", DEFAULT_CHROMEDRIVER),
    )


def chromium_unavailable_reason(chromium: str | None = None, chromedriver: str | None = None) -> str | None:
    """None when headless rendering can work, else why not (for skips and error messages)."""
    chromium, chromedriver = chromium_paths(chromium, chromedriver)
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install 'glmkit[eval]')"
    for label, path in (("chromium", chromium), ("chromedriver", chromedriver)):
        if not (Path(path).is_file() and os.access(path, os.X_OK)):
            return f"{label} not found at {path} (apt-get install chromium chromium-driver, or set GLMKIT_{label.upper()})"
    return None


class ChromiumRenderer:
    """Renders HTML in one reused headless Chromium through Selenium.

    Selenium Manager never runs: the chromedriver path is passed to the ``Service`` explicitly and
    the browser binary is set, so nothing is downloaded. Each renderer uses a fresh profile
    directory, removed on :meth:`close`. Network requests (http, https, ws) are blocked, so
    generated pages that pull CDN assets render the same offline and cannot reach the network;
    untrusted HTML (:meth:`render_html`) cannot read local files either. Start, render and close
    hold one lock, so one renderer may be shared by scoring threads (renders run one at a time).

    Args:
        width / height: viewport in CSS pixels (the page is captured at full height, up to ``max_height``).
        timeout: page-load timeout in seconds.
    """

    def __init__(
        self,
        chromium: str | None = None,
        chromedriver: str | None = None,
        width: int = 1280,
        height: int = 960,
        max_height: int = 4000,
        timeout: float = 30.0,
        block_network: bool = True,
    ) -> None:
        self.chromium, self.chromedriver = chromium_paths(chromium, chromedriver)
        self.width, self.height, self.max_height = width, height, max_height
        self.timeout = timeout
        self.block_network = block_network
        self._driver: Any = None
        self._profile: str | None = None
        self._lock = threading.RLock()

    def start(self) -> ChromiumRenderer:
        """Launch the browser (idempotent); raises ``RuntimeError`` naming what is missing."""
        with self._lock:
            return self._start()

    def _start(self) -> ChromiumRenderer:
        if self._driver is not None:
            return self
        reason = chromium_unavailable_reason(self.chromium, self.chromedriver)
        if reason:
            raise RuntimeError(f"cannot render HTML: {reason}")
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self._profile = tempfile.mkdtemp(prefix="glmkit-chromium-profile-")
        options = webdriver.ChromeOptions()
        options.binary_location = self.chromium
        for flag in (
            *CHROMIUM_FLAGS,
            f"--user-data-dir={self._profile}",
            f"--window-size={self.width},{self.height}",
        ):
            options.add_argument(flag)
        try:
            self._driver = webdriver.Chrome(
                service=Service(executable_path=self.chromedriver), options=options
            )
            self._driver.set_page_load_timeout(self.timeout)
            if self.block_network:
                self._driver.execute_cdp_cmd("Network.enable", {})
                self._driver.execute_cdp_cmd(
                    "Network.setBlockedURLs", {"urls": ["http://*", "https://*", "ws://*", "wss://*"]}
                )
        except Exception:
            self._close()
            raise
        return self

    def close(self) -> None:
        """Quit the browser and remove its profile directory (waits for a render in progress)."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._driver is not None:
            try:
                self._driver.quit()
            finally:
                self._driver = None
        if self._profile:
            shutil.rmtree(self._profile, ignore_errors=True)
        self._profile = None

    def __enter__(self) -> ChromiumRenderer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _viewport(self, height: int) -> None:
        self._driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def render_file(self, path: str | Path, text_blocks: bool = True) -> PageRender:
        """Render a trusted local HTML file (relative assets resolve against its directory).

        ``text_blocks=False`` takes the screenshot only (two captures fewer)."""
        return self._render(Path(path).resolve().as_uri(), text_blocks)

    def render_html(self, html: str, text_blocks: bool = True) -> PageRender:
        """Render an untrusted HTML string (``text_blocks`` as for :meth:`render_file`).

        The page is loaded from a ``data:`` URL, so its origin is opaque and Chromium refuses every
        ``file://`` load it asks for (iframes, images, stylesheets): a generated page cannot put
        local files into its screenshot or text. Relative URLs do not resolve.
        """
        encoded = base64.b64encode(html.encode("utf-8")).decode("ascii")
        return self._render(f"data:text/html;charset=utf-8;base64,{encoded}", text_blocks)

    def _capture(self) -> np.ndarray:
        """The current page as an (H, W, 3) uint8 RGB array (lossless PNG, fast compression)."""
        from PIL import Image

        shot = self._driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "optimizeForSpeed": True}
        )
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB"))

    def _render(self, url: str, text_blocks: bool) -> PageRender:
        # One lock around start, render and the close after a failure: with several scoring
        # threads, a failure in one must not quit the browser while another is rendering.
        with self._lock:
            self._start()
            try:
                self._viewport(self.height)
                self._driver.get(url)
                page_height = int(self._driver.execute_script(_PAGE_HEIGHT_JS) or self.height)
                page_height = min(max(page_height, self.height), self.max_height)
                self._viewport(page_height)
                image = self._capture()
                meta: dict[str, Any] = {}
                blocks: list[TextBlock] = []
                if text_blocks:
                    blocks = self._text_blocks(image, meta)
            except Exception:
                # A page that hangs (an endless script) can leave the tab unusable: start afresh next time.
                self._close()
                raise
        return PageRender(blocks, int(image.shape[1]), int(image.shape[0]), image, meta=meta)

    def _text_blocks(self, image: np.ndarray, meta: dict[str, Any]) -> list[TextBlock]:
        """Design2Code's blocks of the loaded page (:mod:`glmkit.eval.text_blocks`); changes the page."""
        colours = palette(0)
        count = self._driver.execute_script(RECOLOUR_JS, colours, list(TEXT_TAGS))
        nodes = text_colours(self._driver.execute_script(TEXT_NODES_JS) or [])
        recoloured = self._capture()
        self._driver.execute_script(RECOLOUR_JS, palette(SHIFT), list(TEXT_TAGS))
        shifted = self._capture()
        if count > len(colours):
            meta["text_blocks_note"] = f"{count} text elements; only the first {len(colours)} were recoloured"
        return [TextBlock(**b) for b in blocks_from_renders(image, recoloured, shifted, nodes)]
