"""The MMTP ablation (GLM-5V-Turbo section 2.2, Figure 2): what the MTP head reads at image positions.

Trains ``recipes/vlm/mmtp_ablation/{visual,mask,image_token}.yaml`` (options 1, 2, 3) with identical
seeds, data and steps, once per seed (a seed sets the weights and the data order, the same for the
three options, so the options are compared on the same batches), and writes to ``--out``:
``mmtp_ablation.csv`` (option, seed, step, main_loss, mtp_loss), ``mmtp_ablation.png`` (main-head
and MTP loss over steps, mean over seeds) and ``mmtp_ablation.md``: per option the final losses
(each run's training losses averaged over its last ``--final-window`` steps, which smooths the
batch-to-batch noise of single steps) as mean and standard deviation over seeds, and each option's
paired difference to option 3 (``image_token``) with its standard deviation over seeds: a
difference within about one or two standard deviations is within seed noise. The report finds
option 3 below option 1. Runs are separate processes, ``--jobs`` at a time.

    nice -n 5 python benchmarks/mmtp_ablation.py --steps 60 --seeds 0 1 2 --jobs 2 --out runs/mmtp_ablation
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = ("visual", "mask", "image_token")
REFERENCE = "image_token"
KEYS = ("main_loss", "mtp_loss")


def train(option: str, seed: int, steps: int, work: Path) -> list[dict[str, float]]:
    """Train one option under ``work/<option>_seed<seed>`` in a child process; its logged (step, main_loss, mtp_loss)."""
    run = work / f"{option}_seed{seed}"
    run.mkdir(parents=True, exist_ok=True)
    args = [
        sys.executable,
        "-c",
        "import sys; from glmkit.cli import main; sys.exit(main(sys.argv[1:]))",
        "fit",
        "--config",
        str(ROOT / "recipes" / "vlm" / "mmtp_ablation" / f"{option}.yaml"),
        f"--trainer.max_steps={steps}",
        "--trainer.enable_progress_bar=false",
        "--trainer.log_every_n_steps=1",
        f"--seed_everything={seed}",
        f"--model.init_args.seed={seed}",
        f"--data.init_args.seed={seed}",
    ]
    # the recipe writes under runs/ relative to the working directory
    with (run / "train.log").open("w") as log:
        done = subprocess.run(args, cwd=run, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"training {option} (seed {seed}) failed; see {run / 'train.log'}")
    return logged(run)


def logged(run: Path) -> list[dict[str, float]]:
    """The (step, main_loss, mtp_loss) rows a run directory's ``metrics.csv`` holds."""
    found = sorted(run.glob("runs/mmtp_ablation/*/logs/*/metrics.csv"))
    if not found:
        return []
    metrics = found[-1]  # the last version: a rerun in the same directory logs a new one
    rows = []
    for row in csv.DictReader(metrics.open()):
        if row.get("train/main_loss"):
            rows.append(
                {
                    "step": int(row["step"]),
                    "main_loss": float(row["train/main_loss"]),
                    "mtp_loss": float(row["train/mtp_loss"]),
                }
            )
    return rows


def final_losses(rows: Sequence[dict], window: int) -> dict[tuple[str, int], dict[str, float]]:
    """``{(option, seed): {key: mean of the logged key over the run's last window steps}}``."""
    out = {}
    for option, seed in sorted({(r["option"], r["seed"]) for r in rows}):
        run = [r for r in rows if r["option"] == option and r["seed"] == seed]
        last = max(r["step"] for r in run)
        tail = [r for r in run if r["step"] > last - window]
        out[option, seed] = {key: statistics.fmean(r[key] for r in tail) for key in KEYS}
    return out


