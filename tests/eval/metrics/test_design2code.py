"""Design2Code-style metrics: pure functions on hand-made blocks, and real renders in Chromium."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from glmkit.eval.metrics.design2code import (
    ChromiumRenderer,
    Design2CodeScorer,
    PageRender,
    TextBlock,
    block_scores,
    chromium_unavailable_reason,
    ciede2000,
    color_similarity,
    design2code_scores,
    extract_html,
    match_blocks,
    parse_css_color,
    srgb_to_lab,
    ssim,
    text_similarity,
    visual_similarity,
)
from glmkit.eval.sample import Sample

# Sharma, Wu & Dalal (2005), Table 1: CIELAB pairs and their CIEDE2000 differences.
SHARMA = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 3.1571, -77.2803), (50.0, 0.0, -82.7485), 2.8615),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((50.0, 2.5, 0.0), (61.0, -5.0, 29.0), 22.8977),
    ((50.0, 2.5, 0.0), (56.0, -27.0, -3.0), 31.9030),
    ((50.0, 2.5, 0.0), (58.0, 24.0, 15.0), 19.4535),
    ((50.0, 2.5, 0.0), (50.0, 3.1736, 0.5854), 1.0000),
]


def test_ciede2000_against_sharma_table() -> None:
    for lab1, lab2, expected in SHARMA:
        assert float(ciede2000(lab1, lab2)) == pytest.approx(expected, abs=1e-4)
        assert float(ciede2000(lab2, lab1)) == pytest.approx(expected, abs=1e-4)  # symmetric
    batch = ciede2000([p[0] for p in SHARMA], [p[1] for p in SHARMA])
    assert batch.shape == (len(SHARMA),)


def test_srgb_to_lab_reference_colours() -> None:
    np.testing.assert_allclose(srgb_to_lab([255, 255, 255]), [100, 0, 0], atol=1e-3)
    np.testing.assert_allclose(srgb_to_lab([0, 0, 0]), [0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(srgb_to_lab([255, 0, 0]), [53.2408, 80.0925, 67.2032], atol=1e-3)
    assert color_similarity((10, 20, 30), (10, 20, 30)) == 1.0
    assert color_similarity((0, 0, 0), (255, 255, 255)) == 0.0  # dE 100 -> 0


def test_ssim_matches_torchmetrics() -> None:
    from torchmetrics.functional.image import structural_similarity_index_measure

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 52)).astype(np.float64)
    y = np.clip(x + rng.normal(0, 25, x.shape), 0, 255)
    ref = structural_similarity_index_measure(
        torch.tensor(y)[None, None], torch.tensor(x)[None, None], data_range=255.0
    ).item()
    assert ssim(x, y) == pytest.approx(ref, abs=1e-9)
    assert ssim(x, x) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same shape|one shape"):
        ssim(x, y[:10])


def test_visual_similarity_pads_different_heights() -> None:
    page = np.full((300, 200, 3), 255, np.uint8)
    page[20:60, 20:180] = 0
    taller = np.full((450, 200, 3), 255, np.uint8)
    taller[:300] = page
    assert visual_similarity(page, page) == pytest.approx(1.0)
    assert 0.5 < visual_similarity(page, taller) < 1.0
    moved = np.full((300, 200, 3), 255, np.uint8)
    moved[200:240, 20:180] = 0
    assert visual_similarity(page, moved) < visual_similarity(page, taller)


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


def test_colour_and_empty_pages() -> None:
    ref = _page(TextBlock("Title", 0, 0, 10, 10, (0, 0, 0)))
    cand = _page(TextBlock("Title", 0, 0, 10, 10, (255, 255, 255)))
    assert block_scores(ref, cand)["color"] == 0.0
    assert block_scores(_page(), _page())["block_match"] == 1.0
    assert block_scores(ref, _page())["text"] == 0.0
    shot = np.full((20, 20, 3), 255, np.uint8)
    empty = PageRender([], 20, 20, shot)
    assert design2code_scores(empty, empty)["final"] == pytest.approx(1.0)


def test_css_colours_and_html_extraction() -> None:
    assert parse_css_color("rgb(12, 34, 56)") == (12, 34, 56)
    assert parse_css_color("rgba(1, 2, 3, 0.5)") == (1, 2, 3)
    assert parse_css_color("color(srgb 1 0 0.5)") == (255, 0, 127.5)
    assert parse_css_color("") == (0, 0, 0)
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
        same = scorer.score(scorer.oracle(sample), sample).scores
        changed = scorer.score(f"```html\n{CHANGED}\n```", sample).scores
        hung = scorer.score("<html><body><script>while(true){}</script>", sample)
        again = scorer.score(scorer.oracle(sample), sample).scores  # the browser recovers
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


def _count_rgb(shot: np.ndarray, rgb: tuple[int, int, int]) -> int:
    return int((np.abs(shot.astype(int) - np.array(rgb)).max(axis=-1) < 30).sum())


@pytest.mark.chromium
@chromium
def test_candidate_pages_cannot_load_local_files(tmp_path: Path) -> None:
    from PIL import Image

    secret = tmp_path / "secret.html"
    secret.write_text("<body style='margin:0;background:rgb(255,0,0)'>LOCALSECRET42</body>", encoding="utf-8")
    Image.new("RGB", (200, 200), (0, 255, 0)).save(tmp_path / "green.png")
    html = f"""<html><body><p>visible</p>
<iframe src="{secret.as_uri()}" width="400" height="300"></iframe>
<img src="{(tmp_path / "green.png").as_uri()}">
<script>
try {{
  const x = new XMLHttpRequest();
  x.open("GET", "{secret.as_uri()}", false);
  x.send();
  const p = document.createElement("p");
  p.textContent = x.responseText;
  document.body.appendChild(p);
}} catch (e) {{}}
</script></body></html>"""
    with ChromiumRenderer(timeout=10.0) as renderer:
        page = renderer.render_html(html)
        trusted = renderer.render_file(secret)  # reference pages are local files and still render
    assert [b.text for b in page.blocks] == ["visible"]
    assert _count_rgb(page.screenshot, (255, 0, 0)) == 0  # the iframe showed nothing of the file
    assert _count_rgb(page.screenshot, (0, 255, 0)) == 0  # nor did the image
    assert [b.text for b in trusted.blocks] == ["LOCALSECRET42"]
    assert _count_rgb(trusted.screenshot, (255, 0, 0)) > 0


@pytest.mark.chromium
@chromium
def test_a_failing_render_does_not_break_a_concurrent_one() -> None:
    renderer = ChromiumRenderer(timeout=2.0)
    errors: list[Exception] = []

    def hang() -> None:
        try:
            renderer.render_html("<html><body><script>while(true){}</script>")
        except Exception as exc:  # the page-load timeout; the renderer restarts the browser
            errors.append(exc)

    try:
        renderer.start()
        worker = threading.Thread(target=hang)
        worker.start()
        time.sleep(0.5)  # the hanging render holds the browser; this one waits, then gets a fresh one
        page = renderer.render_html("<p>still rendering</p>")
        worker.join()
    finally:
        renderer.close()
    assert len(errors) == 1
    assert [b.text for b in page.blocks] == ["still rendering"]


def test_missing_chromium_is_a_clear_error(tmp_path: Path) -> None:
    reason = chromium_unavailable_reason(chromium=str(tmp_path / "no-chromium"))
    assert reason is not None and "chromium not found" in reason and "apt-get install" in reason
    with pytest.raises(RuntimeError, match="headless Chromium: chromium not found"):
        Design2CodeScorer(chromium=str(tmp_path / "no-chromium"))
