"""Design2Code-style metrics: pure functions on hand-made blocks, and real renders in Chromium."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from glmkit.eval.metrics.design2code import (
    Design2CodeScorer,
    block_scores,
    design2code_scores,
    extract_html,
    join_blocks,
    match_blocks,
    merge_split_blocks,
    text_similarity,
)
from glmkit.eval.render import PageRender, TextBlock, chromium_unavailable_reason
from glmkit.scoring import Sample


def _page(*blocks: TextBlock, width: int = 1000, height: int = 1000) -> PageRender:
    return PageRender(list(blocks), width, height)


def test_block_scores_hand_computed() -> None:
    ref = _page(
        TextBlock("Welcome home", 0, 0, 100, 100, (0, 0, 0)),
        TextBlock("Contact us", 500, 500, 100, 100, (255, 0, 0)),
        TextBlock("zzzz", 900, 900, 100, 100),
    )
    cand = _page(
        TextBlock("Welcome home", 100, 0, 100, 100, (0, 0, 0)),  # moved 0.1 right
        TextBlock("Contact us", 500, 500, 100, 100, (255, 0, 0)),
        TextBlock("unrelated", 0, 900, 200, 100),
    )
    scores = block_scores(ref, cand)
    # Matched area 2*(0.01+0.01) = 0.04 of all area 0.03 + 0.04 = 0.07.
    assert scores["block_match"] == pytest.approx(0.04 / 0.07)
    assert scores["text"] == pytest.approx(1.0)
    assert scores["position"] == pytest.approx((0.9 + 1.0) / 2)
    assert scores["color"] == pytest.approx(1.0)
    assert scores["matched"] == 2


def test_matching_is_one_to_one_and_drops_weak_pairs() -> None:
    ref = [TextBlock("apple pie", 0, 0, 1, 1), TextBlock("apple", 0, 0, 1, 1)]
    cand = [TextBlock("apple", 0, 0, 1, 1), TextBlock("apple pie!", 0, 0, 1, 1), TextBlock("qqq", 0, 0, 1, 1)]
    pairs = match_blocks(ref, cand)
    assert sorted((i, j) for i, j, _ in pairs) == [(0, 1), (1, 0)]  # the best total, not greedy on row 0
    assert match_blocks(ref, []) == []
    assert text_similarity("abcd", "abce") == pytest.approx(0.75)
    assert match_blocks([TextBlock("abcd", 0, 0, 1, 1)], [TextBlock("wxyz", 0, 0, 1, 1)]) == []


def test_a_paragraph_split_in_two_is_joined_before_matching() -> None:
    ref = _page(
        TextBlock("Our team builds tools for researchers", 0, 0, 400, 20, (0, 0, 0)),
        TextBlock("Contact", 0, 100, 100, 20),
    )
    cand = _page(
        TextBlock("Our team builds", 0, 0, 200, 20, (0, 0, 0)),
        TextBlock("tools for researchers", 200, 0, 200, 20, (0, 0, 0)),
        TextBlock("Contact", 0, 100, 100, 20),
    )
    merged = block_scores(ref, cand)
    assert merged["text"] == pytest.approx(1.0) and merged["matched"] == 2
    assert merged["block_match"] == pytest.approx(1.0) and merged["position"] == pytest.approx(1.0)
    plain = block_scores(ref, cand, merge=False)  # half the sentence matched, the other half left over
    assert plain["text"] < 0.9 and plain["block_match"] < 1.0
    # blocks that each match their own counterpart are never glued together
    ref_blocks, cand_blocks = merge_split_blocks(ref.blocks, ref.blocks)
    assert ref_blocks == ref.blocks and cand_blocks == ref.blocks
    joined = join_blocks(TextBlock("a", 0, 0, 10, 10, (1, 2, 3)), TextBlock("b", 20, 5, 30, 30, (4, 5, 6)))
    assert joined == TextBlock("a b", 0, 0, 50, 35, (4, 5, 6))  # union box, the larger block's colour


def test_colour_and_empty_pages() -> None:
    ref = _page(TextBlock("Title", 0, 0, 10, 10, (0, 0, 0)))
    cand = _page(TextBlock("Title", 0, 0, 10, 10, (255, 255, 255)))
    assert block_scores(ref, cand)["color"] == 0.0
    assert block_scores(_page(), _page())["block_match"] == 1.0
    assert block_scores(ref, _page())["text"] == 0.0
    shot = np.full((20, 20, 3), 255, np.uint8)
    empty = PageRender([], 20, 20, shot)
    assert design2code_scores(empty, empty)["final"] == pytest.approx(1.0)


def test_html_extraction() -> None:
    assert extract_html("Here:\n```html\n<p>x</p>\n```\nthanks") == "<p>x</p>"
    assert extract_html("Sure! <html><body>hi</body></html> done") == "<html><body>hi</body></html>"
    assert extract_html("no html") == "no html"


REFERENCE = """<!DOCTYPE html><html><body style="margin:0;font-family:sans-serif">
<header style="background:#1f3b73;padding:20px"><span style="color:#ffffff;font-size:28px">Acme Rockets</span></header>
<h1 style="color:#8a1c1c;margin:30px">Fly to the moon today</h1>
<p style="color:#333333;margin:30px">Our rockets are tested on every launch pad in the valley.</p>
<footer style="background:#eeeeee;color:#555555;padding:12px">Copyright the rocket company</footer>
</body></html>"""
CHANGED = """<!DOCTYPE html><html><body style="margin:0;font-family:serif">
<p style="color:#00aa00;margin:300px 30px 0 600px">Fly to the sea tomorrow</p>
<h1 style="color:#0000ff;margin:30px">Acme Boats</h1>
</body></html>"""

chromium = pytest.mark.skipif(
    chromium_unavailable_reason() is not None,
    reason=f"needs headless Chromium: {chromium_unavailable_reason()}",
)


@pytest.mark.chromium
@chromium
def test_rendered_pages_identical_and_changed(tmp_path: Path) -> None:
    (tmp_path / "ref.html").write_text(REFERENCE, encoding="utf-8")
    sample = Sample("ui", "q", {"html": "ref.html"}, root=tmp_path)
    scorer = Design2CodeScorer(timeout=3.0)
    try:
        scorer.check_answer(sample)
        same = scorer.score(sample, scorer.oracle(sample)).scores
        changed = scorer.score(sample, f"```html\n{CHANGED}\n```").scores
        hung = scorer.score(sample, "<html><body><script>while(true){}</script>")
        again = scorer.score(sample, scorer.oracle(sample)).scores  # the browser recovers
    finally:
        scorer.close()
    for key in (
        "design2code",
        "design2code.block_match",
        "design2code.text",
        "design2code.position",
        "design2code.color",
        "design2code.visual",
    ):
        assert same[key] == pytest.approx(1.0, abs=1e-6), key
    assert changed["design2code"] < 0.7
    for key in ("design2code.block_match", "design2code.position", "design2code.color", "design2code.visual"):
        assert changed[key] < same[key] - 0.05, key
    # A page that hangs scores like a blank page, the failure is recorded, and rendering goes on.
    assert hung.scores["design2code"] < 0.5
    assert hung.failure is not None and "failed to render" in hung.failure
    assert again["design2code"] == pytest.approx(1.0, abs=1e-6)


def test_missing_chromium_is_a_clear_error(tmp_path: Path) -> None:
    reason = chromium_unavailable_reason(chromium=str(tmp_path / "no-chromium"))
    assert reason is not None and "chromium not found" in reason and "apt-get install" in reason
    with pytest.raises(RuntimeError, match="headless Chromium: chromium not found"):
        Design2CodeScorer(chromium=str(tmp_path / "no-chromium"))
