"""Design2Code's visual score (``design2code``): block-match, text, position, colour and CLIP scores
of a generated page against the reference page, and their mean.

Reference: Design2Code (NoviScl/Design2Code) ``metrics/visual_score.py``, ``visual_eval_v3_multi``
(also vendored by VLMEvalKit as ``vlmeval/dataset/utils/design2code/visual_score.py``). Both pages
are rendered (:mod:`glmkit.eval.render`; the generated HTML first goes through the benchmark's
``pre_process``, :mod:`~glmkit.eval.metrics.design2code_html`), and each text block becomes
``(text in lower case, box as fractions of the screenshot, colour)``. Then, as the reference does:

1. blocks with the very same box are merged on each page (``merge_blocks_by_bbox``: texts joined
   by a space, colours averaged);
2. if either page has no block, the score is 0.2 x visual and the four block scores are 0;
3. ``find_possible_merge``: the cost of a pair is minus its ``difflib.SequenceMatcher`` ratio;
   repeatedly, every merge of two neighbouring blocks of the generated page, then of the reference
   page, is tried, and those that improve the matched costs by more than 0.05
   (``difference_of_means``) are applied, largest first, skipping merges that share a block
   (``merge_blocks_wo_check``: boxes united, colours averaged with integer division); until nothing
   changes. The final one-to-one pairing (``linear_sum_assignment``) uses costs with a context
   bonus: each cost below -0.5 gets 0.1 x the sum of the two lowest other costs in its 3 x 3
   neighbourhood (``adjust_cost_for_context``);
4. pairs with text similarity < 0.5 are dropped; **block match** = matched area / (matched area +
   unmatched area of both pages); **text** = mean similarity; **position** = mean of 1 - max(|dx|,
   |dy|) of the box centres; **colour** = mean of max(0, 1 - CIEDE2000 / 100) computed with
   colormath's arithmetic (:func:`~glmkit.eval.metrics.color.design2code_color_similarity`);
5. **visual** = CLIP ViT-B/32 cosine of the screenshots with text inpainted and squashed to squares
   (:mod:`~glmkit.eval.metrics.clip_score`; the generated page is masked with its blocks after
   step 3's merges, the reference with its step-1 blocks, as the reference code ends up doing);
6. the score is 0.2 x (block match + text + position + colour + visual); with no pair left after
   step 4 it is 0.2 x visual.

``visual="clip"`` needs open_clip, OpenCV and the CLIP weights (a hub id or a local directory);
``"ssim"`` is an **offline stand-in** (:func:`~glmkit.eval.metrics.visual.visual_similarity`) whose
``design2code`` and ``design2code.visual`` values are not comparable with published numbers (the
summary marks them); ``"auto"`` (default) runs CLIP when its weights are available offline and the
stand-in otherwise, saying so.

Text blocks are found as the reference finds them (``metrics/ocr_free_utils.py``,
``get_blocks_ocr_free``): each text element recoloured from a palette, two renders diffed, each text
node's box and colour read from its pixels (:mod:`glmkit.eval.text_blocks`). glmkit recolours the
loaded page in place instead of re-parsing and reloading it (the same blocks on well-formed pages;
the differences on malformed markup are listed there). The reference re-renders every page through
Playwright's full-page screenshot in a 1280 x 720 viewport (glmkit's default too); glmkit's renderer
caps the page height at 4000 px.
"""

from __future__ import annotations

import difflib
import functools
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from glmkit.eval.metrics.base import METRICS, scorer_info
from glmkit.eval.metrics.clip_score import (
    DEFAULT_CLIP_MODEL,
    ClipVisualScore,
    Precision,
    clip_unavailable_reason,
)
from glmkit.eval.metrics.color import design2code_color_similarity
from glmkit.eval.metrics.design2code_html import extract_html, preprocess_html
from glmkit.eval.metrics.visual import visual_similarity
from glmkit.eval.render import ChromiumRenderer, PageRender, blank_page, chromium_unavailable_reason
from glmkit.scoring import Sample, Scores, Verifier

logger = logging.getLogger(__name__)

VisualMode = Literal["auto", "clip", "ssim"]
FAILED_RENDER_SIZE = (1280, 960)  # take_screenshot's blank image when a page fails to render
SSIM_STAND_IN = "visual: SSIM of the screenshots, an offline stand-in for the CLIP ViT-B/32 score"

