"""Step wall time of an RL rollout: synchronous batch reward vs completion callbacks vs early abort.

A simulated engine (:class:`glmkit.rl.rollout.SimulatedEngine`) answers each request after a
seeded log-normal latency (heavy-tailed: the slowest of a step's requests takes many times the
median), and every finished sample costs reward work. One epoch of prompts is rolled out three
ways, with the same engine seed and prompts, by :class:`glmkit.rl.rollout.RolloutScheduler`:

  (a) sync      every request of the step finishes, then every sample is scored (the reward
                after the batch, as TRL's ``_calculate_rewards``)
  (b) callback  each sample's reward starts the moment its request finishes (GLM-5V-Turbo 2.4)
  (c) abort     (b), and the step stops once 90% of its groups are complete; the unfinished
                groups go to the prompt cache and are re-issued first in the next step

Reward cost, ``--reward-kind``:

  sleep   ``--reward-ms`` of waiting per sample, at most ``--reward-workers`` at a time (a judge
          behind a concurrency limit, or a pool of verifier processes)
  busy    ``--reward-ms`` of pure-Python CPU work per sample on the event-loop thread (a rule
          verifier run inline, as slime runs its rule rewards)

Reported per mode: mean wall time of the full steps (those that issued ``--groups`` groups) and
its ratio to (a); the time until 90% of a step's groups were complete; the share of (b)'s tail
(from 90% to 100% of groups complete) that (c) removes; the whole epoch's time; prompts deferred
by the abort and later completed; and a check that every prompt of the epoch was trained on
exactly once. Goals: (b) <= 0.8x (a); (c) removes most of the tail; no prompt lost.

A re-issued request draws a new latency; with ``--prompt-sigma`` a prompt is slow for every
sample and every attempt (hard prompts stay hard). Times are scaled down (a 20 ms median request)
so the run takes seconds; the ratios are what carries over. Example::

    python benchmarks/rl_pipeline.py
    python benchmarks/rl_pipeline.py --reward-kind busy --reward-ms 1
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from glmkit.rl.rollout import RolloutPipeline, RolloutScheduler, SimulatedEngine
from glmkit.scoring import Sample

MODES = {"a": "sync", "b": "callback", "c": "abort"}


class CostlyReward:
    """1.0 for the reference answer, else 0.0, after ``cost_s`` of waiting or CPU work."""

    def __init__(self, cost_s: float, workers: int, kind: str) -> None:
        self.cost_s = cost_s
        self.kind = kind
        self.workers = workers
        self._slots: asyncio.Semaphore | None = None

    async def score_async(self, sample: Sample, response: str, metadata: Mapping[str, Any]) -> float:
        if self.kind == "sleep":
            if self._slots is None:
                self._slots = asyncio.Semaphore(self.workers)
            async with self._slots:
                await asyncio.sleep(self.cost_s)
        else:
            end = time.perf_counter() + self.cost_s
            x = 0
            while time.perf_counter() < end:
                x += 1
        return float(response == sample.answer)


@dataclass
class ModeResult:
    step_s: float  # mean over full steps
    t90_s: float  # mean time to 90% of groups complete, full steps
    epoch_s: float
    steps: int
    deferred: int
    completed_after_deferral: int
    aborted_requests: int
    lost: int
    repeated: int


async def run_mode(mode: str, args: argparse.Namespace, seed: int) -> ModeResult:
    prompts = [
        Sample(id=f"p{i}", question=f"q{i}", answer=str(i), source=("count", "ocr", "gui")[i % 3])
        for i in range(args.prompts)
    ]
    engine = SimulatedEngine(
        median_latency_s=args.median_ms / 1000, sigma=args.sigma, prompt_sigma=args.prompt_sigma, seed=seed
    )
    reward = CostlyReward(args.reward_ms / 1000, args.reward_workers, args.reward_kind)
    scheduler = RolloutScheduler(
        engine,
        reward,
        prompts,
        group_size=args.group_size,
        groups_per_step=args.groups,
        complete_fraction=args.abort if mode == "c" else 1.0,
        reward_on_completion=mode != "a",
        num_epochs=1,
        seed=seed,
    )
    pipeline = RolloutPipeline(scheduler, max_ahead=0)  # no training overlap: rollout + reward only
    loop = asyncio.get_running_loop()
    start = loop.time()
    trained: list[str] = []
    full_steps, t90s = [], []
    async for batch in pipeline:
        trained += batch.prompt_ids
        await pipeline.update_weights(scheduler.version + 1)
        if batch.issued_groups == args.groups:
            full_steps.append(batch.wall_s)
            t90s.append(batch.time_to_fraction(0.9))
    epoch_s = loop.time() - start
    every = {f"0/{i}" for i in range(args.prompts)}
    totals = scheduler.totals
    return ModeResult(
        step_s=statistics.fmean(full_steps),
        t90_s=statistics.fmean(t90s),
        epoch_s=epoch_s,
        steps=totals["steps"],
        deferred=totals["deferred"],
        completed_after_deferral=totals["completed_after_deferral"],
        aborted_requests=totals["aborted_requests"],
        lost=len(every - set(trained)),
        repeated=len(trained) - len(set(trained)),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=96, help="prompts in the epoch")
    parser.add_argument("--group-size", type=int, default=8, help="samples per prompt")
    parser.add_argument("--groups", type=int, default=16, help="groups per step")
    parser.add_argument("--median-ms", type=float, default=20.0, help="median request latency")
    parser.add_argument("--sigma", type=float, default=1.0, help="log-normal shape of the latency")
    parser.add_argument(
        "--prompt-sigma", type=float, default=0.0, help="log-normal shape of a per-prompt slowness factor"
    )
    parser.add_argument("--reward-ms", type=float, default=4.0, help="reward cost per sample")
    parser.add_argument("--reward-workers", type=int, default=4, help="concurrent rewards (sleep kind)")
    parser.add_argument("--reward-kind", choices=("sleep", "busy"), default="sleep")
    parser.add_argument("--abort", type=float, default=0.9, help="(c): stop at this fraction of groups")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)

    results: dict[str, list[ModeResult]] = {m: [] for m in MODES}
    for seed in args.seeds:
        for mode in MODES:
            results[mode].append(asyncio.run(run_mode(mode, args, seed)))

    def mean(mode: str, key: str) -> float:
        return statistics.fmean(getattr(r, key) for r in results[mode])

    base = mean("a", "step_s")
    tail_b = mean("b", "step_s") - mean("b", "t90_s")
    print(
        f"{args.prompts} prompts x {args.group_size} samples, {args.groups} groups/step, latency "
        f"log-normal (median {args.median_ms:g} ms, sigma {args.sigma:g}, per-prompt sigma "
        f"{args.prompt_sigma:g}), reward {args.reward_ms:g} ms/sample "
        f"({args.reward_kind}"
        + (f", {args.reward_workers} workers" if args.reward_kind == "sleep" else "")
        + f"), seeds {' '.join(map(str, args.seeds))} (means)\n"
    )
    print(
        "| mode | step (ms) | vs (a) | 90% groups (ms) | tail removed | epoch (ms) | steps "
        "| deferrals | prompts completed after deferral | aborted requests | lost / repeated |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    ok = True
    for mode, name in MODES.items():
        step = mean(mode, "step_s")
        removed = (mean("b", "step_s") - step) / tail_b if mode == "c" and tail_b > 0 else None
        lost = sum(r.lost for r in results[mode])
        repeated = sum(r.repeated for r in results[mode])
        ok &= lost == 0 and repeated == 0
        print(
            f"| ({mode}) {name} | {1000 * step:.0f} | {step / base:.2f}x | {1000 * mean(mode, 't90_s'):.0f} "
            f"| {'' if removed is None else f'{100 * removed:.0f}%'} | {1000 * mean(mode, 'epoch_s'):.0f} "
            f"| {mean(mode, 'steps'):.1f} | {mean(mode, 'deferred'):.1f} "
            f"| {mean(mode, 'completed_after_deferral'):.1f} | {mean(mode, 'aborted_requests'):.1f} "
            f"| {lost} / {repeated} |"
        )
    ratio_b = mean("b", "step_s") / base
    print(f"\ngoal (b) <= 0.8x (a): {'met' if ratio_b <= 0.8 else 'MISSED'} ({ratio_b:.2f}x)")
    print(f"every prompt trained exactly once in every mode: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
