"""The multi-task RL stage on 2 CPU processes (gloo, Lightning DDP) against one process: the same
gathered rollouts give the same update and the same logged rollout metrics."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch

from glmkit.data.vlm_samples import packaged_tokenizer
from glmkit.losses.policy import ClippedPolicyLoss
from glmkit.models.vlm_processor import VLMProcessor
from glmkit.optim.builder import OptimizerBuilder
from glmkit.rl.gym.categories import OCR, Counting
from glmkit.rl.gym.mix import TaskMix
from glmkit.rl.rollout import Completion, InProcessEngine, RewardFunction, RolloutRequest
from glmkit.stages.multitask_rl import MultiTaskRL, TaskPrompts
from tests.helpers.distributed import run_on_ranks
from tests.stages.test_multitask_rl import tiny_vlm, trainer

WORLD = 2
GROUPS = 4  # prompts of the global batch: every prompt of the epoch, whoever rolls it out
GROUP_SIZE = 2
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
#: ``max_text_tokens`` that packs 1-3 samples (about 25 tokens each) per micro-batch: micro-batches
#: of unequal sizes, split differently on 2 ranks than on one, so a mean of micro-batch means
#: (the stage's ``grpo`` scaling before) would not match
MAX_TEXT_TOKENS = 80
#: logged values that differ with the number of ranks for good reason: a timing, and the balance of
#: the packing plan (its micro-batches are split over 2 ranks or 1)
PER_RUN = ("rollout/wall_s", "packing/")


class SGD(OptimizerBuilder):
    """Plain SGD (no schedule): the weight change is ``-lr`` times the gradient, so equal weights
    mean equal gradients (an Adam or Muon step would hide a scale error)."""

    def __init__(self, lr: float = 1.0) -> None:
        self.lr = lr

    def build(self, module: torch.nn.Module, total_steps: int, modules: Any = None) -> dict[str, Any]:
        """One SGD over every trainable parameter."""
        params = [p for p in module.parameters() if p.requires_grad]
        return {"optimizer": torch.optim.SGD(params, lr=self.lr)}


class PlainSGD(torch.optim.SGD):
    """Stands in for the warm start's AdamW: a first Adam step is about ``lr * sign(grad)``, which
    flips on gradients that are zero up to rounding; SGD's step is the gradient itself."""

    def __init__(self, params: Any, lr: float, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr=lr)


class FixedEngine(InProcessEngine):
    """Deterministic rollouts: the response to sample ``i`` of a prompt is a function of the prompt's
    id and ``i`` (1-3 digits, then the stop token) with fixed log-probabilities, whichever rank or
    process rolls it out."""

    async def generate(self, request: RolloutRequest, prompt: Any = None) -> Completion:
        tokenizer = self.prompts.tokenizer
        key = int(request.sample.id.rsplit("-", 1)[1]) * 3 + len(request.sample.source) + request.index
        text = " ".join(str((key + j) % 10) for j in range(1 + key % 3))
        ids = [*tokenizer.encode(text, add_special_tokens=False), self.prompts.stop_token_ids()[0]]
        logprobs = [-2.0 - 0.25 * ((key + j) % 5) for j in range(len(ids))]
        return Completion(request, text, "stop", len(ids), self.weights_version, ids, logprobs)


def _reward(sample: Any, response: str, metadata: Any) -> float:
    return float(sum(int(c) for c in response.split()) % 3)


class CountedReward(RewardFunction):
    """``_reward`` with the reward system's per-source counters (``log_dict``), which each rank keeps
    for its own share and the stage sums over the ranks."""

    def __init__(self) -> None:
        super().__init__(_reward)
        self.scored: dict[str, int] = {}

    async def score_async(self, sample: Any, response: str, metadata: Any) -> Any:
        self.scored[sample.source] = self.scored.get(sample.source, 0) + 1
        return await super().score_async(sample, response, metadata)

    def log_dict(self) -> dict[str, float]:
        return {f"rewards/samples/{src}/count": float(n) for src, n in sorted(self.scored.items())}


def _prompts(root: Path) -> TaskPrompts:
    cats = [Counting(seed=0, data_dir=str(root)), OCR(seed=0, data_dir=str(root))]
    prompts = TaskPrompts(TaskMix(cats, {"counting": 1.0, "ocr": 1.0}, num_samples=GROUPS))
    prompts.reward_system = CountedReward
    return prompts


