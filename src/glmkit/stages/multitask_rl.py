"""Multi-task multimodal RL (GLM-5V-Turbo sections 2.3-2.4): rollouts, verifier rewards, GRPO, one loop.

Each training step of :class:`MultiTaskRL` is the report's RL data flow:

1. **Roll out.** :class:`~glmkit.rl.rollout.RolloutPipeline` draws prompts from the gym's task
   mixture (:class:`TaskPrompts`: categories with per-category weights, every sample tagged with
   its source) and issues ``group_size`` requests per prompt to the rollout engine
   (:class:`~glmkit.rl.rollout.inprocess.InProcessEngine` by default). Each finished request is
   scored at once by the reward system (its completion callback); the step stops early once
   ``complete_fraction`` of the groups is done, and unfinished or surplus groups go to the
   :class:`~glmkit.rl.rollout.PromptCache`, which is saved in checkpoints and restored on resume.
   Under data parallelism each rank rolls out its own share of the prompts (:class:`RankShare`)
   and the ranks exchange their rollouts, so every rank packs the same global batch.
2. **Advantages.** The algorithm (registry ``rl_algorithms``; GRPO by default) turns the rewards
   into per-sample advantages, grouped by prompt id; ``drop_uninformative`` applies DAPO's dynamic
   sampling (all-equal groups are dropped).
3. **Micro-batches.** :func:`glmkit.data.packing.plan_microbatches` packs the samples jointly over
   LLM tokens and ViT patches, balanced across data-parallel ranks.
4. **Loss.** Per micro-batch the policy's token log-probabilities are recomputed by teacher
   forcing (:func:`~glmkit.rl.rollout.inprocess.token_logprobs`, the same prompt rendering as the
   rollout) and fed to the policy loss (:mod:`glmkit.losses.policy`; its ``beta`` weighs a KL term
   to a frozen reference policy, kept on the CPU in :class:`~glmkit.models.frozen.FrozenModels` and
   moved to the accelerator only for its forward; ``reference: initial`` stores its weights in the
   checkpoints, so a resume keeps it). Gradients accumulate over the micro-batches, each weighed
   (:meth:`MultiTaskRL.micro_batch_weight`) so that the update is the one process's over the whole
   global batch, however it is split into micro-batches and ranks; one optimizer step follows.
5. **Weights.** The new weights go to the engine (in-process: the same module, so only the version
   moves; a server engine receives the state dict through its weight-update API).

Per-source metrics (:func:`glmkit.rl.metrics.rollout_metrics`: mean reward, pass@k, response
length, aborts and deferrals, verifier failures), the loss terms and the packing balance are
logged through Lightning's loggers, each describing the global batch (the same on every rank); :class:`~glmkit.stages.PlotMetrics` draws them, and
:class:`~glmkit.stages.export.ExportVLM` exports the trained policy (:meth:`MultiTaskRL.export`).

**Multi-step categories** (tool-using, such as ``small_text``: crop and zoom to read small print)
are rolled out as episodes, one rollout request each: when the task mix holds any, the engine is
wrapped in an :class:`~glmkit.rl.rollout.episodes.EpisodeRunner`, which drives the gym's
:class:`~glmkit.rl.gym.environment.TaskEnvironment` (the agent's turn logic and tool chain, in the
data module's ``tool_format``) and reports the final answer to the reward system like any
response. The trainer sees exactly the tokens the policy generated: the episode's response region
holds the generated tokens (mask 1) and the observations' tokens (tool results, crops' image
placeholders; mask 0: no loss, no KL), and the observation images go through the encoder in the
teacher-forced forward and count in the packing's ViT patches (``docs/rl.md``, "Multi-step
episodes").

``warmup_sft_steps`` first fine-tunes the policy on the categories' reference answers (a short
SFT): it lets the offline quickstart start RL from a policy that already answers in the tasks'
format without another run's checkpoint. A multi-step category trains on its oracle trajectory
when it has one (``oracle_trajectory(sample)``: the replies, tool calls first, the answer last; the
observations in between are masked), else on its final answer given straight after the episode's
opening (the answer format only, not the tool use).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import itertools
import math
import time
from collections import Counter, defaultdict
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from jsonargparse import lazy_instance
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset

from glmkit.agent.formats import get_tool_call_format
from glmkit.data.packing import PackItem, plan_microbatches
from glmkit.losses.policy import ClippedPolicyLoss
from glmkit.models.frozen import FrozenModels
from glmkit.optim import MuonAdamW, OptimizerBuilder
from glmkit.rl.algorithms import GRPO, AdvantageEstimator, informative_groups
from glmkit.rl.gym.category import TaskCategory
from glmkit.rl.gym.environment import TaskEnvironment
from glmkit.rl.gym.mix import TaskMix
from glmkit.rl.rollout import (
    CompletionReward,
    RolloutEngine,
    RolloutPipeline,
    RolloutRequest,
    RolloutScheduler,
    SamplingParams,
    ScoredSample,
    score_completion,
)
from glmkit.rl.rollout.episodes import EpisodeBuilder, EpisodeRunner, EpisodeTrace
from glmkit.rl.rollout.inprocess import ChatPrompts, InProcessEngine, Prompt, token_logprobs
from glmkit.scoring import Sample
from glmkit.stages.base import STAGES, Stage

T = TypeVar("T")
ROLLOUT_STATE = "rollout_state"
RANK_STATES = "rollout_state_per_rank"  # under data parallelism: every rank's rollout state
REFERENCE_STATE = "reference_state"  # ``reference: initial``: the reference's weights


class RankShare(Sequence[Sample]):
    """One data-parallel rank's share of the prompts: dataset indices ``rank, rank + world, ...``.

    Each rank's scheduler rolls out its own share, so the ranks draw disjoint prompts and together
    visit every prompt once per epoch; :meth:`global_id` maps the scheduler's group id
    (``"<epoch>/<index in the share>"``) back to the dataset index, unique across ranks.
    """

    def __init__(self, prompts: Sequence[Sample], rank: int, world: int) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in 0..world-1={world - 1}, got {rank}")
        if len(prompts) < world:
            raise ValueError(
                f"{len(prompts)} prompts cannot be shared by {world} data-parallel ranks; "
                "raise data.init_args.tasks.num_samples"
            )
        self.prompts = prompts
        self.rank = rank
        self.world = world

    def __len__(self) -> int:
        return len(range(self.rank, len(self.prompts), self.world))

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(f"prompt {index} is outside rank {self.rank}'s share of {len(self)}")
        return self.prompts[self.rank + index * self.world]

    def global_id(self, prompt_id: str) -> str:
        """The group id ``"<epoch>/<dataset index>"`` of the share's ``"<epoch>/<index>"``."""
        epoch, index = prompt_id.split("/")
        return f"{epoch}/{self.rank + int(index) * self.world}"


