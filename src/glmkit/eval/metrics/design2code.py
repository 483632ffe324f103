"""UI-to-code visual metrics in the style of Design2Code (Si et al. 2024; report section 5).

Both the reference page and the generated page are rendered in headless Chromium (Debian's
``chromium`` + ``chromedriver`` through Selenium; one browser reused for a whole run, network
requests blocked so offline rendering is deterministic; generated HTML is loaded from a ``data:``
URL so that it cannot embed local files). For each page we take a full-page
screenshot and, with JavaScript, the visible text blocks (one block per element holding text,
its bounding box and its computed text colour). Then:

* **block match**: blocks of the two pages are paired by text similarity
  (``difflib.SequenceMatcher`` ratio, ``autojunk`` off) with the Hungarian algorithm
  (``scipy.optimize.linear_sum_assignment`` when SciPy is installed, else a greedy pairing);
  pairs below 0.5 similarity are dropped. Score = area of matched blocks on both pages /
  area of all blocks on both pages (areas normalised by page size).
* **text**: mean similarity of matched pairs.
* **position**: mean of 1 - max(|dx|, |dy|) of matched block centres, normalised by page size.
* **color**: mean of max(0, 1 - dE/100) with dE the **CIEDE2000** difference (Sharma et al.
  2005) of the text colours, converted from sRGB (D65) to CIELAB.
* **visual**: **SSIM** (Wang et al. 2004; Gaussian window sigma 1.5, K1 0.01, K2 0.03) of the
  greyscale screenshots, after padding both to the taller page with white and resizing to 256 px
  width. This replaces Design2Code's CLIP similarity, which needs downloaded weights.
* **final**: the mean of the five, as Design2Code's 0.2 x sum. If the reference and the candidate
  both have no text, the four block scores are 1; if only one has text, they are 0.

Unlike Design2Code, blocks are not merged (``find_possible_merge``) and text colour comes from the
computed style instead of the HTML source; a page that fails to render scores as a blank page.
"""

from __future__ import annotations

import base64
import difflib
import io
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glmkit.eval.metrics.base import METRICS, MetricOutput, SampleMetric
from glmkit.eval.sample import Sample

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
    """A visible text block: its text, its box in page pixels (x, y, w, h) and its RGB text colour."""

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


# ---------------------------------------------------------------------------------------- colour