def _spread(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def summary(rows: Sequence[dict], window: int) -> str:
    """The Markdown tables: final losses per option (mean, std over seeds) and paired differences to option 3."""
    finals = final_losses(rows, window)
    seeds = sorted({seed for _, seed in finals})
    options = [o for o in OPTIONS if any(o == opt for opt, _ in finals)]
    lines = [
        f"final losses: mean of each run's last {window} steps; mean and std over seeds {seeds}",
        "",
        "| option | main loss | MTP loss | main - image_token | MTP - image_token |",
        "|---|---|---|---|---|",
    ]
    for option in options:
        cells = [option]
        for key in KEYS:
            values = [finals[option, s][key] for s in seeds]
            cells.append(f"{statistics.fmean(values):.4f} ± {_spread(values):.4f}")
        for key in KEYS:
            if (REFERENCE, seeds[0]) not in finals or option == REFERENCE:
                cells.append("-")
                continue
            diffs = [finals[option, s][key] - finals[REFERENCE, s][key] for s in seeds]
            cells.append(f"{statistics.fmean(diffs):+.4f} ± {_spread(diffs):.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| seed | " + " | ".join(f"{o} main / MTP" for o in options) + " |"]
    lines.append("|---|" + "---|" * len(options))
    for seed in seeds:
        cells = [f"{finals[o, seed]['main_loss']:.4f} / {finals[o, seed]['mtp_loss']:.4f}" for o in options]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    for key in KEYS:
        means = {o: statistics.fmean(finals[o, s][key] for s in seeds) for o in options}
        lines.append("")
        lines.append(f"ordering of {key} (lowest first): " + " < ".join(sorted(means, key=means.get)))
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Main-head and MTP loss over steps per option, mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for option in OPTIONS:
        steps = sorted({r["step"] for r in rows if r["option"] == option})
        for ax, key in zip(axes, ("main_loss", "mtp_loss"), strict=True):
            means = [
                sum(r[key] for r in rows if r["option"] == option and r["step"] == s)
                / max(1, sum(1 for r in rows if r["option"] == option and r["step"] == s))
                for s in steps
            ]
            ax.plot(steps, means, label=option)
    for ax, title in zip(axes, ("main-head loss", "MTP loss (depth mean)"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Run the ablation, write its files and print the summary; returns the logged rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=OPTIONS)
    parser.add_argument("--jobs", type=int, default=1, help="training runs at a time")
    parser.add_argument("--final-window", type=int, default=10, help="last steps averaged into a final loss")
    parser.add_argument("--out", type=Path, default=Path("runs/mmtp_ablation"))
    parser.add_argument(
        "--finished-only",
        action="store_true",
        help="train nothing: summarise the runs under --out/work that reached --steps (an interrupted ablation)",
    )
    args = parser.parse_args(argv)
    if args.steps < 1 or args.jobs < 1 or args.final_window < 1:
        parser.error("--steps, --jobs and --final-window must be >= 1")
    args.out.mkdir(parents=True, exist_ok=True)
    runs = [(option, seed) for seed in args.seeds for option in args.options]
    if args.finished_only:
        done = {run: logged(args.out / "work" / f"{run[0]}_seed{run[1]}") for run in runs}
        finished = {run for run in runs if done[run] and max(r["step"] for r in done[run]) >= args.steps - 1}
        # only seeds whose options all finished: the comparison is paired
        seeds = [s for s in args.seeds if all((o, s) in finished for o in args.options)]
        if not seeds:
            parser.error(
                f"no seed under {args.out / 'work'} has all of {args.options} trained to step {args.steps}"
            )
        runs = [(option, seed) for seed in seeds for option in args.options]
        results = [done[run] for run in runs]
    else:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(lambda run: train(*run, args.steps, args.out / "work"), runs))
    rows = [
        {"option": option, "seed": seed, **r}
        for (option, seed), logged in zip(runs, results, strict=True)
        for r in logged
    ]
    with (args.out / "mmtp_ablation.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["option", "seed", "step", *KEYS])
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.out / "mmtp_ablation.png")
    text = summary(rows, args.final_window)
    (args.out / "mmtp_ablation.md").write_text(text + "\n")
    print(text)
    return rows


if __name__ == "__main__":
    main()
