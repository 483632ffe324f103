"""End to end: does a short GRPO run raise held-out reward of a tiny SFT'd VLM? (GLM-5V-Turbo 2.3-2.4)

Per seed: build the tiny VLM of ``recipes/quickstart/vlm_tiny.yaml`` (or load ``--policy``, e.g. the
VLM quickstart's export ``runs/quickstart_vlm/vlm``), warm-start it with a short SFT on the gym
categories' reference answers (:func:`glmkit.stages.multitask_rl.sft_warm_start`; ``--sft-steps 0``
skips it), score greedy answers (and ``--samples`` answers at temperature 1, the policy's expected reward)
to held-out prompts of each category (another category seed, so
no held-out prompt is trained on), run ``--rl-steps`` GRPO steps of
:class:`~glmkit.stages.multitask_rl.MultiTaskRL` on the training prompts, and score the same
held-out prompts again. Prints before/after mean reward per category and seed, the mean
change over seeds, its standard deviation over seeds and the seeds that improved::

    glmkit fit --config recipes/quickstart/vlm_tiny.yaml   # writes runs/quickstart_vlm/vlm
    python benchmarks/rl_end_to_end.py --policy runs/quickstart_vlm/vlm --seeds 0 1 2 3 4

The baseline is the same policy before RL, measured in the same run on the same prompts.

What the tiny policy can be scored on: its tokenizer (MiniLM's, uncased WordPiece) cannot write
every reference answer back. OCR's answers come back lower-cased and codes split (``KTJ-L8H`` ->
``ktj - l8h``): the decoded reference answers score 0.28, not 1. Box answers (grounding,
gui_grounding) take about 30 tokens: ``--max-new-tokens`` must be at least 40 for them. Which
categories this tiny policy improves on, and which it does not: ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch.loggers import CSVLogger

from glmkit.data.vlm_samples import packaged_tokenizer
from glmkit.losses.policy import ClippedPolicyLoss
from glmkit.models.encoders import CogViT
from glmkit.models.vlm import VisionLanguageModel
from glmkit.models.vlm_processor import VLMProcessor
from glmkit.optim import MuonAdamW
from glmkit.rl.gym.category import TASK_CATEGORIES
from glmkit.rl.gym.mix import TaskMix
from glmkit.rl.rollout.inprocess import ChatPrompts, InProcessEngine
from glmkit.stages.multitask_rl import MultiTaskRL, TaskPrompts, load_policy, sft_warm_start

#: The VLM quickstart's recipe: the tiny policy is its model, randomly initialised.
VLM_QUICKSTART = Path(__file__).resolve().parents[1] / "recipes" / "quickstart" / "vlm_tiny.yaml"


def quickstart_language_model() -> dict[str, Any]:
    """The language-model config of :data:`VLM_QUICKSTART` (read from the recipe, not copied)."""
    recipe = yaml.safe_load(VLM_QUICKSTART.read_text())
    return recipe["model"]["init_args"]["vlm"]["init_args"]["language_model"]


def tiny_policy(seed: int) -> tuple[VisionLanguageModel, VLMProcessor]:
    """The VLM quickstart's model and processor, randomly initialised from ``seed``."""
    processor = VLMProcessor(packaged_tokenizer(), patch_size=8, merge_size=2, max_num_patches=64)
    torch.manual_seed(seed)
    encoder = CogViT.preset("tiny", patch_size=8, depth=2)
    return VisionLanguageModel(encoder, quickstart_language_model(), **processor.model_kwargs()), processor


def category(args: argparse.Namespace, name: str, seed: int, data_dir: Path) -> Any:
    """The gym category ``name`` at ``seed``, with the difficulty knobs of the command line."""
    kwargs: dict[str, Any] = {}
    if name == "counting":
        kwargs = {"min_shapes": args.counting_shapes[0], "max_shapes": args.counting_shapes[1]}
    elif name in ("grounding", "pointing") and args.max_distractors is not None:
        kwargs = {"max_distractors": args.max_distractors}
    return TASK_CATEGORIES.get(name)(seed=seed, data_dir=str(data_dir), **kwargs)