def srgb_to_lab(rgb: Any) -> np.ndarray:
    """sRGB in 0-255 (..., 3) to CIELAB under D65 (..., 3)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    )
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    delta = 6.0 / 29.0
    f = np.where(xyz > delta**3, np.cbrt(xyz), xyz / (3 * delta**2) + 4.0 / 29.0)
    lab_l = 116.0 * f[..., 1] - 16.0
    lab_a = 500.0 * (f[..., 0] - f[..., 1])
    lab_b = 200.0 * (f[..., 1] - f[..., 2])
    return np.stack([lab_l, lab_a, lab_b], axis=-1)


def ciede2000(lab1: Any, lab2: Any, k_l: float = 1.0, k_c: float = 1.0, k_h: float = 1.0) -> np.ndarray:
    """CIEDE2000 colour difference of CIELAB colours (..., 3), following Sharma, Wu & Dalal (2005)."""
    lab1 = np.asarray(lab1, dtype=np.float64)
    lab2 = np.asarray(lab2, dtype=np.float64)
    l1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    l2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    c_bar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2.0
    g = 0.5 * (1.0 - np.sqrt(c_bar**7 / (c_bar**7 + 25.0**7)))
    a1p, a2p = (1.0 + g) * a1, (1.0 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360.0
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360.0
    zero = (c1p * c2p) == 0

    d_lp = l2 - l1
    d_cp = c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180.0, dh - 360.0, np.where(dh < -180.0, dh + 360.0, dh))
    dh = np.where(zero, 0.0, dh)
    d_hp = 2.0 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh) / 2.0)

    l_bar = (l1 + l2) / 2.0
    c_barp = (c1p + c2p) / 2.0
    h_sum = h1p + h2p
    h_barp = np.where(
        np.abs(h1p - h2p) <= 180.0,
        h_sum / 2.0,
        np.where(h_sum < 360.0, (h_sum + 360.0) / 2.0, (h_sum - 360.0) / 2.0),
    )
    h_barp = np.where(zero, h_sum, h_barp)
    t = (
        1.0
        - 0.17 * np.cos(np.radians(h_barp - 30.0))
        + 0.24 * np.cos(np.radians(2.0 * h_barp))
        + 0.32 * np.cos(np.radians(3.0 * h_barp + 6.0))
        - 0.20 * np.cos(np.radians(4.0 * h_barp - 63.0))
    )
    d_theta = 30.0 * np.exp(-(((h_barp - 275.0) / 25.0) ** 2))
    r_c = 2.0 * np.sqrt(c_barp**7 / (c_barp**7 + 25.0**7))
    s_l = 1.0 + 0.015 * (l_bar - 50.0) ** 2 / np.sqrt(20.0 + (l_bar - 50.0) ** 2)
    s_c = 1.0 + 0.045 * c_barp
    s_h = 1.0 + 0.015 * c_barp * t
    r_t = -np.sin(np.radians(2.0 * d_theta)) * r_c
    tl, tc, th = d_lp / (k_l * s_l), d_cp / (k_c * s_c), d_hp / (k_h * s_h)
    return np.sqrt(np.maximum(tl**2 + tc**2 + th**2 + r_t * tc * th, 0.0))


def color_similarity(rgb1: Any, rgb2: Any) -> float:
    """max(0, 1 - CIEDE2000 / 100) of two sRGB colours (Design2Code's colour score)."""
    de = float(ciede2000(srgb_to_lab(rgb1), srgb_to_lab(rgb2)))
    return max(0.0, 1.0 - de / 100.0)


# ----------------------------------------------------------------------------------- structure


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = int(3.5 * sigma + 0.5)  # the window torchmetrics and skimage use (11 taps at sigma 1.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def _blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable filtering with whole-sample reflection at the borders, output the input's size."""
    r = len(kernel) // 2
    padded = np.pad(img, r, mode="reflect")
    h, w = img.shape
    rows = sum(kernel[i] * padded[i : i + h, :] for i in range(len(kernel)))
    return sum(kernel[i] * rows[:, i : i + w] for i in range(len(kernel)))


def ssim(
    x: Any, y: Any, data_range: float = 255.0, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03
) -> float:
    """Mean SSIM of two greyscale images of one shape (Wang et al. 2004, Gaussian window)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"ssim needs two 2-D images of one shape, got {x.shape} and {y.shape}")
    kernel = _gaussian_kernel(sigma)
    mu_x, mu_y = _blur(x, kernel), _blur(y, kernel)
    sxx = np.maximum(_blur(x * x, kernel) - mu_x**2, 0.0)
    syy = np.maximum(_blur(y * y, kernel) - mu_y**2, 0.0)
    sxy = _blur(x * y, kernel) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    smap = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return float(smap.mean())


def _to_grey(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 3:
        img = img[..., :3] @ np.array([0.299, 0.587, 0.114])
    return img


def visual_similarity(shot1: np.ndarray, shot2: np.ndarray, width: int = 256) -> float:
    """SSIM of two screenshots padded (white) to a common size and resized to ``width`` pixels wide."""
    from PIL import Image

    g1, g2 = _to_grey(shot1), _to_grey(shot2)
    h, w = max(g1.shape[0], g2.shape[0]), max(g1.shape[1], g2.shape[1])

    def prep(g: np.ndarray) -> np.ndarray:
        canvas = np.full((h, w), 255.0)
        canvas[: g.shape[0], : g.shape[1]] = g
        out_h = max(8, round(h * width / w))
        return np.asarray(
            Image.fromarray(canvas.astype(np.uint8)).resize((width, out_h), Image.BILINEAR), np.float64
        )

    return ssim(prep(g1), prep(g2))


# ------------------------------------------------------------------------------------- blocks


def text_similarity(a: str, b: str) -> float:
    """``difflib.SequenceMatcher`` ratio with the autojunk heuristic off (it misfires at >= 200 chars)."""
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def match_blocks(
    ref: list[TextBlock], cand: list[TextBlock], min_similarity: float = 0.5
) -> list[tuple[int, int, float]]:
    """One-to-one pairs (ref index, cand index, similarity) maximising total text similarity."""
    if not ref or not cand:
        return []
    sim = np.array([[text_similarity(r.text, c.text) for c in cand] for r in ref])
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        pairs = _greedy_assignment(sim)
    else:
        rows, cols = linear_sum_assignment(sim, maximize=True)
        pairs = list(zip(rows.tolist(), cols.tolist(), strict=True))
    return [(i, j, float(sim[i, j])) for i, j in pairs if sim[i, j] >= min_similarity]


def _greedy_assignment(sim: np.ndarray) -> list[tuple[int, int]]:
    pairs, used_r, used_c = [], set(), set()
    for flat in np.argsort(-sim, axis=None, kind="stable"):
        i, j = divmod(int(flat), sim.shape[1])
        if i not in used_r and j not in used_c:
            pairs.append((i, j))
            used_r.add(i)
            used_c.add(j)
    return pairs


def _norm_area(block: TextBlock, page: PageRender) -> float:
    return (block.w / max(page.width, 1)) * (block.h / max(page.height, 1))


def _centre(block: TextBlock, page: PageRender) -> tuple[float, float]:
    return (block.x + block.w / 2) / max(page.width, 1), (block.y + block.h / 2) / max(page.height, 1)


def block_scores(ref: PageRender, cand: PageRender, min_similarity: float = 0.5) -> dict[str, float]:
    """Block-match, text, position and colour scores of two rendered pages (see the module docstring)."""
    if not ref.blocks and not cand.blocks:
        return {"block_match": 1.0, "text": 1.0, "position": 1.0, "color": 1.0, "matched": 0.0}
    pairs = match_blocks(ref.blocks, cand.blocks, min_similarity)
    if not pairs:
        return {"block_match": 0.0, "text": 0.0, "position": 0.0, "color": 0.0, "matched": 0.0}
    total = sum(_norm_area(b, ref) for b in ref.blocks) + sum(_norm_area(b, cand) for b in cand.blocks)
    matched = sum(_norm_area(ref.blocks[i], ref) + _norm_area(cand.blocks[j], cand) for i, j, _ in pairs)
    text = position = color = 0.0
    for i, j, s in pairs:
        (x1, y1), (x2, y2) = _centre(ref.blocks[i], ref), _centre(cand.blocks[j], cand)
        text += s
        position += max(0.0, 1.0 - max(abs(x1 - x2), abs(y1 - y2)))
        color += color_similarity(ref.blocks[i].color, cand.blocks[j].color)
    n = len(pairs)
    return {
        "block_match": matched / total if total > 0 else 0.0,
        "text": text / n,
        "position": position / n,
        "color": color / n,
        "matched": float(n),
    }


def design2code_scores(ref: PageRender, cand: PageRender, min_similarity: float = 0.5) -> dict[str, float]:
    """All five Design2Code-style scores and their mean ``final``."""
    scores = block_scores(ref, cand, min_similarity)
    if ref.screenshot is not None and cand.screenshot is not None:
        scores["visual"] = visual_similarity(ref.screenshot, cand.screenshot)
    else:
        scores["visual"] = 0.0
    scores["final"] = sum(scores[k] for k in ("block_match", "text", "position", "color", "visual")) / 5.0
    return scores


# ------------------------------------------------------------------------------------ rendering

_BLOCKS_JS = r"""
const groups = new Map();
const order = [];
const root = document.body || document.documentElement;
const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
let node;
while ((node = walker.nextNode())) {
  const text = node.textContent.replace(/\s+/g, ' ').trim();
  if (!text) continue;
  const el = node.parentElement;
  if (!el || ['SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE', 'TITLE'].includes(el.tagName)) continue;
  if (el.checkVisibility && !el.checkVisibility({opacityProperty: true, visibilityProperty: true})) continue;
  const range = document.createRange();
  range.selectNodeContents(node);
  const rects = Array.from(range.getClientRects()).filter(r => r.width > 0 && r.height > 0);
  if (!rects.length) continue;
  let g = groups.get(el);
  if (!g) {
    g = {text: [], x1: Infinity, y1: Infinity, x2: -Infinity, y2: -Infinity, color: getComputedStyle(el).color};
    groups.set(el, g);
    order.push(el);
  }
  g.text.push(text);
  for (const r of rects) {
    g.x1 = Math.min(g.x1, r.left + window.scrollX);
    g.y1 = Math.min(g.y1, r.top + window.scrollY);
    g.x2 = Math.max(g.x2, r.right + window.scrollX);
    g.y2 = Math.max(g.y2, r.bottom + window.scrollY);
  }
}
return order.map(el => {
  const g = groups.get(el);
  return {text: g.text.join(' '), x: g.x1, y: g.y1, w: g.x2 - g.x1, h: g.y2 - g.y1, color: g.color};
});
"""

_PAGE_HEIGHT_JS = (
    "return Math.max(document.documentElement.scrollHeight, document.body ? document.body.scrollHeight : 0);"
)
_NUM_RE = re.compile(r"[-+]?\d*\.?\d+(?:e[-+]?\d+)?", re.I)


def parse_css_color(value: str) -> tuple[float, float, float]:
    """RGB (0-255) of a computed CSS colour: ``rgb(...)``, ``rgba(...)`` or ``color(srgb r g b)``."""
    value = (value or "").strip().lower()
    nums = [float(v) for v in _NUM_RE.findall(value)]
    if value.startswith("color(srgb") and len(nums) >= 3:
        return nums[0] * 255.0, nums[1] * 255.0, nums[2] * 255.0
    if value.startswith("rgb") and len(nums) >= 3:
        return nums[0], nums[1], nums[2]
    return 0.0, 0.0, 0.0


def chromium_unavailable_reason(chromium: str | None = None, chromedriver: str | None = None) -> str | None:
    """None when headless rendering can work, else why not (for skips and error messages)."""
    chromium = chromium or os.environ.get("GLMKIT_CHROMIUM", DEFAULT_CHROMIUM)
    chromedriver = chromedriver or os.environ.get("GLMKIT_CHROMEDRIVER", DEFAULT_CHROMEDRIVER)
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
        self.chromium = chromium or os.environ.get("GLMKIT_CHROMIUM", DEFAULT_CHROMIUM)
        self.chromedriver = chromedriver or os.environ.get("GLMKIT_CHROMEDRIVER", DEFAULT_CHROMEDRIVER)
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

    def render_file(self, path: str | Path) -> PageRender:
        """Render a trusted local HTML file (relative assets resolve against its directory)."""
        return self._render(Path(path).resolve().as_uri())

    def render_html(self, html: str) -> PageRender:
        """Render an untrusted HTML string.

        The page is loaded from a ``data:`` URL, so its origin is opaque and Chromium refuses every
        ``file://`` load it asks for (iframes, images, stylesheets): a generated page cannot put
        local files into its screenshot or text. Relative URLs do not resolve.
        """
        encoded = base64.b64encode(html.encode("utf-8")).decode("ascii")
        return self._render(f"data:text/html;charset=utf-8;base64,{encoded}")

    def _render(self, url: str) -> PageRender:
        from PIL import Image

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
                raw_blocks = self._driver.execute_script(_BLOCKS_JS) or []
                shot = self._driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
            except Exception:
                # A page that hangs (an endless script) can leave the tab unusable: start afresh next time.
                self._close()
                raise
        image = np.asarray(Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB"))
        blocks = [
            TextBlock(
                text=str(b["text"]),
                x=float(b["x"]),
                y=float(b["y"]),
                w=float(b["w"]),
                h=float(b["h"]),
                color=parse_css_color(b.get("color", "")),
            )
            for b in raw_blocks
            if b.get("w", 0) > 0 and b.get("h", 0) > 0
        ]
        return PageRender(blocks, int(image.shape[1]), int(image.shape[0]), image)


# -------------------------------------------------------------------------------------- metric

_FENCE_RE = re.compile(r"```(?:html|HTML)?\s*\n(.*?)```", re.S)


def extract_html(text: str) -> str:
    """The HTML inside a model output: the longest fenced block, else from the first tag to the last."""
    text = text or ""
    fences = _FENCE_RE.findall(text)
    if fences:
        return max(fences, key=len).strip()
    start = text.find("<")
    end = text.rfind(">")
    if start >= 0 and end > start:
        return text[start : end + 1]
    return text


def _reference_html_path(sample: Sample) -> Path:
    answer = sample.answer
    if isinstance(answer, dict):
        answer = answer.get("html")
    if not isinstance(answer, str) or not answer.lower().endswith((".html", ".htm")):
        raise ValueError(
            f"expected {{'html': 'pages/ref.html'}} (a path to the reference page), got {sample.answer!r}"
        )
    return sample.resolve(answer)


@METRICS.register("design2code")
class Design2CodeScorer(SampleMetric):
    """Design2Code-style visual scores of generated HTML against a reference page.

    Scores: ``<key>`` (the mean of the five) and ``<key>.block_match``, ``.text``, ``.position``,
    ``.color``, ``.visual``. The browser starts on first use and is reused; reference renders are
    cached. ``timeout`` is the page-load limit in seconds; a candidate that exceeds it scores as blank.
    """

    name = "design2code"

    def __init__(
        self,
        chromium: str | None = None,
        chromedriver: str | None = None,
        width: int = 1280,
        height: int = 960,
        min_similarity: float = 0.5,
        timeout: float = 30.0,
        key: str | None = None,
    ) -> None:
        super().__init__(key)
        reason = chromium_unavailable_reason(chromium, chromedriver)
        if reason is not None:
            raise RuntimeError(f"the design2code metric renders pages in headless Chromium: {reason}")
        self.renderer = ChromiumRenderer(chromium, chromedriver, width=width, height=height, timeout=timeout)
        self.min_similarity = min_similarity
        self._ref_cache: dict[Path, PageRender] = {}

    def check_answer(self, sample: Sample) -> None:
        path = _reference_html_path(sample)
        if not path.is_file():
            raise ValueError(f"reference page not found: {path}")

    def score(self, prediction: str, sample: Sample) -> MetricOutput:
        path = _reference_html_path(sample)
        ref = self._ref_cache.get(path)
        if ref is None:
            ref = self._ref_cache[path] = self.renderer.render_file(path)
        failure = None
        try:
            cand = self.renderer.render_html(extract_html(prediction))
        except Exception as exc:  # a broken page scores as blank, and the failure is counted
            failure = f"candidate page failed to render: {type(exc).__name__}: {exc}"
            cand = blank_page(self.renderer.width, self.renderer.height, failure)
        scores = design2code_scores(ref, cand, self.min_similarity)
        out = self._out(
            scores.pop("final"),
            {
                "ref_blocks": len(ref.blocks),
                "cand_blocks": len(cand.blocks),
                "matched": scores.pop("matched"),
            },
            **scores,
        )
        out.failure = failure
        return out

    def oracle(self, sample: Sample) -> str:
        return "```html\n" + _reference_html_path(sample).read_text(encoding="utf-8") + "\n```"

    def close(self) -> None:
        self.renderer.close()
        self._ref_cache.clear()