__all__ = [
    "Block",
    "Design2CodeScorer",
    "design2code_scores",
    "extract_html",
    "find_possible_merge",
    "merge_blocks_by_bbox",
    "page_blocks",
    "text_similarity",
]


@dataclass(frozen=True)
class Block:
    """A text block as Design2Code scores it: lower-case text, (x, y, w, h) as fractions of the
    screenshot, and an RGB colour."""

    text: str
    bbox: tuple[float, float, float, float]
    color: tuple[float, ...]

    @property
    def area(self) -> float:
        return self.bbox[2] * self.bbox[3]

    @property
    def centre(self) -> tuple[float, float]:
        return self.bbox[0] + self.bbox[2] / 2, self.bbox[1] + self.bbox[3] / 2


def page_blocks(page: PageRender) -> list[Block]:
    """A render's text blocks in Design2Code's form (boxes relative to the screenshot size)."""
    if page.screenshot is not None:
        height, width = page.screenshot.shape[:2]
    else:
        width, height = page.width, page.height
    width, height = max(width, 1), max(height, 1)
    return [
        Block(b.text.lower(), (b.x / width, b.y / height, b.w / width, b.h / height), tuple(b.color))
        for b in page.blocks
    ]


@functools.lru_cache(maxsize=65536)  # find_possible_merge asks for the same pairs again and again
def text_similarity(a: str, b: str) -> float:
    """``difflib.SequenceMatcher(None, a, b).ratio()`` with its default ``autojunk``, as the reference."""
    return difflib.SequenceMatcher(None, a, b).ratio()


def merge_blocks_by_bbox(blocks: Sequence[Block]) -> list[Block]:
    """Step 1: blocks with the same box become one (texts joined by a space, colours averaged)."""
    merged: dict[tuple[float, ...], Block] = {}
    for block in blocks:
        first = merged.get(block.bbox)
        if first is None:
            merged[block.bbox] = block
        else:
            color = tuple((a + b) / 2 for a, b in zip(first.color, block.color, strict=False))
            merged[block.bbox] = Block(f"{first.text} {block.text}", first.bbox, color)
    return list(merged.values())