def run_seed(args: argparse.Namespace, seed: int, data_dir: Path) -> dict[str, tuple[float, float]]:
    """(before, after) held-out mean reward per category for one seed."""
    pl.seed_everything(seed, verbose=False)
    seed_start = time.perf_counter()
    policy, processor = load_policy(args.policy) if args.policy else tiny_policy(seed)
    policy.to("cuda" if args.accelerator == "gpu" else "cpu")
    train_cats = [category(args, n, seed, data_dir) for n in args.categories]
    held_cats = [category(args, n, 10_000 + seed, data_dir) for n in args.categories]
    tasks = TaskMix(train_cats, num_samples=100_000, seed=seed)
    held_out = [c.sample(i) for c in held_cats for i in range(args.held_out)]
    start = time.perf_counter()
    if args.sft_steps:
        losses = sft_warm_start(
            policy,
            ChatPrompts(processor),
            TaskMix(train_cats, num_samples=100_000, seed=seed, stream=2),  # not the RL prompts
            steps=args.sft_steps,
            batch_size=args.sft_batch_size,
            lr=args.sft_lr,
            stop_token_id=processor.stop_token_ids()[0],
        )
        took = time.perf_counter() - start
        print(f"seed {seed}: SFT loss {losses[0]:.2f} -> {losses[-1]:.2f} ({took:.0f} s)", flush=True)
    rl = MultiTaskRL(
        policy,
        processor,
        engine=InProcessEngine(max_batch_size=args.group_size * args.groups_per_step, seed=seed),
        loss=ClippedPolicyLoss(loss_type="dapo"),
        group_size=args.group_size,
        groups_per_step=args.groups_per_step,
        max_new_tokens=args.max_new_tokens,
        temperature=1.0,
        drop_uninformative=True,
        optimization=MuonAdamW(lr=args.lr, weight_decay=0.0),
        seed=seed,
    )
    data = TaskPrompts(tasks)
    rl.reward = data.reward_system()
    start = time.perf_counter()
    before = rl.evaluate(held_out)
    before_sampled = rl.evaluate(held_out, temperature=1.0, answers_per_sample=args.samples)
    print(
        f"seed {seed}: before RL ({time.perf_counter() - start:.0f} s): "
        + ", ".join(
            f"{c} {_mean(before[c]):.3f} (T=1 {_mean(before_sampled[c]):.3f})" for c in args.categories
        ),
        flush=True,
    )
    start = time.perf_counter()
    trainer = pl.Trainer(
        accelerator=args.accelerator,
        devices=1,
        max_steps=args.rl_steps,
        logger=CSVLogger(args.log_dir, name=f"seed{seed}") if args.log_dir else False,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(rl, data)
    print(f"seed {seed}: {args.rl_steps} GRPO steps in {time.perf_counter() - start:.0f} s", flush=True)
    after = rl.evaluate(held_out)
    after_sampled = rl.evaluate(held_out, temperature=1.0, answers_per_sample=args.samples)
    rl.close()
    result = {c: (_mean(before[c]), _mean(after[c])) for c in args.categories}
    result.update(
        {f"{c} (T=1)": (_mean(before_sampled[c]), _mean(after_sampled[c])) for c in args.categories}
    )
    print(f"seed {seed}: " + ", ".join(f"{c} {b:.3f} -> {a:.3f}" for c, (b, a) in result.items()), flush=True)
    print(f"seed {seed}: {time.perf_counter() - seed_start:.0f} s in all", flush=True)
    return result


def _mean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--categories", nargs="+", default=["counting", "gui_action"])
    parser.add_argument(
        "--policy", default=None, help="a save_pretrained directory (default: a fresh tiny VLM)"
    )
    parser.add_argument("--sft-steps", type=int, default=150)
    parser.add_argument("--sft-batch-size", type=int, default=8)
    parser.add_argument("--sft-lr", type=float, default=3e-3)
    parser.add_argument("--rl-steps", type=int, default=30)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--groups-per-step", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--held-out", type=int, default=32, help="held-out prompts per category")
    parser.add_argument("--accelerator", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--samples", type=int, default=8, help="sampled (T=1) answers per held-out prompt")
    parser.add_argument(
        "--counting-shapes",
        type=int,
        nargs=2,
        default=[1, 4],
        metavar=("MIN", "MAX"),
        help="shapes per counting scene (both ends included; the category's default is 2 10)",
    )
    parser.add_argument(
        "--max-distractors",
        type=int,
        default=None,
        help="other shapes in grounding / pointing scenes (default: the categories' 6)",
    )
    parser.add_argument(
        "--log-dir",
        default=None,
        help="write each seed's GRPO metrics (per-source train reward, ...) to DIR/seed<N>/ as CSV",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (2 ran 5x slower on the loaded 2-core machine)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[int, dict[str, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="rl-e2e-") as tmp:
        for seed in args.seeds:
            results[seed] = run_seed(args, seed, Path(tmp))
    print()
    print(
        f"held-out mean reward, greedy (and T=1 with {args.samples} answers per prompt: '(T=1)' rows), "
        f"{args.held_out} prompts per category, {args.sft_steps} SFT steps "
        f"then {args.rl_steps} GRPO steps of {args.groups_per_step} x {args.group_size} samples ({args.accelerator})"
    )
    header = "| category | " + " | ".join(f"seed {s} before -> after" for s in args.seeds)
    print(header + " | mean before | mean after | mean change | sd of change | seeds improved |")
    print("|---" * (len(args.seeds) + 6) + "|")
    for category in [*args.categories, *(f"{c} (T=1)" for c in args.categories)]:
        pairs = [results[s][category] for s in args.seeds]
        cells = " | ".join(f"{b:.3f} -> {a:.3f}" for b, a in pairs)
        before = statistics.fmean(b for b, _ in pairs)
        after = statistics.fmean(a for _, a in pairs)
        improved = sum(a > b for b, a in pairs)
        spread = statistics.stdev(a - b for b, a in pairs) if len(pairs) > 1 else math.nan
        print(
            f"| {category} | {cells} | {before:.3f} | {after:.3f} | {after - before:+.3f} "
            f"| {spread:.3f} | {improved}/{len(pairs)} |"
        )


if __name__ == "__main__":
    main()
