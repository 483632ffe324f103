"""Micro-batch balance of joint text/ViT packing vs naive chunking and length-only Karmarkar-Karp.

One RL rollout batch (prompts x samples per prompt; the samples of a prompt share its images and
differ in response length) is cut into micro-batches three ways, all with the same number of
micro-batches (glmkit's: the fewest that hold the batch under both caps, a multiple of the
data-parallel size):

  naive     consecutive chunks of equal sample count, in rollout order
  kk-text   Karmarkar-Karp (largest differencing) on LLM tokens only, as verl and slime balance
  glmkit    :func:`glmkit.data.packing.plan_microbatches`: both dimensions capped, text tokens,
            ViT patches and estimated time balanced

For each, max/mean over micro-batches of LLM tokens, ViT patches and estimated time
(:class:`glmkit.data.packing.CostModel`), and how many micro-batches break each cap (the worst
seed). Goal for glmkit:
max/mean <= 1.05 on each dimension, no cap broken. Distributions are seeded:

  mixed     30% text-only prompts, 50% one image, 20% two to four; NaFlex images of 64-4096
            merged tokens (log-normal); responses log-normal (median 600 tokens)
  gui       high-resolution screenshots (1-2 of 1500-4000 merged tokens) with short actions,
            mixed 1:1 with long text-only reasoning (median 2500 tokens)
  video     a third of the prompts are clips of 8-32 frames of 64-256 merged tokens, the rest
            single images; medium responses

Example::

    python benchmarks/packing_balance.py --prompts 256 --samples 8 --dp 8
"""

from __future__ import annotations

import argparse
import heapq
import time

import numpy as np

from glmkit.data.packing import CostModel, PackItem, microbatch_balance, plan_microbatches


def lognormal_int(rng: np.random.Generator, median: float, sigma: float, low: int, high: int) -> int:
    """A log-normal draw with the given median, clipped to [low, high]."""
    return int(np.clip(rng.lognormal(np.log(median), sigma), low, high))


def make_batch(kind: str, prompts: int, samples: int, seed: int) -> list[PackItem]:
    """One rollout batch of ``prompts`` x ``samples`` items from the named distribution."""
    rng = np.random.default_rng(seed)
    items: list[PackItem] = []
    for p in range(prompts):
        if kind == "mixed":
            u = rng.random()
            n_images = 0 if u < 0.3 else 1 if u < 0.8 else int(rng.integers(2, 5))
            merged = [lognormal_int(rng, 700, 0.9, 64, 4096) for _ in range(n_images)]
            prompt_text, median, sigma = lognormal_int(rng, 300, 0.7, 30, 2000), 600, 0.9
        elif kind == "gui":
            if rng.random() < 0.5:
                merged = [lognormal_int(rng, 2500, 0.3, 1500, 4000) for _ in range(int(rng.integers(1, 3)))]
                prompt_text, median, sigma = lognormal_int(rng, 400, 0.5, 50, 2000), 150, 0.6
            else:
                merged = []
                prompt_text, median, sigma = lognormal_int(rng, 200, 0.6, 30, 1500), 2500, 0.8
        elif kind == "video":
            if rng.random() < 1 / 3:
                merged = [lognormal_int(rng, 160, 0.4, 64, 256)] * int(rng.integers(8, 33))
            else:
                merged = [lognormal_int(rng, 900, 0.8, 64, 4096)]
            prompt_text, median, sigma = lognormal_int(rng, 250, 0.6, 30, 1500), 800, 0.8
        else:
            raise ValueError(f"unknown distribution {kind!r}; expected mixed, gui or video")
        for _ in range(samples):
            response = lognormal_int(rng, median, sigma, 8, 8192)
            items.append(PackItem.from_merged_tokens(prompt_text + sum(merged) + response, merged, group=p))
    return items


