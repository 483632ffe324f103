"""``demo-grounding``: find the unique coloured shape; the answer is its pixel box (Acc@IoU>=0.5)."""

from __future__ import annotations

from pathlib import Path

from glmkit.eval.benchmarks import GROUNDING_PROMPT
from glmkit.eval.definition import Benchmark, register_benchmark
from glmkit.eval.demo.common import DemoSamples, demo_rng, demo_scene, pixel_box, randint


def make_grounding(out_dir: Path, n: int = 12, seed: int = 0) -> Path:
    """Write ``n`` grounding samples under ``out_dir``: ``easy`` (the target alone) and ``clutter``
    (4-7 other shapes); returns the JSONL path."""
    rng = demo_rng(seed, 0)
    samples = DemoSamples(out_dir)
    for i in range(n):
        size = (randint(rng, 320, 480), randint(rng, 240, 360))
        category = "easy" if i % 2 == 0 else "clutter"
        scene = demo_scene(rng, size, 1 if category == "easy" else 1 + randint(rng, 4, 7))
        target = scene.shapes[0]
        answer = {"box": pixel_box(target.box), "space": "pixels"}
        samples.add(f"ground-{i:03d}", scene.image, f"Find the {target.label}.", answer, category)
    return samples.write("demo-grounding")


DEMO_GROUNDING = register_benchmark(
    Benchmark(
        "demo-grounding",
        [{"class_path": "grounding", "init_args": {"pred_space": "norm1000"}}],
        prompt=GROUNDING_PROMPT,
        make_data=make_grounding,
        description="demo: find the unique coloured shape -> box, Acc@IoU>=0.5",
    )
)
