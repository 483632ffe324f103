"""``demo-vqa``: count shapes, name a shape's colour, read a bar's value off a chart (5% tolerance)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from glmkit.data.fonts import load_font
from glmkit.data.procedural import SHAPE_COLORS
from glmkit.eval.benchmarks import SHORT_PROMPT
from glmkit.eval.definition import Benchmark, register_benchmark
from glmkit.eval.demo.common import DemoSamples, choice, demo_rng, demo_scene, randint


def bar_chart(rng: np.random.Generator) -> tuple[Image.Image, dict[str, int]]:
    """A labelled bar chart of 3-5 bars (values 10-95, printed above each bar) and its values."""
    labels = [chr(ord("A") + k) for k in range(randint(rng, 3, 5))]
    values = {label: randint(rng, 10, 95) for label in labels}
    width, height = 80 + 70 * len(labels), 300
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    base, top = height - 40, 30
    draw.line((40, top, 40, base), fill="black", width=2)
    draw.line((40, base, width - 10, base), fill="black", width=2)
    font = load_font(14)
    colors = list(SHAPE_COLORS.values())
    for tick in range(0, 101, 25):
        y = base - (base - top) * tick / 100
        draw.line((35, y, 40, y), fill="black")
        draw.text((8, y - 8), str(tick), font=font, fill="black")
    for k, label in enumerate(labels):
        x = 60 + 70 * k
        y = base - (base - top) * values[label] / 100
        draw.rectangle((x, y, x + 40, base - 1), fill=colors[k % len(colors)])
        draw.text((x + 14, base + 8), label, font=font, fill="black")
        draw.text((x + 8, y - 18), str(values[label]), font=font, fill="black")
    return image, values


def make_vqa(out_dir: Path, n: int = 12, seed: int = 0) -> Path:
    """Write ``n`` VQA samples under ``out_dir``, one of ``count``, ``color`` or ``chart`` in turn;
    returns the JSONL path."""
    rng = demo_rng(seed, 3)
    samples = DemoSamples(out_dir)
    for i in range(n):
        category = ("count", "color", "chart")[i % 3]
        metadata: dict[str, Any] = {}
        answer: Any
        if category == "count":
            scene = demo_scene(rng, (400, 300), randint(rng, 2, 9), unique_first=False)
            kind = choice(rng, sorted({s.kind for s in scene.shapes}))
            image, question, answer = (
                scene.image,
                f"How many {kind}s are there in the image?",
                scene.count(kind),
            )
        elif category == "color":
            scene = demo_scene(rng, (360, 270), 1)
            shape = scene.shapes[0]
            image, question, answer = scene.image, f"What colour is the {shape.kind}?", shape.color_name
        else:
            image, values = bar_chart(rng)
            label = choice(rng, list(values))
            question, answer = f"What is the value of bar {label}?", values[label]
            metadata["rel_tol"] = 0.05
        samples.add(f"vqa-{i:03d}", image, question, answer, category, metadata)
    return samples.write("demo-vqa")


DEMO_VQA = register_benchmark(
    Benchmark(
        "demo-vqa",
        ["vqa_lenient"],  # numbers within 5%: the lenient scorer, named as such in the summary
        prompt=SHORT_PROMPT,
        make_data=make_vqa,
        description="demo: count shapes, name colours, read bar values (5% tolerance)",
    )
)
