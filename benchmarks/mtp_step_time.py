"""Training-step time of the quickstart VLM with one MTP depth (D = 1) against none (D = 0).

Both stages are built from ``recipes/quickstart/vlm_tiny.yaml`` (same VLM, same weights: the D = 0
stage shares the D = 1 stage's VLM), and both take the same batch from the recipe's data. A step
is :meth:`~glmkit.stages.vlm_pretrain.VLMPretrain.compute_loss`, backward and the recipe's
optimizer step; the two are interleaved step by step after ``--warmup`` steps each, and the table
gives the median wall-clock and process-CPU milliseconds and the ratios D = 1 / D = 0, measured in the same run.

    nice -n 5 python benchmarks/mtp_step_time.py --steps 20
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "quickstart" / "vlm_tiny.yaml"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=RECIPE)
    parser.add_argument("--steps", type=int, default=20, help="timed steps of each stage")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each stage first")
    parser.add_argument("--batch-size", type=int, default=None, help="override the recipe's batch size")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared CPU)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error(f"--steps must be >= 1 and --warmup >= 0, got {args.steps} and {args.warmup}")
    return args


def build(recipe: Path, batch_size: int | None = None) -> tuple[dict[int, Any], Mapping[str, Any]]:
    """``({0: stage without MTP, 1: stage with D = 1}, batch)`` from the recipe; the stages share one VLM."""
    import yaml

    from glmkit.config import instantiate

    config = yaml.safe_load(recipe.read_text())
    model_spec = copy.deepcopy(config["model"])
    model_spec["init_args"]["mtp_depths"] = 1
    with_mtp = instantiate(model_spec, where=f"{recipe}: model")
    model_spec["init_args"]["mtp_depths"] = 0
    model_spec["init_args"]["vlm"] = with_mtp.vlm  # the same VLM, the same weights
    without = instantiate(model_spec, where=f"{recipe}: model")
    data_spec = copy.deepcopy(config["data"])
    if batch_size is not None:
        data_spec["init_args"]["batch_size"] = batch_size
    data = instantiate(data_spec, where=f"{recipe}: data")
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    return {0: without, 1: with_mtp}, batch


def step(stage: Any, optimizer: torch.optim.Optimizer, batch: Mapping[str, Any]) -> tuple[float, float]:
    """One training step (loss, backward, optimizer step); its ``(wall-clock, process CPU)`` seconds.

    On a shared machine the CPU time is the steadier measure: it does not count waiting for a core.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    loss = stage.compute_loss(batch).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(
    stages: Mapping[int, Any], batch: Mapping[str, Any], steps: int, warmup: int
) -> dict[int, list[tuple[float, float]]]:
    """``(wall, CPU)`` seconds of each timed step per stage, the stages interleaved step by step."""
    optimizers = {}
    for depth, stage in stages.items():
        stage.train()
        built = stage.optimization.build(stage, steps + warmup, stage.optim_modules())
        optimizers[depth] = built["optimizer"] if isinstance(built, Mapping) else built
    times: dict[int, list[tuple[float, float]]] = {depth: [] for depth in stages}
    for i in range(warmup + steps):
        for depth, stage in stages.items():
            seconds = step(stage, optimizers[depth], batch)
            if i >= warmup:
                times[depth].append(seconds)
    return times


def table(times: Mapping[int, list[tuple[float, float]]], tokens: int) -> str:
    """Median wall-clock and CPU step time per depth, each with its ratio against D = 0."""
    medians = {
        depth: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
        for depth, values in times.items()
    }
    base_wall, base_cpu = medians[0]
    lines = [
        "| MTP depths | median wall step (ms) | wall ratio to D=0 | median CPU step (ms) | CPU ratio to D=0 | tokens / CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for depth, (wall, cpu) in sorted(medians.items()):
        lines.append(
            f"| D={depth} | {1000 * wall:.1f} | {wall / base_wall:.3f} | {1000 * cpu:.1f} | {cpu / base_cpu:.3f} "
            f"| {tokens / cpu:.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[int, list[tuple[float, float]]]:
    """Run the benchmark and print its table; returns the step times per depth."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    stages, batch = build(args.recipe, args.batch_size)
    times = measure(stages, batch, args.steps, args.warmup)
    tokens = int(batch["attention_mask"].sum())
    print(
        f"{args.recipe.name}: batch {tuple(batch['input_ids'].shape)} ({tokens} tokens), {args.steps} timed steps "
        f"per stage after {args.warmup} warm-up, interleaved, {args.threads} thread(s)"
    )
    print(table(times, tokens))
    return times


if __name__ == "__main__":
    main()
