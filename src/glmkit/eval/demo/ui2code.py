"""``demo-ui2code``: reproduce simple web pages (landing pages, articles) from their screenshots."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from glmkit.data.fonts import load_font
from glmkit.eval.benchmarks import UI2CODE_PROMPT
from glmkit.eval.definition import Benchmark, register_benchmark
from glmkit.eval.demo.common import WORDS, DemoSamples, demo_rng, randint, sample

PALETTE = ("#1f3b73", "#8a1c1c", "#205e3b", "#5b2a86", "#a35200", "#2b2b2b", "#006d77")


def page_html(rng: np.random.Generator, layout: str) -> str:
    """A self-contained page (inline CSS) with a header, a ``landing`` or ``article`` body and a footer."""

    def phrase(k: int) -> str:
        return " ".join(sample(rng, WORDS, k)).capitalize()

    head_bg, accent, text_col = sample(rng, PALETTE, 3)
    title = phrase(2)
    nav = "".join(
        f'<a style="color:#ffffff;margin-left:24px;text-decoration:none">{w.capitalize()}</a>'
        for w in sample(rng, WORDS, 3)
    )
    header = (
        f'<header style="background:{head_bg};padding:18px 32px;display:flex;justify-content:space-between">'
        f'<span style="color:#ffffff;font-size:26px;font-weight:bold">{title}</span><nav>{nav}</nav></header>'
    )
    if layout == "landing":
        cards = "".join(
            f'<div style="flex:1;margin:12px;padding:16px;border:1px solid #cccccc;border-radius:8px">'
            f'<h3 style="color:{accent};margin:0 0 8px 0">{phrase(2)}</h3>'
            f'<p style="color:{text_col};margin:0">{phrase(8)}.</p></div>'
            for _ in range(randint(rng, 2, 3))
        )
        body = (
            f'<section style="padding:40px 32px;text-align:center">'
            f'<h1 style="color:{accent};font-size:40px;margin:0 0 12px 0">{phrase(4)}</h1>'
            f'<p style="color:{text_col};font-size:18px">{phrase(10)}.</p>'
            f'<button style="background:{accent};color:#ffffff;border:none;padding:12px 28px;font-size:16px">'
            f"{phrase(2)}</button></section>"
            f'<section style="display:flex;padding:0 20px">{cards}</section>'
        )
    else:
        paras = "".join(
            f'<p style="color:{text_col};font-size:16px;line-height:1.5">{phrase(14)}.</p>' for _ in range(3)
        )
        body = (
            f'<main style="padding:32px 64px"><h1 style="color:{accent};font-size:34px">{phrase(5)}</h1>'
            f'<p style="color:#777777;font-size:14px">{phrase(3)}</p>{paras}'
            f'<h2 style="color:{accent}">{phrase(3)}</h2>{paras[: len(paras) // 2]}</main>'
        )
    footer = f'<footer style="background:#eeeeee;color:#555555;padding:14px 32px;font-size:13px">{phrase(5)}</footer>'
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>demo</title></head>'
        f'<body style="margin:0;font-family:sans-serif;background:#ffffff">{header}{body}{footer}</body></html>\n'
    )


def mock_screenshot(html: str, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A rough drawing of the page's text lines, for when Chromium is unavailable."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    y = 10
    for text in re.findall(r">([^<>]{2,})<", html):
        if y > size[1] - 20:
            break
        draw.text((12, y), text.strip()[:80], font=load_font(12), fill="black")
        y += 20
    return image


def make_ui2code(out_dir: Path, n: int = 6, seed: int = 0) -> Path:
    """Write ``n`` pages under ``out_dir/pages`` and their screenshots (Chromium, else a mock);
    returns the JSONL path."""
    from glmkit.eval.render import ChromiumRenderer, chromium_unavailable_reason

    rng = demo_rng(seed, 4)
    samples = DemoSamples(out_dir, "pages")
    pages = []
    for i in range(n):
        layout = ("landing", "article")[i % 2]
        html = page_html(rng, layout)
        page = samples.out_dir / "pages" / f"page_{i:03d}.html"
        page.write_text(html, encoding="utf-8")
        pages.append((i, layout, page, html))
    reason = chromium_unavailable_reason()
    renderer = ChromiumRenderer() if reason is None else None
    try:
        for i, layout, page, html in pages:
            if renderer is not None:
                shot = Image.fromarray(renderer.render_file(page, text_blocks=False).screenshot)
                shot.thumbnail((640, 2000))
                source = "chromium"
            else:
                shot, source = mock_screenshot(html), "mock"
            samples.add(
                f"ui-{i:03d}",
                shot,
                "Here is a screenshot of a web page.",
                {"html": f"pages/page_{i:03d}.html"},
                layout,
                {"screenshot": source},
                image_stem=f"page_{i:03d}",
            )
    finally:
        if renderer is not None:
            renderer.close()
    return samples.write("demo-ui2code")


DEMO_UI2CODE = register_benchmark(
    Benchmark(
        "demo-ui2code",
        ["design2code"],
        prompt=UI2CODE_PROMPT,
        make_data=make_ui2code,
        description="demo: simple web pages -> HTML, Design2Code-style scores (needs chromium)",
    )
)
