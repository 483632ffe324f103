"""Design2Code: parity of the block scoring with ``metrics/visual_score.py`` (``visual_eval_v3_multi``,
``find_possible_merge``, ``merge_blocks_by_bbox``, ``color_similarity_ciede2000``), the HTML
pre-processing, and real renders in Chromium.

The parity cases feed blocks (lower-case text, box as fractions, colour) straight to the scorer with a
stand-in visual function, 0.9 - 0.01 * #generated blocks - 0.001 * #reference blocks + 0.1 * generated
area, so the expected values also pin down WHICH blocks the reference hands to CLIP: the generated
page's blocks after the merges of ``find_possible_merge`` (it mutates that list in place), the
reference page's after ``merge_blocks_by_bbox`` only. Expected values were computed by running the
reference's algorithm as written (with colormath 3.0 for the colour term) on these blocks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from glmkit.eval.metrics.design2code import (
    Block,
    Design2CodeScorer,
    design2code_scores,
    difference_of_means,
    merge_blocks_by_bbox,
    merge_pair,
    page_blocks,
)
from glmkit.eval.metrics.design2code_html import (
    drop_repeated_elements,
    extract_html,
    preprocess_html,
    truncate_repetition,
    wrap_plain_text,
)
from glmkit.eval.render import PageRender, TextBlock, chromium_unavailable_reason
from glmkit.scoring import Sample

K = (0, 0, 0)
Spec = tuple[str, tuple[float, float, float, float], tuple[float, ...]]


def _visual(pred: list[Block], ref: list[Block]) -> float:
    return 0.9 - 0.01 * len(pred) - 0.001 * len(ref) + 0.1 * sum(b.area for b in pred)


def _blocks(specs: list[Spec]) -> list[Block]:
    return [Block(t, b, c) for t, b, c in specs]


LONG = "lorem ipsum " * 30
# (name, generated blocks, reference blocks, expected (final, block_match, text, position, color, visual))
CASES: list[tuple[str, list[Spec], list[Spec], tuple[float, ...]]] = [
    # identical pages: every block score is 1
    (
        "identical",
        [
            ("welcome home", (0.1, 0.1, 0.3, 0.05), K),
            ("contact us", (0.1, 0.5, 0.2, 0.05), (255, 0, 0)),
            ("footer", (0.0, 0.9, 1.0, 0.05), (80, 80, 80)),
        ],
        [
            ("welcome home", (0.1, 0.1, 0.3, 0.05), K),
            ("contact us", (0.1, 0.5, 0.2, 0.05), (255, 0, 0)),
            ("footer", (0.0, 0.9, 1.0, 0.05), (80, 80, 80)),
        ],
        (0.9749000000000001, 1.0, 1.0, 1.0, 1.0, 0.8744999999999999),
    ),
    # a paragraph split in two on the generated page is merged (and CLIP gets the merged blocks)
    (
        "split_pred",
        [
            ("our team builds", (0.0, 0.0, 0.2, 0.02), K),
            ("tools for researchers", (0.2, 0.0, 0.2, 0.02), K),
            ("contact", (0.0, 0.1, 0.1, 0.02), K),
        ],
        [
            ("our team builds tools for researchers", (0.0, 0.0, 0.4, 0.02), K),
            ("contact", (0.0, 0.1, 0.1, 0.02), K),
        ],
        (0.9758, 1.0, 1.0, 1.0, 1.0, 0.879),
    ),
    # split on the reference page: merged there, colours averaged with integer division
    (
        "split_ref",
        [
            ("our team builds tools for researchers", (0.0, 0.0, 0.4, 0.02), (10, 20, 30)),
            ("contact", (0.0, 0.1, 0.1, 0.02), K),
        ],
        [
            ("our team builds", (0.0, 0.0, 0.2, 0.02), (11, 21, 31)),
            ("tools for researchers", (0.2, 0.0, 0.2, 0.02), (13, 23, 33)),
            ("contact", (0.0, 0.1, 0.1, 0.02), K),
        ],
        (0.9750229876678245, 1.0, 1.0, 1.0, 0.9971149383391221, 0.878),
    ),
    # white on black text: CIEDE2000 of 100, colour score ~0
    (
        "colors",
        [("title", (0, 0, 0.1, 0.1), (255, 255, 255))],
        [("title", (0, 0, 0.1, 0.1), (0, 0, 0))],
        (0.7780000301959286, 1.0, 1.0, 1.0, 1.509796425658294e-07, 0.89),
    ),
    (
        "colors2",
        [("title", (0, 0, 0.1, 0.1), (200, 30, 40))],
        [("title", (0, 0, 0.1, 0.1), (30, 60, 200))],
        (0.891477707000107, 1.0, 1.0, 1.0, 0.5673885350005343, 0.89),
    ),
    # no block on one page: 0.2 x visual
    ("empty_pred", [], [("a", (0, 0, 0.1, 0.1), K)], (0.17980000000000002, 0.0, 0.0, 0.0, 0.0, 0.899)),
    ("empty_ref", [("a", (0, 0, 0.1, 0.1), K)], [], (0.17820000000000003, 0.0, 0.0, 0.0, 0.0, 0.891)),
    # a pair below 0.5 similarity is dropped: no matched block, 0.2 x visual
    (
        "no_match",
        [("zzzz", (0, 0, 0.1, 0.1), K)],
        [("abcd", (0.5, 0.5, 0.1, 0.1), K)],
        (0.17800000000000002, 0.0, 0.0, 0.0, 0.0, 0.89),
    ),
    # blocks with the very same box are merged first, colours averaged with /
    (
        "same_bbox",
        [("hello", (0, 0, 0.1, 0.1), (10, 10, 10)), ("world", (0, 0, 0.1, 0.1), (20, 21, 22))],
        [("hello world", (0, 0, 0.1, 0.1), (15, 15, 16))],
        (0.9771176442817153, 1.0, 1.0, 1.0, 0.9955882214085761, 0.89),
    ),
    # repeated texts: the context bonus decides the pairing
    (
        "context",
        [("read more", (0, 0.1 * i, 0.1, 0.02), K) for i in range(3)] + [("news", (0.5, 0, 0.1, 0.02), K)],
        [("read more", (0, 0.1 * i + 0.05, 0.1, 0.02), K) for i in range(3)]
        + [("newsletter", (0.5, 0, 0.1, 0.02), K)],
        (0.9424314285714286, 1.0, 0.8928571428571428, 0.9624999999999999, 1.0, 0.8568),
    ),
    # >= 200 characters: difflib's autojunk (on in the reference) drops the frequent characters
    (
        "long_autojunk",
        [(LONG, (0, 0, 0.8, 0.3), K)],
        [(LONG.replace("ipsum", "ipsam", 3), (0, 0.05, 0.8, 0.3), K)],
        (0.1826, 0.0, 0.0, 0.0, 0.0, 0.913),
    ),
    # position: 1 - max(|dx|, |dy|) of the centres
    (
        "shift",
        [("title", (0.3, 0.2, 0.1, 0.1), K), ("body text here", (0.1, 0.4, 0.5, 0.1), K)],
        [("title", (0.1, 0.1, 0.1, 0.1), K), ("body text here", (0.1, 0.5, 0.5, 0.1), K)],
        (0.9468000000000001, 1.0, 1.0, 0.85, 1.0, 0.884),
    ),
    # an unmatched block counts against the block-match area
    (
        "partial",
        [("hello wrld", (0, 0, 0.1, 0.1), K), ("extra block", (0.2, 0.2, 0.3, 0.1), K)],
        [("hello world", (0, 0, 0.1, 0.1), K)],
        (0.8470761904761904, 0.4000000000000001, 0.9523809523809523, 1.0, 1.0, 0.883),
    ),
    (
        "float_color",
        [("a b", (0, 0, 0.1, 0.1), (10.5, 20.25, 30.0))],
        [("a b", (0, 0, 0.1, 0.1), (11.0, 19.0, 33.0))],
        (0.9716726826958901, 1.0, 1.0, 1.0, 0.968363413479451, 0.89),
    ),
    (
        "chinese",
        [("欢迎光临", (0, 0, 0.2, 0.05), K), ("联系我们", (0, 0.2, 0.2, 0.05), K)],
        [("欢迎光临本店", (0, 0, 0.3, 0.05), K), ("联系我们", (0, 0.25, 0.2, 0.05), K)],
        (0.946, 1.0, 0.9, 0.95, 1.0, 0.88),
    ),
    # three pieces merged over two rounds
    (
        "three_way_split",
        [
            ("a quick", (0, 0, 0.1, 0.02), K),
            ("brown fox", (0.1, 0, 0.1, 0.02), K),
            ("jumps over", (0.2, 0, 0.1, 0.02), K),
        ],
        [("a quick brown fox jumps over", (0, 0, 0.3, 0.02), K)],
        (0.97792, 1.0, 1.0, 1.0, 1.0, 0.8896000000000001),
    ),
    # similarity 6/11 >= 0.5: kept
    (
        "below_half",
        [("abc", (0, 0, 0.1, 0.1), K)],
        [("abcdefgh", (0, 0, 0.1, 0.1), K)],
        (0.8870909090909092, 1.0, 0.5454545454545454, 1.0, 1.0, 0.89),
    ),
    (
        "many",
        [(f"item {i}", (0.0, 0.05 * i, 0.2, 0.03), (i * 10, 0, 0)) for i in range(8)],
        [(f"item {i}", (0.01, 0.05 * i + 0.01, 0.2, 0.03), (0, i * 10, 0)) for i in (0, 2, 1, 3, 5, 4, 7, 6)],
        (0.9003487196250642, 1.0, 1.0, 0.99, 0.6949435981253206, 0.8168000000000001),
    ),
    (
        "reorder",
        [("first", (0, 0, 0.1, 0.1), K), ("second", (0, 0.2, 0.1, 0.1), K)],
        [("second", (0, 0, 0.1, 0.1), K), ("first", (0, 0.2, 0.1, 0.1), K)],
        (0.9359999999999999, 1.0, 1.0, 0.8, 1.0, 0.88),
    ),
    # a duplicate left over lowers the block match
    (
        "dup_texts",
        [("buy", (0, 0, 0.1, 0.1), K), ("buy", (0, 0.2, 0.1, 0.1), K), ("sell", (0, 0.4, 0.1, 0.1), K)],
        [("buy", (0, 0.3, 0.1, 0.1), K), ("sell", (0, 0.5, 0.1, 0.1), K)],
        (0.9142, 0.8, 1.0, 0.8999999999999999, 1.0, 0.871),
    ),
]


@pytest.mark.parametrize(("name", "pred", "ref", "expected"), CASES, ids=[c[0] for c in CASES])
def test_block_scoring_matches_visual_score(
    name: str, pred: list[Spec], ref: list[Spec], expected: tuple[float, ...]
) -> None:
    out = design2code_scores(_blocks(pred), _blocks(ref), _visual)
    got = (out["final"], out["block_match"], out["text"], out["position"], out["color"], out["visual"])
    assert got == pytest.approx(expected, abs=1e-12)


def test_helpers_follow_the_reference() -> None:
    a = Block("a", (0.0, 0.0, 0.1, 0.1), (1, 2, 3))
    b = Block("b", (0.2, 0.05, 0.3, 0.3), (4, 5, 7))
    assert merge_pair(a, b) == Block("a b", (0.0, 0.0, 0.5, 0.35), (2, 3, 5))  # colours with //
    assert merge_blocks_by_bbox([a, Block("c", a.bbox, (3, 4, 5))]) == [Block("a c", a.bbox, (2.0, 3.0, 4.0))]
    # equal costs cancel; the rest must be worse on average AND hold a better best
    assert difference_of_means([-1.0, -0.4], [-1.0, -0.9]) == pytest.approx(0.5)
    assert difference_of_means([-1.0, -0.2], [-0.7]) == 0.0  # better on average, but the best got worse
    assert difference_of_means([-1.0, -0.4], [-0.6]) == pytest.approx(-0.1)
    page = PageRender([TextBlock("WELCOME Home", 64, 48, 320, 24, (1, 2, 3))], 640, 480)
    assert page_blocks(page) == [Block("welcome home", (0.1, 0.1, 0.5, 0.05), (1, 2, 3))]  # lower case


def test_html_preprocessing_follows_pre_process() -> None:
    assert extract_html("Here:\n```html\n<p>x</p>\n```\nthanks") == "<p>x</p>"
    assert extract_html("Sure! <html><body>hi</body></html> done") == "<html><body>hi</body></html>"
    assert wrap_plain_text("just text") == "<html><body><p>just text</p></body></html>"
    assert wrap_plain_text("<HTML lang='en'><body>x</body></HTML>").startswith("<HTML")
    repeated = "<html><body>" + "<li>row</li>" * 60 + "</body></html>"
    assert drop_repeated_elements(repeated).count("<li>") == 50
    # 5 similar 100-character chunks of text: the page is cut where the group starts (a short intro
    # shares the first chunk with the loop, so it goes too; a 300-character one stays)
    loop = "<p>" + "the same sentence again " * 30 + "</p>"
    assert truncate_repetition("<p>intro</p>" + loop) == "<p>"
    intro = "<h1>" + " ".join(f"word{i}" for i in range(40)) + "</h1>"
    assert truncate_repetition(intro + loop) == (intro + loop)[:312]
    assert truncate_repetition("<p>short and unique</p>") == "<p>short and unique</p>"
    assert "<p>" in preprocess_html("plain")


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
def test_rendered_pages_identical_and_changed_with_the_ssim_stand_in(tmp_path: Path) -> None:
    (tmp_path / "ref.html").write_text(REFERENCE, encoding="utf-8")
    sample = Sample("ui", "q", {"html": "ref.html"}, root=tmp_path)
    scorer = Design2CodeScorer(timeout=3.0, visual="ssim")
    try:
        scorer.check_answer(sample)
        same = scorer.score(sample, scorer.oracle(sample)).scores
        changed = scorer.score(sample, f"```html\n{CHANGED}\n```").scores
        hung = scorer.score(sample, "<html><body><script>while(true){}</script>")
        again = scorer.score(sample, scorer.oracle(sample)).scores  # the browser recovers
        # a short page is captured in Playwright's default 1280 x 720 viewport, as the reference's
        ref_shot = scorer._ref_cache[sample.resolve("ref.html")].screenshot
        assert ref_shot is not None and ref_shot.shape[:2] == (720, 1280)
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
    # A page that hangs scores like a blank page (no text: 0.2 x visual), the failure is recorded.
    assert hung.scores["design2code"] == pytest.approx(0.2 * hung.scores["design2code.visual"])
    assert hung.failure is not None and "failed to render" in hung.failure
    assert again["design2code"] == pytest.approx(1.0, abs=1e-6)
    described = scorer.describe()
    assert (
        described["not_comparable"] == ["design2code", "design2code.visual"]
        and "SSIM" in described["why_not_comparable"]
    )


def test_missing_chromium_is_a_clear_error(tmp_path: Path) -> None:
    reason = chromium_unavailable_reason(chromium=str(tmp_path / "no-chromium"))
    assert reason is not None and "chromium not found" in reason and "apt-get install" in reason
    with pytest.raises(RuntimeError, match="headless Chromium: chromium not found"):
        Design2CodeScorer(chromium=str(tmp_path / "no-chromium"))


@chromium
def test_auto_falls_back_to_the_labelled_stand_in_without_weights(tmp_path: Path) -> None:
    scorer = Design2CodeScorer(clip_model=str(tmp_path / "no-weights"))
    try:
        assert scorer.visual == "ssim" and scorer.describe()["variant"] == "reference"
        assert "not comparable" not in scorer.describe()["scorer"] and scorer.describe()["not_comparable"]
    finally:
        scorer.close()
    with pytest.raises(RuntimeError, match="visual='clip' cannot load"):
        Design2CodeScorer(visual="clip", clip_model=str(tmp_path / "no-weights"))
    assert np.isfinite(_visual([], []))
