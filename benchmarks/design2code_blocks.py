"""Design2Code's text blocks: glmkit's one-load procedure vs the reference's three page loads.

For each page (the three parity pages of ``tests/eval/test_text_blocks.py`` and ``--demo-pages``
generated ui2code pages), in one headless Chromium:

  glmkit       ``ChromiumRenderer.render_file``: one load, the live DOM recoloured in place, three
               captures (what the ``design2code`` metric runs)
  reference    the reference's procedure, re-implemented on its own in
               ``tests/eval/design2code_reference.py``: two recoloured copies written out and each
               loaded afresh, the original loaded again, pixels diffed (the baseline)
  screenshot   one plain load and capture (the floor any procedure pays)

It prints whether the block lists are identical page by page, and the total time of each procedure
over ``--repeats`` passes (median), as a ratio to the reference. ``--clip`` adds the visual score's
precision check: CLIP ViT-B/32 embeddings of the rendered pages in fp32 and in fp16 (the reference's
GPU precision), from the same weights (``--clip-model``, a local open_clip directory; random
weights when none is given, which says nothing about trained weights), and the cosine differences
over every pair of pages. Needs Chromium (and open_clip, OpenCV for ``--clip``)::

    python benchmarks/design2code_blocks.py --demo-pages 7 --repeats 3 --clip
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the reference lives in tests/

from glmkit.eval.demo.common import demo_rng
from glmkit.eval.demo.ui2code import page_html
from glmkit.eval.render import ChromiumRenderer, chromium_unavailable_reason
from tests.eval.design2code_reference import PAGES, reference_blocks


def write_pages(folder: Path, demo_pages: int, seed: int) -> list[Path]:
    """The parity pages and ``demo_pages`` generated ui2code pages, as HTML files in ``folder``."""
    pages = []
    for name, html in PAGES.items():
        path = folder / f"{name}.html"
        path.write_text(html, encoding="utf-8")
        pages.append(path)
    rng = demo_rng(seed, 4)
    for i in range(demo_pages):
        path = folder / f"demo_{i:02d}.html"
        path.write_text(page_html(rng, ("landing", "article")[i % 2]), encoding="utf-8")
        pages.append(path)
    return pages


def time_blocks(pages: list[Path], workdir: Path, repeats: int) -> tuple[dict[str, list[float]], list[bool]]:
    """Seconds per pass of each procedure, and whether the block lists agree page by page."""
    times: dict[str, list[float]] = {"glmkit": [], "reference": [], "screenshot": []}
    same: list[bool] = []
    with ChromiumRenderer(timeout=20.0) as renderer:
        renderer.render_file(pages[0], text_blocks=False)  # start the browser outside the clock
        for r in range(repeats):
            start = time.perf_counter()
            ours = [renderer.render_file(p).blocks for p in pages]
            times["glmkit"].append(time.perf_counter() - start)
            start = time.perf_counter()
            theirs = [reference_blocks(renderer, p, workdir) for p in pages]
            times["reference"].append(time.perf_counter() - start)
            start = time.perf_counter()
            for p in pages:
                renderer.render_file(p, text_blocks=False)
            times["screenshot"].append(time.perf_counter() - start)
            if r == 0:
                same = [a == b for a, b in zip(ours, theirs, strict=True)]
    return times, same


def random_clip(folder: Path) -> str:
    """A ViT-B/32 open_clip directory with random weights (seed 0)."""
    import open_clip
    import torch

    cfg = open_clip.get_model_config("ViT-B-32")
    torch.manual_seed(0)
    torch.save(open_clip.model.CLIP(**cfg).state_dict(), folder / "open_clip_pytorch_model.bin")
    preprocess = {"interpolation": "bicubic", "resize_mode": "shortest"}
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": cfg, "preprocess_cfg": preprocess})
    )
    return str(folder)


def clip_precision(pages: list[Path], model: str) -> dict[str, float]:
    """fp32 vs fp16 cosine similarity over every pair of rendered pages."""
    from glmkit.eval.metrics.clip_score import ClipVisualScore

    with ChromiumRenderer(timeout=20.0) as renderer:
        renders = [renderer.render_file(p) for p in pages]
    boxes = [[(b.x, b.y, b.w, b.h) for b in r.blocks] for r in renders]
    cosines = {}
    for precision in ("fp32", "fp16"):
        clip = ClipVisualScore(model, precision=precision)
        embeddings = [clip.embed(r.screenshot, b).float() for r, b in zip(renders, boxes, strict=True)]
        cosines[precision] = np.array(
            [float(embeddings[i] @ embeddings[j].T) for i, j in itertools.combinations(range(len(pages)), 2)]
        )
    diff = np.abs(cosines["fp32"] - cosines["fp16"])
    return {"pairs": float(diff.size), "mean": float(diff.mean()), "max": float(diff.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo-pages", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clip", action="store_true", help="also compare CLIP fp32 and fp16")
    parser.add_argument("--clip-model", default=None, help="local open_clip directory (default: random)")
    args = parser.parse_args()
    reason = chromium_unavailable_reason()
    if reason is not None:
        raise SystemExit(f"design2code_blocks needs headless Chromium: {reason}")
    with tempfile.TemporaryDirectory(prefix="d2c-blocks-") as tmp:
        folder = Path(tmp)
        pages = write_pages(folder, args.demo_pages, args.seed)
        times, same = time_blocks(pages, folder, args.repeats)
        print(f"{len(pages)} pages, block lists identical on {sum(same)}/{len(same)}")
        for page, ok in zip(pages, same, strict=True):
            if not ok:
                print(f"  differs: {page.name}")
        base = statistics.median(times["reference"])
        print(f"\n| procedure | seconds for {len(pages)} pages (median of {args.repeats}) | vs reference |")
        print("|---|---|---|")
        for name, values in times.items():
            seconds = statistics.median(values)
            print(f"| {name} | {seconds:.2f} | {seconds / base:.2f}x |")
        if args.clip:
            model = args.clip_model or random_clip(folder)
            stats = clip_precision(pages, model)
            weights = args.clip_model or "random ViT-B/32 weights"
            print(
                f"\nCLIP fp32 vs fp16 ({weights}), {stats['pairs']:.0f} page pairs: cosine difference "
                f"mean {stats['mean']:.2e}, max {stats['max']:.2e}"
            )


if __name__ == "__main__":
    main()
