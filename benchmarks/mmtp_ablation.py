"""The MMTP ablation (GLM-5V-Turbo section 2.2, Figure 2): what the MTP head reads at image positions.

Trains ``recipes/vlm/mmtp_ablation/{visual,mask,image_token}.yaml`` (options 1, 2, 3) with identical
seeds, data and steps, once per seed, and writes ``mmtp_ablation.csv`` (option, seed, step,
main_loss, mtp_loss) and ``mmtp_ablation.png`` (main-head and MTP loss over steps, mean over seeds)
to ``--out``. The report finds option 3 below option 1; the ordering at this scale is printed.

    python benchmarks/mmtp_ablation.py --steps 60 --seeds 0 1 --out runs/mmtp_ablation
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = ("visual", "mask", "image_token")


def train(option: str, seed: int, steps: int, work: Path) -> list[dict[str, float]]:
    """Train one option under ``work/<option>_<seed>``; its logged (step, main_loss, mtp_loss)."""
    from glmkit.cli import main

    run = work / f"{option}_seed{seed}"
    run.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(run)  # the recipe writes under runs/ relative to the working directory
    try:
        args = [
            "fit",
            "--config",
            str(ROOT / "recipes" / "vlm" / "mmtp_ablation" / f"{option}.yaml"),
            f"--trainer.max_steps={steps}",
            "--trainer.enable_progress_bar=false",
            f"--seed_everything={seed}",
            f"--model.init_args.seed={seed}",
            f"--data.init_args.seed={seed}",
        ]
        if main(args) != 0:
            raise RuntimeError(f"training {option} (seed {seed}) failed")
    finally:
        os.chdir(cwd)
    (metrics,) = run.glob("runs/mmtp_ablation/*/logs/*/metrics.csv")
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


def main() -> None:
    """Run the ablation and print the final-loss ordering."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=Path("runs/mmtp_ablation"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in args.seeds:
        for option in OPTIONS:
            rows += [
                {"option": option, "seed": seed, **r}
                for r in train(option, seed, args.steps, args.out / "work")
            ]
    with (args.out / "mmtp_ablation.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["option", "seed", "step", "main_loss", "mtp_loss"])
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.out / "mmtp_ablation.png")
    last = max(r["step"] for r in rows)
    for key in ("main_loss", "mtp_loss"):
        final = {
            o: sum(r[key] for r in rows if r["option"] == o and r["step"] == last) / len(args.seeds)
            for o in OPTIONS
        }
        print(
            f"final {key} (step {last}, mean of {len(args.seeds)} seeds): "
            + ", ".join(f"{o}={v:.4f}" for o, v in sorted(final.items(), key=lambda kv: kv[1]))
        )


if __name__ == "__main__":
    main()