def _one_update(root: Path, world: int, loss_type: str) -> dict[str, Any]:
    """One RL step of ``MultiTaskRL`` in float64 on ``world`` Lightning processes (this one's view),
    after one warm-start SFT step of 4 samples with ``dapo``: the weight change, the logged metrics
    and this rank's micro-batch sizes."""
    processor = VLMProcessor(packaged_tokenizer(), patch_size=8, merge_size=2, max_num_patches=16)
    rl = MultiTaskRL(
        tiny_vlm(processor).double(),
        processor,
        engine=FixedEngine(),
        loss=ClippedPolicyLoss(loss_type=loss_type),
        group_size=GROUP_SIZE,
        groups_per_step=GROUPS // world,
        max_new_tokens=8,
        max_text_tokens=MAX_TEXT_TOKENS,
        max_grad_norm=0.0,
        optimization=SGD(lr=1.0),
        warmup_sft_steps=1 if loss_type == "dapo" else 0,
        warmup_sft_batch_size=4,
        warmup_sft_lr=0.5,
    )
    before = {k: v.detach().clone() for k, v in rl.policy.state_dict().items()}
    sizes: list[int] = []
    micro_batch_loss = rl.micro_batch_loss

    def record(samples, rows, *args):
        sizes.append(len(rows))
        return micro_batch_loss(samples, rows, *args)

    rl.micro_batch_loss = record
    sft_batches: list[int] = []
    forcing = rl.prompts.teacher_forcing_batch

    def count(prompts, *args, **kwargs):
        if not rl.warm_started:
            sft_batches.append(len(prompts))
        return forcing(prompts, *args, **kwargs)

    rl.prompts.teacher_forcing_batch = count
    strategy = {"devices": world, "strategy": "ddp"} if world > 1 else {}
    fit = trainer(root, max_steps=1, **strategy)
    with mock.patch.object(torch.optim, "AdamW", PlainSGD):
        fit.fit(rl, _prompts(root))
    return {
        "delta": {k: v.detach() - before[k] for k, v in rl.policy.state_dict().items()},
        "metrics": {k: float(v) for k, v in fit.logged_metrics.items()},
        "sizes": sizes,
        "sft_batches": sft_batches,
    }


def _rank_updates(rank: int, world: int, root: str) -> dict[str, Any]:
    # the helper started the process group: Lightning sees an externally launched rank and joins it
    os.environ.update(LOCAL_RANK=str(rank), NODE_RANK="0", WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    return {t: _one_update(Path(root) / t, world, t) for t in LOSS_TYPES}


@pytest.mark.slow
@pytest.mark.distributed
def test_a_two_rank_update_equals_one_process_over_the_gathered_rollouts(tmp_path: Path) -> None:
    """Each rank rolls out half the prompts; after the exchange, the DDP update of the 2 ranks (each
    packing its share into micro-batches of unequal sizes) changes every weight as one process does
    over all the samples, for each loss aggregation; every rank logs the global batch's rollout
    metrics and loss, equal to the one process's. With ``dapo`` a warm-start SFT step comes first,
    each rank on half of its batch: the ranks' summed gradients make the one process's step. About 45 s here (3 Lightning DDP fits and 3 of
    one process)."""
    ranks = run_on_ranks(_rank_updates, WORLD, tmp_path / "dist", str(tmp_path / "ranks"))
    torch.set_num_threads(1)
    for loss_type in LOSS_TYPES:
        single = _one_update(tmp_path / "single" / loss_type, 1, loss_type)
        mine = [r[loss_type] for r in ranks]
        # the test discriminates: micro-batches of unequal sizes
        sizes = [mine[0]["sizes"], mine[1]["sizes"], single["sizes"]]
        assert len({n for split in sizes for n in split}) > 1, sizes
        assert sum(mine[0]["sizes"] + mine[1]["sizes"]) == sum(single["sizes"]) == GROUPS * GROUP_SIZE
        if loss_type == "dapo":  # each rank warm-starts on its half of the SFT batch
            assert single["sft_batches"] == [4] and mine[0]["sft_batches"] == mine[1]["sft_batches"] == [2]
        moved = [k for k, v in single["delta"].items() if v.abs().max() > 0]
        assert moved, loss_type
        for rank in mine:
            for key, delta in single["delta"].items():
                torch.testing.assert_close(rank["delta"][key], delta, rtol=1e-6, atol=1e-9, msg=key)
        logged = single["metrics"]
        for key in ("reward/mean", "reward/counting/mean", "reward/ocr/mean", "pass@1", "samples/count"):
            assert key in logged, key
        for key, value in mine[0]["metrics"].items():  # the ranks log the same plan
            if key.startswith("packing/"):
                assert value == mine[1]["metrics"][key], key
        for rank in mine:
            assert rank["metrics"].keys() == logged.keys()
            for key, value in logged.items():
                if key.startswith(PER_RUN):
                    continue
                assert math.isclose(rank["metrics"][key], value, rel_tol=1e-6, abs_tol=1e-9), (
                    loss_type,
                    key,
                    rank["metrics"][key],
                    value,
                )
        assert logged["samples/count"] == GROUPS * GROUP_SIZE and logged["rollout/groups"] == GROUPS
        scored = sum(v for k, v in logged.items() if k.startswith("rewards/samples/"))
        assert scored == GROUPS * GROUP_SIZE  # the ranks' reward counters, summed
