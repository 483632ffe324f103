"""Offline demo benchmarks, generated procedurally with PIL (and Chromium for page screenshots).

Each demo is a registered benchmark whose data are built on first use under ``<out>/data``, so
it runs in one command with no download, e.g.::

    glmkit eval --benchmark demo-ocr --model oracle
    glmkit eval --benchmark demo-vqa --model openai:http://localhost:8000/v1@glm-4.5v

* ``demo-grounding``: find the unique coloured shape -> box (Acc@IoU>=0.5, 0-1000 predictions).
* ``demo-pointing``: point at the unique coloured shape -> point in its box or mask.
* ``demo-ocr``: read rendered words, codes and sentences (1 - NED, exact match).
* ``demo-vqa``: count shapes, name a colour, read a bar value off a chart (5% tolerance).
* ``demo-ui2code``: reproduce simple web pages from screenshots (Design2Code-style scores).
* ``demo-imagemining``: tiny text in a corner that needs ``crop_image``, facts about fictional
  places that need ``search_web_text`` over a local index shipped with the data, and both.

Generation is deterministic in ``seed``: the same arguments give the same files.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from glmkit.eval.benchmark import BENCHMARKS, Benchmark
from glmkit.eval.benchmarks import GROUNDING_PROMPT, POINTING_PROMPT, SHORT_PROMPT, UI2CODE_PROMPT
from glmkit.eval.imagemining import imagemining_benchmark

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "blue": (30, 70, 220),
    "green": (30, 160, 60),
    "yellow": (235, 200, 20),
    "purple": (140, 50, 170),
    "orange": (245, 130, 20),
}
SHAPES = ("square", "circle", "triangle")
WORDS: tuple[str, ...] = (
    "river",
    "apple",
    "window",
    "garden",
    "silver",
    "planet",
    "orange",
    "bridge",
    "marble",
    "castle",
    "forest",
    "signal",
    "harbor",
    "lantern",
    "meadow",
    "rocket",
    "violet",
    "thunder",
    "pepper",
    "candle",
    "falcon",
    "summit",
    "velvet",
    "anchor",
    "crystal",
    "compass",
    "harvest",
    "island",
    "jigsaw",
    "kettle",
    "ladder",
    "magnet",
    "nectar",
    "oyster",
    "pillow",
    "quartz",
    "saddle",
)


def font(size: int) -> ImageFont.ImageFont:
    """A scalable font of ``size`` pixels (Pillow's bundled one; DejaVu or the bitmap font as fallbacks)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ValueError):
        try:
            return ImageFont.truetype("DejaVuSans.ttf", size)
        except OSError:
            return ImageFont.load_default()


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill: Any) -> None:
    x1, y1, x2, y2 = box  # continuous box; PIL draws inclusive pixel ranges
    if shape == "square":
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=fill)
    elif shape == "circle":
        draw.ellipse((x1, y1, x2 - 1, y2 - 1), fill=fill)
    elif shape == "triangle":
        draw.polygon([((x1 + x2) / 2, y1), (x2 - 1, y2 - 1), (x1, y2 - 1)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _place(
    rng: random.Random, size: tuple[int, int], side: int, taken: list[tuple[int, int, int, int]]
) -> tuple:
    width, height = size
    for _ in range(200):
        x, y = rng.randint(4, width - side - 4), rng.randint(4, height - side - 4)
        box = (x, y, x + side, y + side)
        if all(
            box[2] + 6 <= t[0] or t[2] + 6 <= box[0] or box[3] + 6 <= t[1] or t[3] + 6 <= box[1]
            for t in taken
        ):
            return box
    raise RuntimeError("could not place a shape without overlap; use a larger canvas")


def _shape_scene(
    rng: random.Random, size: tuple[int, int], n_distractors: int
) -> tuple[Image.Image, tuple[str, str, tuple[int, int, int, int]], list[tuple[str, str, tuple]]]:
    """A canvas with one target (colour, shape) and distractors of other combinations."""
    image = Image.new("RGB", size, (245, 245, 240))
    draw = ImageDraw.Draw(image)
    color, shape = rng.choice(list(COLORS)), rng.choice(SHAPES)
    taken: list[tuple[int, int, int, int]] = []
    target_box = _place(rng, size, rng.randint(24, 64), taken)
    taken.append(target_box)
    others = []
    for _ in range(n_distractors):
        oc, os_ = rng.choice(list(COLORS)), rng.choice(SHAPES)
        while (oc, os_) == (color, shape):
            oc, os_ = rng.choice(list(COLORS)), rng.choice(SHAPES)
        box = _place(rng, size, rng.randint(18, 56), taken)
        taken.append(box)
        others.append((oc, os_, box))
    for oc, os_, box in others:
        _draw_shape(draw, os_, box, COLORS[oc])
    _draw_shape(draw, shape, target_box, COLORS[color])
    return image, (color, shape, target_box), others


# ------------------------------------------------------------------------------------- makers


def make_grounding(out_dir: Path, n: int = 12, seed: int = 0) -> Path:
    """Find the unique coloured shape; the answer is its pixel box."""
    rng = random.Random(seed)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        size = (rng.randint(320, 480), rng.randint(240, 360))
        category = "easy" if i % 2 == 0 else "clutter"
        image, (color, shape, box), _ = _shape_scene(
            rng, size, 0 if category == "easy" else rng.randint(4, 7)
        )
        name = f"images/ground_{i:03d}.png"
        image.save(out_dir / name)
        rows.append(
            {
                "id": f"ground-{i:03d}",
                "question": f"Find the {color} {shape}.",
                "images": [name],
                "answer": {"box": list(box), "space": "pixels"},
                "category": category,
                "metadata": {"image_size": list(size)},
            }
        )
    return _write_jsonl(out_dir / "demo-grounding.jsonl", rows)


def make_pointing(out_dir: Path, n: int = 12, seed: int = 0) -> Path:
    """Point at the unique coloured shape; half the answers are boxes, half masks."""
    rng = random.Random(seed + 1)
    out_dir = Path(out_dir)
    for sub in ("images", "masks"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        size = (rng.randint(320, 480), rng.randint(240, 360))
        image, (color, shape, box), _ = _shape_scene(rng, size, rng.randint(2, 6))
        name = f"images/point_{i:03d}.png"
        image.save(out_dir / name)
        if i % 2 == 0:
            answer: dict[str, Any] = {"box": list(box), "space": "pixels"}
            category = "box"
        else:
            mask = Image.new("L", size, 0)
            _draw_shape(ImageDraw.Draw(mask), shape, box, 255)
            mask_name = f"masks/point_{i:03d}.png"
            mask.save(out_dir / mask_name)
            answer, category = {"mask": mask_name}, "mask"
        rows.append(
            {
                "id": f"point-{i:03d}",
                "question": f"Point to the {color} {shape}.",
                "images": [name],
                "answer": answer,
                "category": category,
                "metadata": {"image_size": list(size)},
            }
        )
    return _write_jsonl(out_dir / "demo-pointing.jsonl", rows)


# No vowels (Y included), so that a code cannot spell a word ("SEX-VAX"); no digits that read as
# vowels in leetspeak (0 O, 1 I, 3 E, 4 A), which also drops the look-alikes 0/O and 1/I.
CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ" + "256789"


def serial_code(rng: random.Random) -> str:
    """A code such as ``"K7T-9ZB"``: two groups of three characters from :data:`CODE_ALPHABET`."""
    return (
        "".join(rng.choice(CODE_ALPHABET) for _ in range(3))
        + "-"
        + "".join(rng.choice(CODE_ALPHABET) for _ in range(3))
    )


def make_ocr(out_dir: Path, n: int = 12, seed: int = 0) -> Path:
    """Rendered words, codes and short sentences on plain backgrounds."""
    rng = random.Random(seed + 2)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    kinds = ("word", "code", "sentence")
    for i in range(n):
        category = kinds[i % 3]
        if category == "word":
            text = rng.choice(WORDS).capitalize()
        elif category == "code":
            text = serial_code(rng)
        else:
            text = " ".join(rng.sample(WORDS, 4)).capitalize() + "."
        size_px = rng.randint(22, 34)
        fnt = font(size_px)
        bg = tuple(rng.randint(200, 255) for _ in range(3))
        fg = tuple(rng.randint(0, 60) for _ in range(3))
        left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=fnt)
        image = Image.new("RGB", (right - left + 40, bottom - top + 30), bg)
        ImageDraw.Draw(image).text((20 - left, 15 - top), text, font=fnt, fill=fg)
        name = f"images/ocr_{i:03d}.png"
        image.save(out_dir / name)
        rows.append(
            {
                "id": f"ocr-{i:03d}",
                "question": "Read the text in the image. Answer with the text only.",
                "images": [name],
                "answer": text,
                "category": category,
                "metadata": {"image_size": list(image.size)},
            }
        )
    return _write_jsonl(out_dir / "demo-ocr.jsonl", rows)


def _bar_chart(rng: random.Random) -> tuple[Image.Image, dict[str, int]]:
    labels = [chr(ord("A") + k) for k in range(rng.randint(3, 5))]
    values = {lab: rng.randint(10, 95) for lab in labels}
    width, height = 80 + 70 * len(labels), 300
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    base, top = height - 40, 30
    draw.line((40, top, 40, base), fill="black", width=2)
    draw.line((40, base, width - 10, base), fill="black", width=2)
    fnt = font(14)
    for tick in range(0, 101, 25):
        y = base - (base - top) * tick / 100
        draw.line((35, y, 40, y), fill="black")
        draw.text((8, y - 8), str(tick), font=fnt, fill="black")
    for k, lab in enumerate(labels):
        x = 60 + 70 * k
        y = base - (base - top) * values[lab] / 100
        draw.rectangle((x, y, x + 40, base - 1), fill=COLORS[list(COLORS)[k % len(COLORS)]])
        draw.text((x + 14, base + 8), lab, font=fnt, fill="black")
        draw.text((x + 8, y - 18), str(values[lab]), font=fnt, fill="black")
    return image, values


def make_vqa(out_dir: Path, n: int = 12, seed: int = 0) -> Path:
    """Counting, colour naming and chart reading questions."""
    rng = random.Random(seed + 3)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        category = ("count", "color", "chart")[i % 3]
        metadata: dict[str, Any] = {}
        if category == "count":
            size = (400, 300)
            image = Image.new("RGB", size, (245, 245, 240))
            draw = ImageDraw.Draw(image)
            target = rng.choice(SHAPES)
            k = rng.randint(1, 6)
            taken: list[tuple[int, int, int, int]] = []
            for _ in range(k):
                box = _place(rng, size, rng.randint(20, 40), taken)
                taken.append(box)
                _draw_shape(draw, target, box, COLORS[rng.choice(list(COLORS))])
            for _ in range(rng.randint(0, 4)):
                other = rng.choice([s for s in SHAPES if s != target])
                box = _place(rng, size, rng.randint(20, 40), taken)
                taken.append(box)
                _draw_shape(draw, other, box, COLORS[rng.choice(list(COLORS))])
            question, answer = f"How many {target}s are there in the image?", k
        elif category == "color":
            image, (color, shape, _), _ = _shape_scene(rng, (360, 270), 0)
            question, answer = f"What colour is the {shape}?", color
        else:
            image, values = _bar_chart(rng)
            label = rng.choice(list(values))
            question, answer = f"What is the value of bar {label}?", values[label]
            metadata["rel_tol"] = 0.05
        name = f"images/vqa_{i:03d}.png"
        image.save(out_dir / name)
        metadata["image_size"] = list(image.size)
        rows.append(
            {
                "id": f"vqa-{i:03d}",
                "question": question,
                "images": [name],
                "answer": answer,
                "category": category,
                "metadata": metadata,
            }
        )
    return _write_jsonl(out_dir / "demo-vqa.jsonl", rows)


_PALETTE = ("#1f3b73", "#8a1c1c", "#205e3b", "#5b2a86", "#a35200", "#2b2b2b", "#006d77")


def _page_html(rng: random.Random, layout: str) -> str:
    def phrase(k: int) -> str:
        return " ".join(rng.sample(WORDS, k)).capitalize()

    head_bg, accent, text_col = rng.sample(_PALETTE, 3)
    title = phrase(2)
    nav = "".join(
        f'<a style="color:#ffffff;margin-left:24px;text-decoration:none">{w.capitalize()}</a>'
        for w in rng.sample(WORDS, 3)
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
            for _ in range(rng.randint(2, 3))
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


def _mock_screenshot(html: str, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A rough drawing of the page's text lines when Chromium is unavailable."""
    import re

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    y = 10
    for text in re.findall(r">([^<>]{2,})<", html):
        if y > size[1] - 20:
            break
        draw.text((12, y), text.strip()[:80], font=font(12), fill="black")
        y += 20
    return image


def make_ui2code(out_dir: Path, n: int = 6, seed: int = 0) -> Path:
    """Simple web pages (landing pages and articles): the reference HTML and its screenshot."""
    from glmkit.eval.render import ChromiumRenderer, chromium_unavailable_reason

    rng = random.Random(seed + 4)
    out_dir = Path(out_dir)
    for sub in ("images", "pages"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    pages = []
    for i in range(n):
        layout = ("landing", "article")[i % 2]
        html = _page_html(rng, layout)
        page = out_dir / "pages" / f"page_{i:03d}.html"
        page.write_text(html, encoding="utf-8")
        pages.append((i, layout, page, html))
    reason = chromium_unavailable_reason()
    renderer = ChromiumRenderer() if reason is None else None
    rows = []
    try:
        for i, layout, page, html in pages:
            if renderer is not None:
                shot = Image.fromarray(renderer.render_file(page).screenshot)
                shot.thumbnail((640, 2000))
                source = "chromium"
            else:
                shot, source = _mock_screenshot(html), "mock"
            name = f"images/page_{i:03d}.png"
            shot.save(out_dir / name)
            rows.append(
                {
                    "id": f"ui-{i:03d}",
                    "question": "Here is a screenshot of a web page.",
                    "images": [name],
                    "answer": {"html": f"pages/page_{i:03d}.html"},
                    "category": layout,
                    "metadata": {"screenshot": source, "image_size": list(shot.size)},
                }
            )
    finally:
        if renderer is not None:
            renderer.close()
    return _write_jsonl(out_dir / "demo-ui2code.jsonl", rows)


_SYLLABLES = (
    "vel",
    "mor",
    "ka",
    "stra",
    "lin",
    "dor",
    "bre",
    "tha",
    "nix",
    "quo",
    "ral",
    "zen",
    "pim",
    "sor",
)
_KINDS = ("Tower", "Bridge", "Observatory", "Lighthouse", "Library", "Dam")


def _fictional_name(rng: random.Random) -> str:
    return "".join(rng.sample(_SYLLABLES, 2)).capitalize() + " " + rng.choice(_KINDS)


def make_imagemining(out_dir: Path, n: int = 9, seed: int = 0) -> Path:
    """Questions that need cropping, searching or both, with a local search index under ``search_index/``.

    * ``crop``: a serial code printed tiny in a corner (read it with ``crop_image``);
    * ``search``: a fictional landmark named in large type; its opening year is in the index;
    * ``crop+search``: the landmark's name is printed tiny in a corner; its height is in the index.
    """
    from glmkit.tools.search import build_index

    rng = random.Random(seed + 5)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    documents, rows, used = [], [], set()
    corners = {
        "top-left": lambda w, h, tw, th: (6, 4),
        "top-right": lambda w, h, tw, th: (w - tw - 6, 4),
        "bottom-left": lambda w, h, tw, th: (6, h - th - 6),
        "bottom-right": lambda w, h, tw, th: (w - tw - 6, h - th - 6),
    }
    for i in range(n):
        category = ("crop", "search", "crop+search")[i % 3]
        image, _, _ = _shape_scene(rng, (640, 480), rng.randint(5, 9))
        draw = ImageDraw.Draw(image)
        corner = rng.choice(list(corners))
        name = _fictional_name(rng)
        while name in used:
            name = _fictional_name(rng)
        used.add(name)
        year, height = rng.randint(1820, 1990), rng.randint(40, 420)
        documents.append(
            {
                "title": name,
                "url": f"https://demo.invalid/wiki/{name.replace(' ', '_')}",
                "text": f"The {name} is a landmark of the demo world. It was completed in {year} "
                f"and stands {height} metres tall. Visitors reach it by the old coast road.",
            }
        )
        tiny = font(9)
        if category == "crop":
            code = serial_code(rng)
            text = f"SN {code}"
            question = (
                f"What is the serial number printed in small text in the {corner} corner? Give the code only."
            )
            answer: Any = code
        elif category == "search":
            big = font(30)
            tw = draw.textlength(name, font=big)
            draw.rectangle((320 - tw / 2 - 12, 200, 320 + tw / 2 + 12, 250), fill="white", outline="black")
            draw.text((320 - tw / 2, 208), name, font=big, fill="black")
            text = None
            question = "In which year was the landmark named on the sign completed?"
            answer = str(year)
        else:
            text = name
            question = (
                f"The small text in the {corner} corner names a landmark. How tall is that landmark, in metres? "
                "Give the number only."
            )
            answer = str(height)
        if text is not None:
            left, top, right, bottom = draw.textbbox((0, 0), text, font=tiny)
            x, y = corners[corner](640, 480, right - left, bottom - top)
            draw.text((x - left, y - top), text, font=tiny, fill=(60, 60, 60))
        img_name = f"images/mine_{i:03d}.png"
        image.save(out_dir / img_name)
        rows.append(
            {
                "id": f"mine-{i:03d}",
                "question": question,
                "images": [img_name],
                "answer": answer,
                "category": category,
                "metadata": {"image_size": [640, 480], "entity": name},
            }
        )
    for _ in range(n):  # distractor documents
        name = _fictional_name(rng)
        if name not in used:
            documents.append(
                {
                    "title": name,
                    "url": f"https://demo.invalid/wiki/{name.replace(' ', '_')}",
                    "text": f"The {name} was planned in {rng.randint(1800, 2000)} but never finished.",
                }
            )
    build_index(out_dir / "search_index", documents=documents)
    return _write_jsonl(out_dir / "demo-imagemining.jsonl", rows)


# --------------------------------------------------------------------------------- registering

DEMO_MAKERS: dict[str, Callable[..., Path]] = {
    "demo-grounding": make_grounding,
    "demo-pointing": make_pointing,
    "demo-ocr": make_ocr,
    "demo-vqa": make_vqa,
    "demo-ui2code": make_ui2code,
    "demo-imagemining": make_imagemining,
}


def make_demo(name: str, out_dir: str | Path, **kwargs: Any) -> Path:
    """Build demo ``name``'s data under ``out_dir`` and return its JSONL path."""
    if name not in DEMO_MAKERS:
        raise KeyError(f"unknown demo {name!r}; demos: {', '.join(DEMO_MAKERS)}")
    return DEMO_MAKERS[name](Path(out_dir), **kwargs)


@BENCHMARKS.register("demo-grounding")
def demo_grounding() -> Benchmark:
    """Find the unique coloured shape -> box (Acc@IoU>=0.5, predictions in 0-1000)."""
    return Benchmark(
        "demo-grounding",
        [("grounding", {"pred_space": "norm1000"})],
        prompt=GROUNDING_PROMPT,
        make_data=make_grounding,
        description="demo: find the unique coloured shape -> box, Acc@IoU>=0.5",
    )


@BENCHMARKS.register("demo-pointing")
def demo_pointing() -> Benchmark:
    """Point at the unique coloured shape (box and mask targets)."""
    return Benchmark(
        "demo-pointing",
        [("pointing", {"pred_space": "norm1000"})],
        prompt=POINTING_PROMPT,
        make_data=make_pointing,
        description="demo: point at the unique coloured shape (box and mask targets)",
    )


@BENCHMARKS.register("demo-ocr")
def demo_ocr() -> Benchmark:
    """Read rendered text: 1 - NED and exact match."""
    return Benchmark(
        "demo-ocr",
        [("ocr_ned", {}), ("exact_match", {})],
        make_data=make_ocr,
        description="demo: read rendered words, codes and sentences (1 - NED, exact match)",
    )


@BENCHMARKS.register("demo-vqa")
def demo_vqa() -> Benchmark:
    """Counting, colours and chart values."""
    return Benchmark(
        "demo-vqa",
        [("vqa", {})],
        prompt=SHORT_PROMPT,
        make_data=make_vqa,
        description="demo: count shapes, name colours, read bar values (5% tolerance)",
    )


@BENCHMARKS.register("demo-ui2code")
def demo_ui2code() -> Benchmark:
    """Simple web pages -> HTML with Design2Code-style scores."""
    return Benchmark(
        "demo-ui2code",
        [("design2code", {})],
        prompt=UI2CODE_PROMPT,
        make_data=make_ui2code,
        description="demo: simple web pages -> HTML, Design2Code-style scores (needs chromium)",
    )


@BENCHMARKS.register("demo-imagemining")
def demo_imagemining() -> Benchmark:
    """Tiny corner text (crop_image) and facts in a local search index (search_web_text)."""
    return imagemining_benchmark(
        "demo-imagemining",
        tools=(("crop_image", {}), ("search_web_text", {"index_path": "{data_dir}/search_index"})),
        make_data=make_imagemining,
        description="demo: tiny corner text (crop_image) and facts in a local index (search_web_text)",
    )
