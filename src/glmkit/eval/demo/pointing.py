"""``demo-pointing``: point at the unique coloured shape; half the answers are boxes, half masks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from glmkit.eval.benchmarks import POINTING_PROMPT
from glmkit.eval.definition import Benchmark, register_benchmark
from glmkit.eval.demo.common import DemoSamples, demo_rng, demo_scene, pixel_box, randint


def make_pointing(out_dir: Path, n: int = 12, seed: int = 0) -> Path:
    """Write ``n`` pointing samples under ``out_dir`` (answers: the target's box, or its mask under
    ``masks/``); returns the JSONL path."""
    rng = demo_rng(seed, 1)
    samples = DemoSamples(out_dir, "masks")
    for i in range(n):
        size = (randint(rng, 320, 480), randint(rng, 240, 360))
        scene = demo_scene(rng, size, 1 + randint(rng, 2, 6))
        target = scene.shapes[0]
        if i % 2 == 0:
            answer: dict[str, Any] = {"box": pixel_box(target.box), "space": "pixels"}
            category = "box"
        else:
            mask_name = f"masks/point_{i:03d}.png"
            scene.mask(0).save(samples.out_dir / mask_name)
            answer, category = {"mask": mask_name}, "mask"
        samples.add(f"point-{i:03d}", scene.image, f"Point to the {target.label}.", answer, category)
    return samples.write("demo-pointing")


DEMO_POINTING = register_benchmark(
    Benchmark(
        "demo-pointing",
        [{"class_path": "pointing", "init_args": {"pred_space": "norm1000"}}],
        prompt=POINTING_PROMPT,
        make_data=make_pointing,
        description="demo: point at the unique coloured shape (box and mask targets)",
    )
)
