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

Before matching, blocks that one page split and the other did not are joined, as Design2Code's
``find_possible_merge`` does: neighbouring blocks (consecutive in document order) of either page are
merged, one pair at a time, while that raises the total similarity of the best matching (a
paragraph the candidate wrote as two ``<span>`` elements still matches the reference's one). Unlike
Design2Code, text colour comes from the computed style instead of the HTML source; a page that fails
to render scores as a blank page.

Rendering lives in :mod:`glmkit.eval.render`, the colour difference in :mod:`glmkit.eval.metrics.color`
and SSIM in :mod:`glmkit.eval.metrics.visual`; their names stay importable from here.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from glmkit.eval.metrics.base import METRICS
from glmkit.eval.metrics.color import ciede2000, color_similarity, srgb_to_lab
from glmkit.eval.metrics.visual import ssim, visual_similarity
from glmkit.eval.render import (
    CHROMIUM_FLAGS,
    DEFAULT_CHROMEDRIVER,
    DEFAULT_CHROMIUM,
    ChromiumRenderer,
    PageRender,
    TextBlock,
    blank_page,
    chromium_unavailable_reason,
    parse_css_color,
)
from glmkit.scoring import Sample, Scores, Verifier

# Re-exported: these lived here before the renderer and the colour / SSIM maths had their own modules.
__all__ = [
    "CHROMIUM_FLAGS",
    "DEFAULT_CHROMEDRIVER",
    "DEFAULT_CHROMIUM",
    "ChromiumRenderer",
    "Design2CodeScorer",
    "PageRender",
    "TextBlock",
    "blank_page",
    "block_scores",
    "chromium_unavailable_reason",
    "ciede2000",
    "color_similarity",
    "design2code_scores",
    "extract_html",
    "join_blocks",
    "match_blocks",
    "merge_split_blocks",
    "parse_css_color",
    "srgb_to_lab",
    "ssim",
    "text_similarity",
    "visual_similarity",
]


# ------------------------------------------------------------------------------------- blocks


@functools.lru_cache(maxsize=65536)  # block merging asks for the same pairs again and again
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


def _matched_similarity(ref: list[TextBlock], cand: list[TextBlock], min_similarity: float) -> float:
    return sum(s for _, _, s in match_blocks(ref, cand, min_similarity))


def join_blocks(a: TextBlock, b: TextBlock) -> TextBlock:
    """One block from two: texts joined by a space, the union of the boxes, the larger one's colour."""
    x, y = min(a.x, b.x), min(a.y, b.y)
    right, bottom = max(a.x + a.w, b.x + b.w), max(a.y + a.h, b.y + b.h)
    color = a.color if a.w * a.h >= b.w * b.h else b.color
    return TextBlock(f"{a.text} {b.text}", x, y, right - x, bottom - y, color)


def merge_split_blocks(
    ref: list[TextBlock], cand: list[TextBlock], min_similarity: float = 0.5
) -> tuple[list[TextBlock], list[TextBlock]]:
    """Join consecutive blocks of either page while that raises the best matching's total similarity.

    Each round tries every neighbouring pair on both pages and keeps the single merge that helps
    most; it stops when none helps, so a page's blocks that each match a block of the other page are
    never glued together. At most ``len(ref) + len(cand)`` rounds.
    """
    ref, cand = list(ref), list(cand)
    best = _matched_similarity(ref, cand, min_similarity)
    while True:
        choice = None
        for side in (0, 1):
            blocks = (ref, cand)[side]
            for k in range(len(blocks) - 1):
                merged = [*blocks[:k], join_blocks(blocks[k], blocks[k + 1]), *blocks[k + 2 :]]
                pair = (merged, cand) if side == 0 else (ref, merged)
                total = _matched_similarity(*pair, min_similarity)
                if total > best + 1e-9:
                    best, choice = total, pair
        if choice is None:
            return ref, cand
        ref, cand = choice


def _norm_area(block: TextBlock, page: PageRender) -> float:
    return (block.w / max(page.width, 1)) * (block.h / max(page.height, 1))


def _centre(block: TextBlock, page: PageRender) -> tuple[float, float]:
    return (block.x + block.w / 2) / max(page.width, 1), (block.y + block.h / 2) / max(page.height, 1)


def block_scores(
    ref: PageRender, cand: PageRender, min_similarity: float = 0.5, merge: bool = True
) -> dict[str, float]:
    """Block-match, text, position and colour scores of two rendered pages (see the module docstring).

    ``merge`` first joins blocks that one page split and the other did not (:func:`merge_split_blocks`).
    """
    if not ref.blocks and not cand.blocks:
        return {"block_match": 1.0, "text": 1.0, "position": 1.0, "color": 1.0, "matched": 0.0}
    ref_blocks, cand_blocks = ref.blocks, cand.blocks
    if merge:
        ref_blocks, cand_blocks = merge_split_blocks(ref_blocks, cand_blocks, min_similarity)
    pairs = match_blocks(ref_blocks, cand_blocks, min_similarity)
    if not pairs:
        return {"block_match": 0.0, "text": 0.0, "position": 0.0, "color": 0.0, "matched": 0.0}
    total = sum(_norm_area(b, ref) for b in ref_blocks) + sum(_norm_area(b, cand) for b in cand_blocks)
    matched = sum(_norm_area(ref_blocks[i], ref) + _norm_area(cand_blocks[j], cand) for i, j, _ in pairs)
    text = position = color = 0.0
    for i, j, s in pairs:
        (x1, y1), (x2, y2) = _centre(ref_blocks[i], ref), _centre(cand_blocks[j], cand)
        text += s
        position += max(0.0, 1.0 - max(abs(x1 - x2), abs(y1 - y2)))
        color += color_similarity(ref_blocks[i].color, cand_blocks[j].color)
    n = len(pairs)
    return {
        "block_match": matched / total if total > 0 else 0.0,
        "text": text / n,
        "position": position / n,
        "color": color / n,
        "matched": float(n),
    }


def design2code_scores(
    ref: PageRender, cand: PageRender, min_similarity: float = 0.5, merge: bool = True
) -> dict[str, float]:
    """All five Design2Code-style scores and their mean ``final``."""
    scores = block_scores(ref, cand, min_similarity, merge)
    if ref.screenshot is not None and cand.screenshot is not None:
        scores["visual"] = visual_similarity(ref.screenshot, cand.screenshot)
    else:
        scores["visual"] = 0.0
    scores["final"] = sum(scores[k] for k in ("block_match", "text", "position", "color", "visual")) / 5.0
    return scores


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
class Design2CodeScorer(Verifier):
    """Design2Code-style visual scores of generated HTML against a reference page.

    Scores: ``<key>`` (the mean of the five) and ``<key>.block_match``, ``.text``, ``.position``,
    ``.color``, ``.visual``. The browser starts on first use and is reused; reference renders are
    cached. ``timeout`` is the page-load limit in seconds; a candidate that exceeds it scores as blank.
    ``merge_blocks`` joins blocks one page split and the other did not before matching (default on,
    as in Design2Code).
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
        merge_blocks: bool = True,
        key: str | None = None,
    ) -> None:
        super().__init__(key)
        reason = chromium_unavailable_reason(chromium, chromedriver)
        if reason is not None:
            raise RuntimeError(f"the design2code metric renders pages in headless Chromium: {reason}")
        self.renderer = ChromiumRenderer(chromium, chromedriver, width=width, height=height, timeout=timeout)
        self.min_similarity = min_similarity
        self.merge_blocks = merge_blocks
        self._ref_cache: dict[Path, PageRender] = {}

    def check_answer(self, sample: Sample) -> None:
        path = _reference_html_path(sample)
        if not path.is_file():
            raise ValueError(f"reference page not found: {path}")

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        path = _reference_html_path(sample)
        ref = self._ref_cache.get(path)
        if ref is None:
            ref = self._ref_cache[path] = self.renderer.render_file(path)
        failure = None
        try:
            cand = self.renderer.render_html(extract_html(response))
        except Exception as exc:  # a broken page scores as blank, and the failure is counted
            failure = f"candidate page failed to render: {type(exc).__name__}: {exc}"
            cand = blank_page(self.renderer.width, self.renderer.height, failure)
        scores = design2code_scores(ref, cand, self.min_similarity, self.merge_blocks)
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