def karmarkar_karp(sizes: list[float], k: int) -> list[list[int]]:
    """Largest differencing method: ``k`` subsets of indices with balanced sums of ``sizes``."""
    # each heap entry is a k-way partial partition, kept with its subsets sorted by sum (descending)
    heap: list[tuple[float, int, list[tuple[float, list[int]]]]] = []
    for i, s in enumerate(sizes):
        parts = [(float(s), [i])] + [(0.0, []) for _ in range(k - 1)]
        heapq.heappush(heap, (-float(s), i, parts))
    while len(heap) > 1:
        _, tie, a = heapq.heappop(heap)
        _, _, b = heapq.heappop(heap)
        # combine the largest subset of one with the smallest of the other
        merged = [(sa + sb, ia + ib) for (sa, ia), (sb, ib) in zip(a, reversed(b), strict=True)]
        merged.sort(key=lambda part: -part[0])
        heapq.heappush(heap, (-(merged[0][0] - merged[-1][0]), tie, merged))
    return [idx for _, idx in heap[0][2]]


def naive_chunks(n: int, m: int) -> list[list[int]]:
    """``m`` consecutive chunks of (nearly) equal sample count."""
    bounds = np.linspace(0, n, m + 1).round().astype(int)
    return [list(range(bounds[j], bounds[j + 1])) for j in range(m)]


def cap_violations(
    bins: list[list[int]], items: list[PackItem], max_text: int, max_vit: int
) -> tuple[int, int]:
    """Micro-batches over the text cap, and over the ViT cap."""
    text_over = vit_over = 0
    for mb in bins:
        text_over += sum(items[i].text_tokens for i in mb) > max_text
        vit_over += sum(items[i].vit_patches for i in mb) > max_vit
    return text_over, vit_over


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--samples", type=int, default=8, help="samples per prompt (GRPO group size)")
    parser.add_argument("--dp", type=int, default=8, help="data-parallel ranks")
    parser.add_argument("--max-text-tokens", type=int, default=32768)
    parser.add_argument("--max-vit-patches", type=int, default=65536)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--distributions", nargs="+", default=["mixed", "gui", "video"])
    args = parser.parse_args(argv)
    cost = CostModel()
    print(
        f"{args.prompts} prompts x {args.samples} samples, dp={args.dp}, caps {args.max_text_tokens} "
        f"text tokens / {args.max_vit_patches} ViT patches per micro-batch; max/mean over micro-batches, "
        "worst over seeds " + ", ".join(map(str, args.seeds))
    )
    print()
    print(
        "| distribution | method | micro-batches | text max/mean | ViT max/mean | time max/mean "
        "| over text cap | over ViT cap | plan (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for kind in args.distributions:
        rows: dict[str, list[tuple[float, ...]]] = {"naive": [], "kk-text": [], "glmkit": []}
        for seed in args.seeds:
            items = make_batch(kind, args.prompts, args.samples, seed)
            start = time.perf_counter()
            plan = plan_microbatches(
                items,
                max_text_tokens=args.max_text_tokens,
                max_vit_patches=args.max_vit_patches,
                dp_size=args.dp,
                cost_model=cost,
            )
            elapsed = time.perf_counter() - start
            ours = plan.microbatches(0)
            m = len(ours)
            start = time.perf_counter()
            kk = karmarkar_karp([float(it.text_tokens) for it in items], m)
            kk_time = time.perf_counter() - start
            for name, bins, seconds in (
                ("naive", naive_chunks(len(items), m), 0.0),
                ("kk-text", kk, kk_time),
                ("glmkit", ours, elapsed),
            ):
                b = microbatch_balance(bins, items, cost)
                over = cap_violations(bins, items, args.max_text_tokens, args.max_vit_patches)
                rows[name].append((m, b["text_tokens"], b["vit_patches"], b["time"], *over, seconds))
        for name, values in rows.items():
            worst = np.array(values).max(0)
            print(
                f"| {kind} | {name} | {int(worst[0])} | {worst[1]:.3f} | {worst[2]:.3f} | {worst[3]:.3f} "
                f"| {int(worst[4])} | {int(worst[5])} | {worst[6]:.2f} |"
            )


if __name__ == "__main__":
    main()