def _all_gather(obj: T, world: int) -> list[T]:
    """Every rank's ``obj`` in rank order (``[obj]`` without a process group)."""
    if world == 1 or not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


# ------------------------------------------------------------------------------------ data
class StepNumbers(IterableDataset):
    """0, 1, 2, ... without end. An iterable dataset: under data parallelism Lightning adds no
    ``DistributedSampler``, which would build the index list of a huge map-style range in memory."""

    def __iter__(self) -> Any:
        return itertools.count()


class TaskPrompts(pl.LightningDataModule):
    """The RL stage's data: the training task mix, an optional held-out mix, the reward settings.

    The training loader yields step numbers (the rollout makes the real batch); the validation
    loader yields one item when ``held_out`` is given, on which the stage scores greedy answers to
    ``held_out_size`` held-out prompts.

    Args:
        tasks: the training categories and their weights (:class:`~glmkit.rl.gym.mix.TaskMix`).
        held_out: held-out prompts (the same categories, another seed or ``stream``), or None.
        held_out_size: held-out prompts scored per validation.
        reward: extra arguments of the reward system (``on_failure``, ``process_verifiers``, ...).
        tool_format: the tool-call format the policy writes in multi-step episodes (a text format:
            ``hermes``, ``glm45``).
        max_turns: overrides the turn limit of every multi-step category (None: each category's).
    """

    def __init__(
        self,
        tasks: TaskMix,
        held_out: TaskMix | None = None,
        held_out_size: int = 32,
        reward: dict[str, Any] | None = None,
        tool_format: str = "hermes",
        max_turns: int | None = None,
    ) -> None:
        super().__init__()
        if held_out_size < 1:
            raise ValueError(f"held_out_size must be >= 1, got {held_out_size}")
        get_tool_call_format(tool_format)  # an unknown name is answered with the registered ones
        if max_turns is not None and max_turns < 1:
            raise ValueError(f"max_turns must be >= 1 or None, got {max_turns}")
        self.tasks = tasks
        self.held_out = held_out
        self.held_out_size = int(held_out_size)
        self.reward_args = dict(reward or {})
        self.tool_format = tool_format
        self.max_turns = max_turns

    def episode_categories(self) -> list[TaskCategory]:
        """The multi-step categories of the training and held-out mixes, one per source."""
        mixes = [self.tasks, *([self.held_out] if self.held_out is not None else [])]
        by_source: dict[str, TaskCategory] = {}
        for mix in mixes:
            for category in mix.categories:
                if category.multi_step:
                    by_source.setdefault(category.source, category)
        return list(by_source.values())

    def reward_system(self) -> Any:
        """The reward system routing the training categories to their verifiers."""
        return self.tasks.reward_system(**self.reward_args)

    def held_out_samples(self) -> list[Sample]:
        """The first ``held_out_size`` held-out prompts."""
        if self.held_out is None:
            return []
        return self.held_out[: min(self.held_out_size, len(self.held_out))]

    def train_dataloader(self) -> DataLoader:
        """Step numbers; each training step rolls out its own batch."""
        return DataLoader(StepNumbers(), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        """One item per validation when ``held_out`` is set, else none."""
        return DataLoader(range(1 if self.held_out is not None else 0), batch_size=None)


# ------------------------------------------------------------------------------------ policy
def load_processor(path: str | Path) -> Any:
    """The processor saved in a policy directory: a :class:`~glmkit.models.vlm_processor.VLMProcessor`
    when its config is there, else the transformers tokenizer."""
    from glmkit.models.vlm_processor import CONFIG_NAME, VLMProcessor

    if (Path(path) / CONFIG_NAME).is_file():
        return VLMProcessor.from_pretrained(path)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def load_policy(path: str | Path, freeze: Sequence[str] | None = None) -> tuple[nn.Module, Any]:
    """A policy and its processor from a ``save_pretrained`` directory: a glmkit VLM (with its
    MTP layers ignored) when ``vlm_config.json`` is there, else a transformers causal LM (an MTP
    export's extra layers expected, :func:`~glmkit.models.mtp.load_language_model`).

    ``freeze``: parameter patterns to freeze (:func:`~glmkit.models.vlm.set_trainable`'s) instead of
    the saved VLM's own; None keeps what was saved (a causal LM: everything trains).
    """
    from glmkit.models.mtp import load_language_model
    from glmkit.models.vlm import VLM_CONFIG_NAME, VisionLanguageModel, set_trainable

    if (Path(path) / VLM_CONFIG_NAME).is_file():
        overrides = {} if freeze is None else {"freeze": list(freeze)}
        return VisionLanguageModel.from_pretrained(path, **overrides), load_processor(path)
    model = load_language_model(path)
    set_trainable(model, list(freeze or ()), False)
    return model, load_processor(path)


async def held_out_rewards(
    engine: RolloutEngine,
    reward: CompletionReward,
    samples: Sequence[Sample],
    params: SamplingParams,
    answers_per_sample: int = 1,
) -> dict[str, list[float]]:
    """Score ``answers_per_sample`` answers per held-out sample (NaN for a failed request),
    grouped by source."""
    futures = [
        engine.submit(RolloutRequest(f"held-out/{i}", k, s, params))
        for i, s in enumerate(samples)
        for k in range(answers_per_sample)
    ]
    completions = await asyncio.gather(*futures)
    scored = await asyncio.gather(*(score_completion(reward, c) for c in completions))
    out: dict[str, list[float]] = defaultdict(list)
    for completion, sample in zip(completions, scored, strict=True):
        failed = completion.finish_reason == "error"
        out[completion.request.sample.source].append(math.nan if failed else sample.reward)
    return dict(out)


def oracle_episode(
    category: TaskCategory,
    sample: Sample,
    prompts: ChatPrompts,
    stop_token_id: int,
    tool_format: str = "hermes",
    max_turns: int | None = None,
) -> EpisodeTrace:
    """A multi-step category's reference episode as the trainer sees one: its oracle trajectory
    (``category.oracle_trajectory(sample, tool_format)``, the replies with their tool calls and the
    final answer last, where the category has one; else the final answer ``category.oracle(sample)``
    alone) run through the environment, each reply tokenized as the policy would write it, the final
    one followed by ``stop_token_id``, the observations masked."""
    trajectory = category.oracle_trajectory(sample, tool_format)
    replies = [category.oracle(sample)] if trajectory is None else list(trajectory)
    if not all(isinstance(r, str) for r in replies):
        raise ValueError(
            f"{category.name}: oracle_trajectory gave native tool calls; episodes need a text tool-call "
            f"format (hermes, glm45), got {tool_format!r}"
        )
    env = TaskEnvironment([category], tool_format, max_turns=max_turns)
    builder = EpisodeBuilder(env, prompts, prompts.stop_token_ids())
    builder.start(sample)
    for k, reply in enumerate(replies):
        ids = prompts.tokenizer.encode(reply, add_special_tokens=False)
        final = k == len(replies) - 1
        if builder.add_turn([*ids, stop_token_id] if final else ids, reply, "stop", ended=final).done:
            break
    assert builder.trace is not None
    return builder.trace


def sft_warm_start(
    policy: nn.Module,
    prompts: ChatPrompts,
    tasks: TaskMix,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    stop_token_id: int,
    offset: int = 0,
    tool_format: str = "hermes",
    max_turns: int | None = None,
    rank: int = 0,
    world: int = 1,
) -> list[float]:
    """Fine-tune ``policy`` for ``steps`` AdamW steps on the categories' reference answers
    (``category.oracle(sample)`` followed by ``stop_token_id``; a multi-step category's
    :func:`oracle_episode`, observations masked, in ``tool_format``); returns the losses (the token
    mean over each global batch of ``batch_size`` samples).

    Under data parallelism (``world`` ranks of the default process group) rank ``rank`` takes
    samples ``rank, rank + world, ...`` of each batch, its loss is its tokens' share of the global
    token mean, and the ranks sum their gradients before the step (:func:`all_reduce_gradients`), so
    every rank takes the step one process would take on the whole batch.
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in 0..world-1={world - 1}, got {rank}")
    if batch_size < world:
        raise ValueError(
            f"warmup_sft_batch_size={batch_size} cannot be shared by {world} data-parallel ranks; "
            f"use at least {world}"
        )
    categories = {c.name: c for c in tasks.categories}
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    device = next(policy.parameters()).device
    tokenizer = prompts.tokenizer
    losses = []
    was_training = policy.training
    policy.train()
    for step in range(steps):
        # this rank's share of the global batch
        samples = [
            tasks[(offset + step * batch_size + j) % len(tasks)] for j in range(rank, batch_size, world)
        ]
        episodes = [
            oracle_episode(categories[s.category], s, prompts, stop_token_id, tool_format, max_turns)
            if categories[s.category].multi_step
            else None
            for s in samples
        ]
        answers = [categories[s.category].oracle(s) for s in samples]
        responses = [
            [*tokenizer.encode(a, add_special_tokens=False), stop_token_id] if e is None else e.token_ids
            for a, e in zip(answers, episodes, strict=True)
        ]
        if any(episodes):
            batch, ids, mask = prompts.teacher_forcing_batch(
                [s if e is None else e.prompt for s, e in zip(samples, episodes, strict=True)],
                responses,
                [None if e is None else e.mask for e in episodes],
                [[] if e is None else e.images for e in episodes],
            )
        else:
            batch, ids, mask = prompts.teacher_forcing_batch(samples, responses)
        batch = {k: v.to(device) for k, v in batch.items()}
        logp = token_logprobs(policy, batch, ids.to(device), mask.to(device))
        tokens = _all_reduce_sum(torch.tensor([float(mask.sum())], dtype=torch.float64), world)
        loss = -logp.sum() / float(tokens[0])  # this rank's share of the global token mean
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        all_reduce_gradients(params, world)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses.append(float(_all_reduce_sum(loss.detach().double().reshape(1).cpu(), world)[0]))
    policy.train(was_training)
    return losses


def _distributed(world: int) -> bool:
    return world > 1 and dist.is_available() and dist.is_initialized()


def _all_reduce_sum(values: Tensor, world: int) -> Tensor:
    """``values`` summed over the ranks (unchanged without a process group)."""
    if _distributed(world):
        dist.all_reduce(values)
    return values


def all_reduce_gradients(params: Sequence[nn.Parameter], world: int) -> None:
    """Sum the gradients of ``params`` over the ``world`` ranks, in place (one flat all-reduce). A
    parameter without a gradient on some rank counts as zero there; one without a gradient on every
    rank keeps none. Each rank's loss must be its share of the global batch's loss."""
    if not _distributed(world):
        return
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32)
    dist.all_reduce(has, op=dist.ReduceOp.MAX)
    live = [p for p, h in zip(params, has.tolist(), strict=True) if h]
    if not live:
        return
    for p in live:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in live])
    dist.all_reduce(flat)
    offset = 0
    for p in live:
        n = p.grad.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n


# ------------------------------------------------------------------------------------ stage
@STAGES.register("multitask_rl")
class MultiTaskRL(Stage):
    """Multi-task RL of a VLM or causal LM with verifier rewards (module docstring).

    Args:
        policy: the policy module (a glmkit VLM or transformers causal LM), or a ``save_pretrained``
            directory (the VLM quickstart's ``runs/quickstart_vlm/vlm``), loaded in training mode.
        policy_freeze: with a directory ``policy``, the parameter patterns to freeze
            (``[encoder]``: RL trains the projector and the LLM) in place of the saved ``freeze``
            (a saved VLM's ``unfreeze`` still applies after it); None keeps the saved setting. A
            policy module comes as it was built (its own ``freeze``).
        processor: the policy's :class:`~glmkit.models.vlm_processor.VLMProcessor` (or a
            tokenizer); None loads it from the ``policy`` directory.
        engine: the rollout engine; an :class:`InProcessEngine` is attached to the policy itself
            (None: ``InProcessEngine()``). With multi-step categories in the task mix, requests go
            through an :class:`~glmkit.rl.rollout.episodes.EpisodeRunner` around it
            (:attr:`rollout_engine`).
        algorithm: the advantage estimator (registry ``rl_algorithms``; None: ``GRPO()``).
        loss: the policy loss (its ``beta`` > 0 needs ``reference``); None: ``ClippedPolicyLoss()``
            (DAPO's clip-higher and token-mean defaults). ``dr_grpo`` without a
            ``max_completion_length`` gets ``max_new_tokens`` (TRL's constant): a micro-batch's
            padded width would make the loss depend on how the batch was packed.
        group_size: samples per prompt.
        groups_per_step: prompt groups per training step and data-parallel rank: each rank rolls
            out its own share of the prompts (:class:`RankShare`) and the ranks train on all of
            them together.
        oversample: extra groups issued per step (complete surplus ones are cached).
        complete_fraction: early abort once this fraction of the groups is complete.
        step_timeout_s: early abort after this many seconds (once a group is complete).
        max_staleness: the prompt cache's age cap in policy versions.
        max_new_tokens, temperature, top_p, stop: the rollout's sampling parameters.
        reference: the KL reference policy: None, ``"initial"`` (a frozen copy of the policy RL
            starts from; its weights are saved in the checkpoints, so a resume keeps it) or a
            ``save_pretrained`` directory.
        reference_offload: keep the reference on the CPU between its forwards.
        drop_uninformative: drop groups whose rewards are all equal before the loss.
        max_text_tokens, max_vit_patches: per-micro-batch caps of the joint packing.
        pass_k: the k values of the logged pass@k (each at most ``group_size``).
        max_grad_norm: gradient clipping (0: none).
        warmup_sft_steps: steps of SFT on the tasks' reference answers before RL (0: none).
        warmup_sft_lr, warmup_sft_batch_size: that SFT's AdamW learning rate and global batch size
            (shared by the data-parallel ranks).
        optimization: optimizer and schedule of the RL updates.
        seed: seed of the prompt order and the sampling.
    """

    def __init__(
        self,
        policy: nn.Module | str,
        processor: Any = None,
        engine: RolloutEngine | None = None,
        algorithm: AdvantageEstimator | None = None,
        loss: ClippedPolicyLoss | None = None,
        group_size: int = 8,
        groups_per_step: int = 8,
        oversample: int = 0,
        complete_fraction: float = 1.0,
        step_timeout_s: float | None = None,
        max_staleness: int | None = 2,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        reference: str | None = None,
        reference_offload: bool = True,
        drop_uninformative: bool = False,
        max_text_tokens: int = 8192,
        max_vit_patches: int = 65536,
        pass_k: list[int] | None = None,
        max_grad_norm: float = 1.0,
        warmup_sft_steps: int = 0,
        warmup_sft_lr: float = 3e-3,
        warmup_sft_batch_size: int = 8,
        optimization: OptimizerBuilder = lazy_instance(MuonAdamW, lr=1e-5),
        seed: int = 0,
        policy_freeze: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.save_component_hparams(["policy", "processor", "engine", "algorithm", "loss", "optimization"])
        engine = engine if engine is not None else InProcessEngine()
        algorithm = algorithm if algorithm is not None else GRPO()
        loss = loss if loss is not None else ClippedPolicyLoss()
        self.automatic_optimization = False  # one rollout batch: several micro-batches, one step
        pass_k = list(pass_k or [1])
        if any(k < 1 or k > group_size for k in pass_k):
            raise ValueError(f"each pass_k must be in 1..group_size={group_size}, got {pass_k}")
        if loss.beta > 0 and reference is None:
            raise ValueError(
                f"loss.beta={loss.beta} weighs a KL term to a reference policy; set reference: initial "
                "(a frozen copy of the starting policy) or a directory, or beta: 0"
            )
        if warmup_sft_steps < 0:
            raise ValueError(f"warmup_sft_steps must be >= 0, got {warmup_sft_steps}")
        if loss.loss_type == "dr_grpo" and loss.max_completion_length is None:
            loss.max_completion_length = max_new_tokens  # Dr. GRPO's L is one constant for every sequence
        if isinstance(policy, str | Path):
            policy, loaded = load_policy(policy, freeze=policy_freeze)
            policy.train()  # from_pretrained gives a model in eval mode (dropout off)
            processor = processor if processor is not None else loaded
        elif policy_freeze is not None:
            raise ValueError(
                "policy_freeze applies to a policy loaded from a directory; a policy module comes with "
                "its own freeze setting (VisionLanguageModel(freeze=...))"
            )
        if processor is None:
            raise ValueError("MultiTaskRL needs the policy's processor when the policy is a module")
        if isinstance(processor, str | Path):
            processor = load_processor(processor)
        self.policy = policy
        self.processor = processor
        self.prompts = ChatPrompts(processor)
        self.engine = engine
        self.algorithm = algorithm
        self.loss = loss
        self.group_size = group_size
        self.groups_per_step = groups_per_step
        self.oversample = oversample
        self.complete_fraction = complete_fraction
        self.step_timeout_s = step_timeout_s
        self.max_staleness = max_staleness
        self.params = SamplingParams(
            max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, stop=tuple(stop or ())
        )
        self.reference_spec = reference
        self.reference_offload = reference_offload
        self.reference: FrozenModels[nn.Module] | None = None
        self.drop_uninformative = drop_uninformative
        self.max_text_tokens = max_text_tokens
        self.max_vit_patches = max_vit_patches
        self.pass_k = pass_k
        self.max_grad_norm = max_grad_norm
        self.warmup_sft_steps = warmup_sft_steps
        self.warmup_sft_lr = warmup_sft_lr
        self.warmup_sft_batch_size = warmup_sft_batch_size
        self.optimization = optimization
        self.seed = seed
        if isinstance(engine, InProcessEngine) and engine.model is None:
            engine.attach(self.policy, processor)
        self._engine_seed = engine.seed if isinstance(engine, InProcessEngine) else 0
        self.rollout_engine: RolloutEngine = engine  # an EpisodeRunner around it with multi-step tasks
        # this step's prompts as the trainer encodes them (prompt_of), by group id and episode or not
        self._step_prompts: dict[tuple[str, bool], Prompt] = {}
        self.pipeline: RolloutPipeline | None = None
        self.reward: Any = None
        self.warm_started = warmup_sft_steps == 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._restored: dict[str, Any] | None = None
        self._reference_state: dict[str, Tensor] | None = None
        self.share: RankShare | None = None

    # ----------------------------------------------------------------------------- plumbing
    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the stage's event loop (rollouts and rewards live there)."""
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    def _datamodule(self) -> TaskPrompts:
        datamodule = getattr(self.trainer, "datamodule", None)
        if not isinstance(datamodule, TaskPrompts):
            raise TypeError(
                f"MultiTaskRL reads its prompts from data: glmkit.stages.multitask_rl.TaskPrompts, got "
                f"{type(datamodule).__name__}"
            )
        return datamodule

    def build_rollout_engine(self, datamodule: TaskPrompts) -> RolloutEngine:
        """The engine requests go to: ``engine``, or, when the data has multi-step categories, an
        :class:`~glmkit.rl.rollout.episodes.EpisodeRunner` around it (built once)."""
        if isinstance(self.rollout_engine, EpisodeRunner):
            return self.rollout_engine
        categories = datamodule.episode_categories()
        if categories:
            self.rollout_engine = EpisodeRunner(
                self.engine,
                categories,
                processor=self.processor,
                tool_format=datamodule.tool_format,
                max_turns=datamodule.max_turns,
            )
        return self.rollout_engine

    def setup_rollout(self, datamodule: TaskPrompts) -> None:
        """Build the reward system, the scheduler and the pipeline (and the reference policy)."""
        self.reward = datamodule.reward_system()
        self.share = RankShare(datamodule.tasks, self.global_rank, self.trainer.world_size)
        if isinstance(self.engine, InProcessEngine):  # each rank's own sampling noise
            self.engine.seed = self._engine_seed + self.global_rank
        scheduler = RolloutScheduler(
            self.build_rollout_engine(datamodule),
            self.reward,
            self.share,
            group_size=self.group_size,
            groups_per_step=self.groups_per_step,
            oversample=self.oversample,
            complete_fraction=self.complete_fraction,
            step_timeout_s=self.step_timeout_s,
            max_staleness=self.max_staleness,
            params=self.params,
            seed=self.seed,
        )
        # the in-process engine generates with the module being trained: no rollout may run ahead
        ahead = 0 if isinstance(self.engine, InProcessEngine) else 1
        self.pipeline = RolloutPipeline(scheduler, max_ahead=ahead)
        if self._restored is not None:
            state, batches = self._restored_rank_state()
            self.pipeline.load_state_dict(state)
            if isinstance(self.engine, InProcessEngine):
                self.engine.batches = batches
            self._restored = None

    def _restored_rank_state(self) -> tuple[dict[str, Any], int]:
        """This rank's rollout state and engine counter from the restored checkpoint."""
        assert self._restored is not None
        world = self.trainer.world_size
        per_rank = self._restored.get(RANK_STATES)
        if per_rank is None and world == 1:
            return self._restored[ROLLOUT_STATE], int(self._restored.get("engine_batches", 0))
        saved = len(per_rank) if per_rank is not None else 1
        if saved != world:
            raise ValueError(
                f"the checkpoint holds the rollout state of {saved} data-parallel rank(s) but this run "
                f"has {world}; resume with the same number of devices (each rank rolls out its own "
                "share of the prompts)"
            )
        state = per_rank[self.global_rank]
        return state[ROLLOUT_STATE], int(state.get("engine_batches", 0))

    def build_reference(self) -> None:
        """The frozen reference policy, on the CPU between uses when ``reference_offload``."""
        if self.reference_spec is None:
            return
        if self.reference_spec == "initial":
            model = copy.deepcopy(self.policy)
            if self._reference_state is not None:  # resumed: the reference of the interrupted run
                model.load_state_dict(self._reference_state)
                self._reference_state = None
        else:
            model = load_policy(self.reference_spec)[0]
        self.reference = FrozenModels({"reference": model}, offload=self.reference_offload)

    def push_weights(self) -> None:
        """Give the engine the weights of the optimizer step just taken (version = ``global_step``)."""
        assert self.pipeline is not None
        weights: Any
        if isinstance(self.engine, InProcessEngine):  # the same module: only the version moves
            same = self.engine.model is self.policy
            weights = None if same else {k: v.detach() for k, v in self.policy.state_dict().items()}
        else:  # a server engine saves the policy (save_pretrained) and has its server load it
            weights = self.policy
        self._run(self.pipeline.update_weights(self.global_step, weights))

    # ----------------------------------------------------------------------------- lightning
    def on_fit_start(self) -> None:
        """Build the rollout machinery (the checkpoint's cache and position restored)."""
        self.setup_rollout(self._datamodule())

    def on_fit_end(self) -> None:
        """Stop the rollout producer and the engine; close the event loop."""
        self.close()

    def close(self) -> None:
        """Stop the rollout producer and the engine and close the stage's event loop (a later
        :meth:`evaluate` opens a new one)."""
        if self._loop is not None and not self._loop.is_closed():
            if self.pipeline is not None:
                self._run(self.pipeline.close())
            self._run(self.rollout_engine.close())  # an EpisodeRunner closes the engine inside it
            self._loop.close()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Save the rollout position, the prompt cache and the engine's sampling counter (of every
        data-parallel rank: a collective, Lightning calls this hook on all ranks), and the weights
        of a ``reference: initial``."""
        if self.pipeline is not None:
            checkpoint[ROLLOUT_STATE] = self.pipeline.state_dict()
            if isinstance(self.engine, InProcessEngine):
                checkpoint["engine_batches"] = self.engine.batches
        elif self._restored is not None:
            checkpoint.update(self._restored)
        if self.pipeline is not None and self.trainer.world_size > 1:
            mine = {ROLLOUT_STATE: checkpoint[ROLLOUT_STATE]}
            mine["engine_batches"] = checkpoint.get("engine_batches", 0)
            checkpoint[RANK_STATES] = _all_gather(mine, self.trainer.world_size)
        checkpoint["warm_started"] = self.warm_started
        if self.reference_spec == "initial":
            if self.reference is not None:
                weights = self.reference["reference"].state_dict()
                checkpoint[REFERENCE_STATE] = {k: v.detach().cpu().clone() for k, v in weights.items()}
            elif self._reference_state is not None:  # resumed, reference not built yet
                checkpoint[REFERENCE_STATE] = self._reference_state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the rollout state for :meth:`setup_rollout` (the pipeline does not exist yet) and
        the reference's weights for :meth:`build_reference`."""
        self.warm_started = bool(checkpoint.get("warm_started", True))
        if self.reference_spec == "initial":
            self._reference_state = checkpoint.get(REFERENCE_STATE)
            if self._reference_state is None:
                rank_zero_warn(
                    "reference: initial, but the checkpoint holds no reference weights (written by an "
                    "older glmkit): the KL reference is a copy of the resumed policy"
                )
            if self.reference is not None:  # restored after the reference was built: rebuild
                self.reference = None
        if ROLLOUT_STATE in checkpoint:
            self._restored = {
                key: checkpoint[key]
                for key in (ROLLOUT_STATE, "engine_batches", RANK_STATES)
                if key in checkpoint
            }
            if self.pipeline is not None:  # restored after fit start: apply now
                self.pipeline = None
                self.setup_rollout(self._datamodule())

    def warm_start(self) -> None:
        """The optional SFT on the tasks' reference answers, once per run (not again on resume)."""
        if self.warm_started:
            return
        start = time.perf_counter()
        stop = self.turn_end_id()
        tasks = self._datamodule().tasks
        losses = sft_warm_start(
            self.policy,
            self.prompts,
            tasks,
            steps=self.warmup_sft_steps,
            batch_size=self.warmup_sft_batch_size,
            lr=self.warmup_sft_lr,
            stop_token_id=stop,
            offset=len(tasks) // 2,  # away from the first prompts RL visits in epoch order
            tool_format=self._datamodule().tool_format,
            max_turns=self._datamodule().max_turns,
            rank=self.global_rank,
            world=self.trainer.world_size,
        )
        self.warm_started = True
        rank_zero_info(
            f"warm start: {self.warmup_sft_steps} SFT steps, loss {losses[0]:.3f} -> {losses[-1]:.3f} "
            f"({time.perf_counter() - start:.0f} s)"
        )

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        """Roll out, score, take advantages, pack, one policy update, push the weights."""
        self.warm_start()
        if self.reference_spec is not None and self.reference is None:
            self.build_reference()  # after the warm start: "initial" is the policy RL starts from
        assert self.pipeline is not None
        rollout = self._run(self.pipeline.next_batch())
        if rollout is None:  # every epoch rolled out
            return None
        samples, prompts = self.gather_rollouts(rollout)  # every rank's, the same on all ranks
        metrics = self.global_rollout_metrics(rollout, samples)
        self._step_prompts = {}
        rewards = torch.tensor([s.reward for s in samples], dtype=torch.float32)
        group_ids = [s.prompt_id for s in samples]
        keep = torch.ones(len(samples), dtype=torch.bool)
        if self.drop_uninformative:
            kept = informative_groups(rewards, group_ids)
            keep, metrics["dynamic_sampling/dropped_groups"] = kept.keep, float(kept.dropped_groups)
        advantages = self.algorithm(rewards, group_ids)
        chosen = [i for i in range(len(samples)) if keep[i] and self.trainable(samples[i], prompts)]
        if isinstance(self.rollout_engine, EpisodeRunner):
            episodes = [s for s in samples if self.rollout_engine.runs_episode(prompts[s.prompt_id])]
            metrics["episodes/count"] = float(len(episodes))
            metrics["episodes/untrainable"] = float(sum(s.token_mask is None for s in episodes))
        loss = self.update(samples, chosen, prompts, advantages, metrics)
        self.push_weights()
        if self.reward is not None and hasattr(self.reward, "log_dict"):
            # each rank's reward system scored its own share: its counts summed over the ranks
            for counts in _all_gather(self.reward.log_dict(), self.trainer.world_size):
                for key, value in counts.items():
                    metrics[key] = metrics.get(key, 0.0) + value
        self.log_dict(metrics, batch_size=1, on_step=True, on_epoch=False)
        self.log("reward", metrics.get("reward/mean", math.nan), prog_bar=True, logger=False, batch_size=1)
        return loss

    def gather_rollouts(self, rollout: Any) -> tuple[list[ScoredSample], dict[str, Sample]]:
        """Every rank's samples (rank order) and prompts, keyed by the dataset-wide group id: each
        rank rolled out its own share, the update packs them all across the ranks. An episode's
        sample carries its mask and observation images with it."""
        assert self.share is not None
        share = self.share
        samples = [dataclasses.replace(s, prompt_id=share.global_id(s.prompt_id)) for s in rollout.samples]
        prompts = {share.global_id(g.prompt_id): g.sample for g in rollout.groups}
        everyone = _all_gather((samples, prompts), self.trainer.world_size)
        all_samples = [s for rank_samples, _ in everyone for s in rank_samples]
        all_prompts = {k: v for _, rank_prompts in everyone for k, v in rank_prompts.items()}
        return all_samples, all_prompts

    def global_rollout_metrics(self, rollout: Any, samples: Sequence[ScoredSample]) -> dict[str, float]:
        """The rollout metrics of the global batch, the same on every rank: per-source reward,
        pass@k, lengths and failures of every rank's ``samples``, the aborted and deferred prompts
        and the ``rollout/`` counts summed over the ranks (``rollout/wall_s``: the slowest rank's)."""
        from glmkit.rl.metrics import rollout_metrics

        counts = {k: v for k, v in rollout.metrics(ks=self.pass_k).items() if k.startswith("rollout/")}
        ranks = _all_gather((counts, rollout.aborted, rollout.deferred), self.trainer.world_size)
        aborted: Counter[str] = Counter()
        deferred: Counter[str] = Counter()
        for _, rank_aborted, rank_deferred in ranks:
            aborted.update(rank_aborted)
            deferred.update(rank_deferred)
        out: dict[str, float] = {}
        if samples:
            out = rollout_metrics(
                rewards=[s.reward for s in samples],
                sources=[s.source for s in samples],
                group_ids=[s.prompt_id for s in samples],
                response_lengths=[s.response_tokens for s in samples],
                verifier_failed=[s.failure is not None for s in samples],
                aborted=dict(aborted),
                deferred=dict(deferred),
                ks=self.pass_k,
            )
        for key in counts:
            values = [rank_counts[key] for rank_counts, _, _ in ranks]
            out[key] = max(values) if key == "rollout/wall_s" else float(sum(values))
        return out

    def prompt_of(self, sample: ScoredSample, prompts: Mapping[str, Sample]) -> Prompt:
        """What the response of ``sample`` answers, built once per group and step: its prompt with
        its images decoded (:meth:`ChatPrompts.with_decoded_images`: packing and teacher forcing
        then read them from disk once), or, for an episode, the episode's opening conversation
        (rebuilt from the prompt; its images are decoded already)."""
        key = (sample.prompt_id, sample.token_mask is not None)
        if key not in self._step_prompts:
            prompt = prompts[sample.prompt_id]
            if sample.token_mask is not None and isinstance(self.rollout_engine, EpisodeRunner):
                self._step_prompts[key] = self.rollout_engine.opening(prompt)
            else:
                self._step_prompts[key] = self.prompts.with_decoded_images(prompt)
        return self._step_prompts[key]

    def trainable(self, sample: ScoredSample, prompts: Mapping[str, Sample]) -> bool:
        """The sample has response tokens, none of them an image placeholder the policy wrote (the
        VLM would read it as an image slot in the teacher-forced forward), and, for a multi-step
        task, its episode's mask (a sample restored from an older checkpoint has none)."""
        ids = self.response_ids(sample)
        if not ids:
            return False
        mask = sample.token_mask
        placeholder = getattr(self.processor, "image_token_id", None)
        if placeholder is not None:
            generated = ids if mask is None else [t for t, m in zip(ids, mask, strict=True) if m]
            if placeholder in generated:
                return False
        runner = self.rollout_engine
        if isinstance(runner, EpisodeRunner) and runner.runs_episode(prompts[sample.prompt_id]):
            return mask is not None
        return True

    def loss_tokens(self, sample: ScoredSample) -> int:
        """The tokens the loss counts: the policy's (an episode's observation tokens are not)."""
        mask = sample.token_mask
        return len(self.response_ids(sample)) if mask is None else sum(mask)

    def micro_batch_weight(
        self, rows: Sequence[int], tokens: int, batch_tokens: int, batch_size: int
    ) -> float:
        """The factor of one micro-batch's loss (``rows`` samples, ``tokens`` loss tokens) that
        makes the step's gradient, summed over this rank's micro-batches and averaged over the
        data-parallel ranks (DDP), that of the loss over the whole global batch (``batch_size``
        samples, ``batch_tokens`` tokens), however it was packed:

        - ``dapo``: 1 (the loss divides by ``batch_tokens / world_size`` itself);
        - ``bnpo``: ``world_size * tokens / batch_tokens``: the token mean over the global batch;
        - ``grpo``, ``dr_grpo``: ``world_size * len(rows) / batch_size``: the mean over every
          sequence of the global batch of the per-sequence loss.
        """
        world = self.trainer.world_size
        if self.loss.loss_type == "dapo":
            return 1.0
        if self.loss.loss_type == "bnpo":
            return world * tokens / max(batch_tokens, 1)
        return world * len(rows) / batch_size

    def update(
        self,
        samples: Sequence[ScoredSample],
        chosen: Sequence[int],
        prompts: Mapping[str, Sample],
        advantages: Tensor,
        metrics: dict[str, float],
    ) -> Tensor:
        """Pack ``chosen`` samples into micro-batches, accumulate the loss of this rank's share
        (:meth:`micro_batch_weight`), one optimizer step. The logged loss and ``train/`` terms
        (token means: clip ratios, KL) are the global batch's, the same on every rank."""
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()
        optimizer.zero_grad()
        world = self.trainer.world_size
        total = torch.zeros((), dtype=torch.float64)
        if len(chosen) >= world:  # every rank needs a micro-batch; else no update
            items = self.pack_items(samples, chosen, prompts)
            plan = plan_microbatches(
                items,
                max_text_tokens=self.max_text_tokens,
                max_vit_patches=self.max_vit_patches,
                dp_size=world,
                min_microbatches_per_rank=1,
            )
            metrics.update(plan.balance())
            mine = plan.steps[0][self.global_rank]
            tokens = sum(self.loss_tokens(samples[i]) for i in chosen)  # every rank's
            sums: dict[str, float] = defaultdict(float)
            for micro in mine:
                rows = [chosen[i] for i in micro]
                out = self.micro_batch_loss(samples, rows, prompts, advantages, tokens)
                mb_tokens = sum(self.loss_tokens(samples[i]) for i in rows)
                scale = self.micro_batch_weight(rows, mb_tokens, tokens, len(chosen))
                self.manual_backward(out.loss * scale)
                total = total + out.loss.detach().cpu().double() * scale
                for key, value in out.metrics.items():  # token means: weighed by the tokens
                    sums[key] += float(value) * mb_tokens / max(tokens, 1)
            keys = sorted(sums)
            shares = torch.tensor([float(total) / world, *(sums[k] for k in keys)], dtype=torch.float64)
            shares = _all_reduce_sum(shares, world)  # every rank logs the global batch's numbers
            total = shares[0]
            metrics.update({f"train/{k}": float(v) for k, v in zip(keys, shares[1:].tolist(), strict=True)})
        if self.max_grad_norm > 0:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.max_grad_norm, gradient_clip_algorithm="norm"
            )
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        metrics["train/loss"] = float(total)
        metrics["train/samples"] = float(len(chosen))
        return total.float()

    def turn_end_id(self) -> int:
        """The id that ends the policy's turn: the rollout engine's first stop id (the ids it was
        given, else the processor's turn ends), so the warm start teaches the turn end the engine
        stops on."""
        return self.rollout_engine.stop_token_ids(self.prompts)[0]

    def response_ids(self, sample: ScoredSample) -> list[int]:
        """The response's token ids: the engine's, else the text tokenized again, for servers that
        return text only; a response that stopped ends with the id the server says stopped it
        (:attr:`ScoredSample.stop_token_id`), else with the engine's turn end."""
        if sample.token_ids is None:
            tokenizer = self.prompts.tokenizer
            ids = tokenizer.encode(sample.response, add_special_tokens=False)
            ended_by = sample.stop_token_id if sample.stop_token_id is not None else self.turn_end_id()
            stop = [ended_by] if sample.finish_reason == "stop" else []
            sample.token_ids, sample.logprobs = [*ids, *stop], None
        return list(sample.token_ids)

    def pack_items(
        self, samples: Sequence[ScoredSample], chosen: Sequence[int], prompts: Mapping[str, Sample]
    ) -> list[PackItem]:
        """One :class:`PackItem` per chosen sample: prompt + response tokens, each image's patches
        (an episode's: its opening's images, then its observations'), counted from the prompt's text
        and image sizes (:meth:`ChatPrompts.size`); only the teacher-forced batch processes the images."""
        sizes: dict[tuple[str, bool], tuple[int, tuple[int, ...]]] = {}
        items = []
        for i in chosen:
            sample = samples[i]
            key = (sample.prompt_id, sample.token_mask is not None)
            if key not in sizes:
                sizes[key] = self.prompts.size(self.prompt_of(sample, prompts))
            length, patches = sizes[key]
            if sample.observation_images:
                patches = (*patches, *self.prompts.patch_counts(sample.observation_images))
            items.append(PackItem(length + len(self.response_ids(sample)), patches, sample.prompt_id))
        return items

    def micro_batch_loss(
        self,
        samples: Sequence[ScoredSample],
        rows: Sequence[int],
        prompts: Mapping[str, Sample],
        advantages: Tensor,
        num_tokens: int,
    ) -> Any:
        """The policy loss of one micro-batch (old log-probs from the engine when it gave them);
        an episode's observation tokens are masked out."""
        chosen = [samples[i] for i in rows]
        responses = [self.response_ids(s) for s in chosen]
        batch, ids, mask = self.prompts.teacher_forcing_batch(
            [self.prompt_of(s, prompts) for s in chosen],
            responses,
            [s.token_mask for s in chosen],  # None, no observation images: a single-step sample
            [s.observation_images for s in chosen],
        )
        batch = {k: v.to(self.device) for k, v in batch.items()}
        ids, mask = ids.to(self.device), mask.to(self.device)
        temperature = self.params.temperature
        logp = token_logprobs(self.policy, batch, ids, mask, temperature)
        old = logp.detach().clone()
        for b, s in enumerate(chosen):
            n = len(responses[b])
            if s.logprobs is not None and len(s.logprobs) == n:  # on the policy's tokens only
                given = torch.tensor(s.logprobs, dtype=old.dtype, device=old.device)
                old[b, :n] = torch.where(mask[b, :n], given, old[b, :n])
        ref = None
        if self.reference is not None:
            with torch.no_grad(), self.reference.on(self.device) as frozen:
                ref = token_logprobs(frozen["reference"], batch, ids, mask, temperature)
        adv = advantages[list(rows)].to(self.device, logp.dtype)
        return self.loss(
            logp,
            old,
            adv,
            mask,
            ref_logprobs=ref,
            num_items_in_batch=num_tokens,
            world_size=self.trainer.world_size,
        )

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Greedy answers to the held-out prompts, mean reward per source (``val/reward/<src>/mean``)."""
        datamodule = self._datamodule()
        rewards = self.evaluate(datamodule.held_out_samples())
        values = [v for vs in rewards.values() for v in vs if not math.isnan(v)]
        logged = {f"val/reward/{src}/mean": _mean(vs) for src, vs in rewards.items()}
        logged["val/reward/mean"] = _mean(values)
        self.log_dict(logged, batch_size=1)

    def evaluate(
        self, samples: Sequence[Sample], temperature: float = 0.0, answers_per_sample: int = 1
    ) -> dict[str, list[float]]:
        """Held-out rewards per source (NaN for a failed request): greedy answers by default, or
        ``answers_per_sample`` samples at ``temperature`` (the policy's expected reward)."""
        if not samples:
            return {}
        if self.reward is None:
            self.reward = self._datamodule().reward_system()
        params = SamplingParams(
            max_new_tokens=self.params.max_new_tokens,
            temperature=temperature,
            top_p=self.params.top_p,
            stop=self.params.stop,
            extra=self.params.extra,
        )
        engine = self.rollout_engine
        datamodule = self._attached_datamodule()
        if datamodule is not None:
            engine = self.build_rollout_engine(datamodule)
        return self._run(held_out_rewards(engine, self.reward, samples, params, answers_per_sample))

    def _attached_datamodule(self) -> TaskPrompts | None:
        """The trainer's :class:`TaskPrompts`, or None without a trainer."""
        try:
            datamodule = getattr(self.trainer, "datamodule", None)
        except RuntimeError:  # not attached to a trainer
            return None
        return datamodule if isinstance(datamodule, TaskPrompts) else None

    def export(self, directory: str | Path, processor: Any = None) -> Path:
        """Write the policy with ``save_pretrained`` and its processor (default: the stage's) beside
        it; :class:`~glmkit.stages.export.ExportVLM` calls this when fit ends."""
        directory = Path(directory)
        processor = processor if processor is not None else self.processor
        if hasattr(self.policy, "vlm_config"):
            self.policy.save_pretrained(directory, processor=processor)
        else:
            self.policy.save_pretrained(str(directory))
            processor.save_pretrained(str(directory))
        return directory


def _mean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


__all__ = [
    "MultiTaskRL",
    "TaskPrompts",
    "held_out_rewards",
    "load_policy",
    "load_processor",
    "all_reduce_gradients",
    "oracle_episode",
    "sft_warm_start",
]
