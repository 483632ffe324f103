"""``demo-grounding``: find the unique coloured shape; the answer is its pixel box (Acc@IoU>=0.5)."""

from __future__ import annotations

from pathlib import Path

from glmkit.eval.benchmarks import GROUNDING_PROMPT
from glmkit.eval.definition import Benchmark, register_benchmark
from glmkit.eval.demo.common import demo_rng, demo_scene, pixel_box, randint, write_jsonl


def make_grounding(out_dir: Path, n: int = 12, seed: int = 0) -> Path:
    """Write ``n`` grounding samples under ``out_dir``: ``easy`` (the target alone) and ``clutter``
    (4-7 other shapes); returns the JSONL path."""
    rng = demo_rng(seed, 0)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        size = (randint(rng, 320, 480), randint(rng, 240, 360))
        category = "easy" if i % 2 == 0 else "clutter"
        scene = demo_scene(rng, size, 1 if category == "easy" else 1 + randint(rng, 4, 7))
        target = scene.shapes[0]
        name = f"images/ground_{i:03d}.png"
        scene.image.save(out_dir / name)
        rows.append(
            {
                "id": f"ground-{i:03d}",
                "question": f"Find the {target.label}.",
                "images": [name],
                "answer": {"box": pixel_box(target.box), "space": "pixels"},
                "category": category,
                "metadata": {"image_size": list(size)},
            }
        )
    return write_jsonl(out_dir / "demo-grounding.jsonl", rows)


DEMO_GROUNDING = register_benchmark(
    Benchmark(
        "demo-grounding",
        [{"class_path": "grounding", "init_args": {"pred_space": "norm1000"}}],
        prompt=GROUNDING_PROMPT,
        make_data=make_grounding,
        description="demo: find the unique coloured shape -> box, Acc@IoU>=0.5",
    )
)
