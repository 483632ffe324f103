"""``demo-ocr``: read rendered words, serial codes and short sentences (1 - NED, exact match)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from glmkit.data.fonts import load_font
from glmkit.eval.definition import Benchmark, register_benchmark
from glmkit.eval.demo.common import WORDS, DemoSamples, choice, demo_rng, randint, sample, serial_code


def make_ocr(out_dir: Path, n: int = 12, seed: int = 0) -> Path:
    """Write ``n`` OCR samples under ``out_dir``: dark text on a light plain background, one of
    ``word``, ``code`` or ``sentence`` in turn; returns the JSONL path."""
    rng = demo_rng(seed, 2)
    samples = DemoSamples(out_dir)
    kinds = ("word", "code", "sentence")
    for i in range(n):
        category = kinds[i % 3]
        if category == "word":
            text = choice(rng, WORDS).capitalize()
        elif category == "code":
            text = serial_code(rng)
        else:
            text = " ".join(sample(rng, WORDS, 4)).capitalize() + "."
        font = load_font(randint(rng, 22, 34))
        bg = tuple(randint(rng, 200, 255) for _ in range(3))
        fg = tuple(randint(rng, 0, 60) for _ in range(3))
        left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=font)
        image = Image.new("RGB", (right - left + 40, bottom - top + 30), bg)
        ImageDraw.Draw(image).text((20 - left, 15 - top), text, font=font, fill=fg)
        samples.add(
            f"ocr-{i:03d}", image, "Read the text in the image. Answer with the text only.", text, category
        )
    return samples.write("demo-ocr")


DEMO_OCR = register_benchmark(
    Benchmark(
        "demo-ocr",
        ["ocr_ned", "exact_match"],
        make_data=make_ocr,
        description="demo: read rendered words, codes and sentences (1 - NED, exact match)",
    )
)