def merge_pair(a: Block, b: Block) -> Block:
    """``merge_blocks_wo_check``: texts joined, boxes united, colours averaged with ``//``."""
    left, top = min(a.bbox[0], b.bbox[0]), min(a.bbox[1], b.bbox[1])
    right = max(a.bbox[0] + a.bbox[2], b.bbox[0] + b.bbox[2])
    bottom = max(a.bbox[1] + a.bbox[3], b.bbox[1] + b.bbox[3])
    color = tuple((x + y) // 2 for x, y in zip(a.color, b.color, strict=False))
    return Block(f"{a.text} {b.text}", (left, top, right - left, bottom - top), color)


def cost_matrix(a: Sequence[Block], b: Sequence[Block]) -> np.ndarray:
    """Minus the text similarity of every pair (rows: ``a``)."""
    cost = np.zeros((len(a), len(b)))
    for i, block_a in enumerate(a):
        for j, block_b in enumerate(b):
            cost[i, j] = -text_similarity(block_a.text, block_b.text)
    return cost


def adjust_cost_for_context(cost: np.ndarray, bonus: float, window: int) -> np.ndarray:
    """``adjust_cost_for_context``: a cost below -0.5 gains ``bonus`` x the sum of the ``2 * window``
    lowest other costs in its (2 window + 1)-square neighbourhood."""
    if window <= 0:
        return cost
    n, m = cost.shape
    adjusted = np.copy(cost)
    for i in range(n):
        for j in range(m):
            if adjusted[i][j] >= -0.5:
                continue
            nearby = cost[
                max(0, i - window) : min(n, i + window + 1), max(0, j - window) : min(m, j + window + 1)
            ]
            ordered = np.sort(nearby.flatten())[::-1]
            ordered = np.delete(ordered, np.where(ordered == cost[i, j])[0][0])  # the cell itself, once
            adjusted[i][j] += bonus * np.sum(ordered[-window * 2 :])
    return adjusted


def maximum_matching(
    a: Sequence[Block], b: Sequence[Block], bonus: float, window: int
) -> tuple[list[tuple[int, int]], list[float]]:
    """``find_maximum_matching``: the optimal one-to-one pairs and their (context-adjusted) costs."""
    from scipy.optimize import linear_sum_assignment

    cost = adjust_cost_for_context(cost_matrix(a, b), bonus, window)
    rows, cols = linear_sum_assignment(cost)
    return list(zip(rows.tolist(), cols.tolist(), strict=True)), cost[rows, cols].tolist()


def difference_of_means(current: list[float], updated: list[float]) -> float:
    """``difference_of_means``: compare the costs that differ between two matchings (as multisets).

    Positive (the merge helps) only when the differing current costs are worse on average **and**
    the best differing updated cost beats the best differing current one; otherwise 0 or negative.
    """
    left, right = Counter(current), Counter(updated)
    for cost in set(current) & set(updated):
        common = min(left[cost], right[cost])
        left[cost] -= common
        right[cost] -= common
    only_left, only_right = list(left.elements()), list(right.elements())
    mean_left = sum(only_left) / len(only_left) if only_left else 0
    mean_right = sum(only_right) / len(only_right) if only_right else 0
    if mean_left - mean_right > 0:
        return mean_left - mean_right if min(only_left) > min(only_right) else 0.0
    return mean_left - mean_right


def _apply_merges(blocks: list[Block], merges: list[list[Any]]) -> list[Block]:
    """``merge_blocks_by_list``: apply merges (i, i + 1) best first, skipping any that shares a block."""
    blocks = list(blocks)
    dropped = []
    while merges:
        i, j = merges[0][0], merges[0][1]
        blocks[i] = merge_pair(blocks[i], blocks[j])
        dropped.append(j)
        merges = [m for m in merges[1:] if m[0] not in (i, j) and m[1] not in (i, j)]
    for index in sorted(dropped, reverse=True):
        if index < len(blocks):
            blocks.pop(index)
    return blocks


def _candidate_merges(
    side: int, pred: list[Block], ref: list[Block], current: list[float], threshold: float
) -> list[list[Any]]:
    blocks = (pred, ref)[side]
    merges = []
    for i in range(len(blocks) - 1):
        trial = [*blocks[:i], merge_pair(blocks[i], blocks[i + 1]), *blocks[i + 2 :]]
        _, updated = maximum_matching(*((trial, ref) if side == 0 else (pred, trial)), 0.0, 1)
        diff = difference_of_means(current, updated)
        if diff > threshold:
            merges.append([i, i + 1, diff])
    merges.sort(key=lambda m: m[2], reverse=True)  # stable, as list.sort
    return merges


def find_possible_merge(
    pred: Sequence[Block], ref: Sequence[Block], consecutive_bonus: float = 0.1, window: int = 1
) -> tuple[list[Block], list[Block], list[tuple[int, int]]]:
    """Step 3: merge split blocks on both pages, then pair them with the context bonus."""
    pred, ref = list(pred), list(ref)
    while True:
        changed = False
        _, current = maximum_matching(pred, ref, 0.0, 1)
        for side in (0, 1):
            if len((pred, ref)[side]) < 2:
                continue
            merges = _candidate_merges(side, pred, ref, current, 0.05)
            if merges:
                changed = True
                if side == 0:
                    pred = _apply_merges(pred, merges)
                else:
                    ref = _apply_merges(ref, merges)
                _, current = maximum_matching(pred, ref, 0.0, 1)
        if not changed:
            break
    pairs, _ = maximum_matching(pred, ref, consecutive_bonus, window)
    return pred, ref, pairs


VisualFn = Callable[[Sequence[Block], Sequence[Block]], float]
"""``(generated page's blocks, reference page's blocks) -> visual similarity`` of the two screenshots."""


def design2code_scores(
    pred_blocks: Sequence[Block], ref_blocks: Sequence[Block], visual: VisualFn, min_similarity: float = 0.5
) -> dict[str, float]:
    """The five scores and ``final`` of one generated page (steps 1-6 of the module docstring)."""
    ref_blocks = merge_blocks_by_bbox(ref_blocks)
    zero = {"block_match": 0.0, "text": 0.0, "position": 0.0, "color": 0.0, "matched": 0.0}
    if not pred_blocks or not ref_blocks:
        score = visual(pred_blocks, ref_blocks)
        return {**zero, "visual": score, "final": 0.2 * score}
    pred, ref, pairs = find_possible_merge(merge_blocks_by_bbox(pred_blocks), ref_blocks)
    kept = []
    for i, j in pairs:
        similarity = text_similarity(pred[i].text, ref[j].text)
        if similarity >= min_similarity:
            kept.append((i, j, similarity))
    score = visual(pred, ref_blocks)
    if not kept:
        return {**zero, "visual": score, "final": 0.2 * score}
    kept_pred, kept_ref = {i for i, _, _ in kept}, {j for _, j, _ in kept}
    unmatched = sum(b.area for i, b in enumerate(pred) if i not in kept_pred)
    unmatched += sum(b.area for j, b in enumerate(ref) if j not in kept_ref)
    matched_areas = [pred[i].area + ref[j].area for i, j, _ in kept]
    positions = []
    for i, j, _ in kept:
        (x1, y1), (x2, y2) = pred[i].centre, ref[j].centre
        positions.append(1 - max(abs(x2 - x1), abs(y2 - y1)))
    scores = {
        "block_match": float(np.sum(matched_areas) / np.sum([unmatched, *matched_areas])),
        "text": float(np.mean([s for _, _, s in kept])),
        "position": float(np.mean(positions)),
        "color": float(
            np.mean([design2code_color_similarity(pred[i].color, ref[j].color) for i, j, _ in kept])
        ),
        "visual": score,
        "matched": float(len(kept)),
    }
    parts = ("block_match", "text", "position", "color", "visual")
    scores["final"] = 0.2 * (
        scores[parts[0]] + scores[parts[1]] + scores[parts[2]] + scores[parts[3]] + scores[parts[4]]
    )
    return scores


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
    """Design2Code's scores of generated HTML against a reference page (see the module docstring).

    Reference: Design2Code ``metrics/visual_score.py``, ``visual_eval_v3_multi`` (with
    ``find_possible_merge``, ``calculate_clip_similarity_with_blocks`` and ``pre_process``).
    Scores: ``<key>`` (0.2 x the sum of the five) and ``<key>.block_match``, ``.text``,
    ``.position``, ``.color``, ``.visual``. The browser starts on first use and is reused; reference
    renders are cached. A candidate that fails to render scores as a blank page (counted as a failure).

    Args:
        chromium / chromedriver: browser paths (default: Debian's, or ``GLMKIT_CHROMIUM`` /
            ``GLMKIT_CHROMEDRIVER``).
        width / height: the browser viewport: 1280 x 720, Playwright's default, which the reference's
            ``take_screenshot`` (``browser.new_page()``) renders in; a page shorter than the viewport
            is captured at the viewport's height. A page that fails to render is a white 1280 x 960
            image, as there, whatever the viewport.
        min_similarity: text similarity below which a pair is dropped (0.5).
        timeout: page-load limit in seconds.
        visual: ``"clip"``, ``"ssim"`` (offline stand-in, not comparable) or ``"auto"``.
        clip_model: open_clip hub id or local directory of the CLIP ViT-B/32 weights.
        device: where CLIP runs.
        clip_precision: ``"fp32"`` (default) or ``"fp16"``, the precision of the reference's GPU runs
            (:mod:`~glmkit.eval.metrics.clip_score`).
        key: the name the score is reported under.
    """

    name = "design2code"

    def __init__(
        self,
        chromium: str | None = None,
        chromedriver: str | None = None,
        width: int = 1280,
        height: int = 720,
        min_similarity: float = 0.5,
        timeout: float = 30.0,
        visual: VisualMode = "auto",
        clip_model: str = DEFAULT_CLIP_MODEL,
        device: str = "cpu",
        clip_precision: Precision = "fp32",
        key: str | None = None,
    ) -> None:
        super().__init__(key)
        if clip_precision not in ("fp32", "fp16"):
            raise ValueError(f"design2code: clip_precision={clip_precision!r}; valid: fp32, fp16")
        if visual not in ("auto", "clip", "ssim"):
            raise ValueError(f"design2code: visual={visual!r}; valid: auto, clip, ssim")
        reason = chromium_unavailable_reason(chromium, chromedriver)
        if reason is not None:
            raise RuntimeError(f"the design2code metric renders pages in headless Chromium: {reason}")
        clip_reason = None if visual == "ssim" else clip_unavailable_reason(clip_model)
        if visual == "clip" and clip_reason is not None and not clip_model.startswith("hf-hub:"):
            raise RuntimeError(f"design2code: visual='clip' cannot load {clip_model!r}: {clip_reason}")
        if visual == "clip" and clip_reason is not None and "not installed" in clip_reason:
            raise RuntimeError(f"design2code: visual='clip' needs {clip_reason}")
        if visual == "auto" and clip_reason is not None:
            logger.warning(
                "design2code: CLIP unavailable (%s); the visual score is the SSIM stand-in and the "
                "design2code numbers are not comparable with published ones",
                clip_reason,
            )
        self.visual = "ssim" if visual == "ssim" or (visual == "auto" and clip_reason is not None) else "clip"
        self.visual_fallback_reason = clip_reason if visual == "auto" and self.visual == "ssim" else None
        self.clip_model = clip_model
        self.clip_precision = clip_precision
        self.device = device
        self._clip: ClipVisualScore | None = None
        self.renderer = ChromiumRenderer(chromium, chromedriver, width=width, height=height, timeout=timeout)
        self.min_similarity = min_similarity
        self._ref_cache: dict[Path, PageRender] = {}

    def check_answer(self, sample: Sample) -> None:
        path = _reference_html_path(sample)
        if not path.is_file():
            raise ValueError(f"reference page not found: {path}")

    def _visual_fn(self, cand: PageRender, ref: PageRender) -> VisualFn:
        if self.visual == "ssim" or cand.screenshot is None or ref.screenshot is None:

            def ssim(pred_blocks: Sequence[Block], ref_blocks: Sequence[Block]) -> float:
                if cand.screenshot is None or ref.screenshot is None:
                    return 0.0
                return visual_similarity(cand.screenshot, ref.screenshot)

            return ssim
        if self._clip is None:
            self._clip = ClipVisualScore(self.clip_model, self.device, self.clip_precision)
        clip = self._clip

        def clip_score(pred_blocks: Sequence[Block], ref_blocks: Sequence[Block]) -> float:
            return clip(
                cand.screenshot, ref.screenshot, [b.bbox for b in pred_blocks], [b.bbox for b in ref_blocks]
            )

        return clip_score

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        path = _reference_html_path(sample)
        ref = self._ref_cache.get(path)
        if ref is None:
            ref = self._ref_cache[path] = self.renderer.render_file(path)
        failure = None
        try:
            cand = self.renderer.render_html(preprocess_html(extract_html(response)))
        except Exception as exc:  # a broken page scores as blank, and the failure is counted
            failure = f"candidate page failed to render: {type(exc).__name__}: {exc}"
            cand = blank_page(*FAILED_RENDER_SIZE, failure)
        scores = design2code_scores(
            page_blocks(cand), page_blocks(ref), self._visual_fn(cand, ref), self.min_similarity
        )
        details = {
            "ref_blocks": len(ref.blocks),
            "cand_blocks": len(cand.blocks),
            "matched": scores.pop("matched"),
        }
        out = self._out(scores.pop("final"), details, **scores)
        out.failure = failure
        return out

    def oracle(self, sample: Sample) -> str:
        return "```html\n" + _reference_html_path(sample).read_text(encoding="utf-8") + "\n```"

    def close(self) -> None:
        self.renderer.close()
        self._ref_cache.clear()

    def describe(self) -> dict[str, Any]:
        info = scorer_info("Design2Code metrics/visual_score.py: visual_eval_v3_multi")
        if self.visual == "ssim":
            reason = SSIM_STAND_IN + (
                f" ({self.visual_fallback_reason})" if self.visual_fallback_reason else ""
            )
            info = scorer_info(
                "Design2Code metrics/visual_score.py: visual_eval_v3_multi, visual score replaced by SSIM",
                not_comparable=[self.key, f"{self.key}.visual"],
                why_not_comparable=reason,
            )
        return {
            **super().describe(),
            "visual": self.visual,
            "clip_model": self.clip_model if self.visual == "clip" else None,
            "clip_precision": self.clip_precision if self.visual == "clip" else None,
            "min_similarity": self.min_similarity,
            **info,
        }
