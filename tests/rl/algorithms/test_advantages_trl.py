"""``GRPO`` and ``RLOO`` advantages side by side with TRL's on the same rewards.

TRL has no advantage function: ``GRPOTrainer`` and ``RLOOTrainer`` compute advantages inline in
``_generate_and_score_completions`` (trl 1.16: ``trainer/grpo_trainer.py`` lines 2754-2810,
``trainer/rloo_trainer.py`` lines 1648-1699). The test runs that whole method, unchanged, on a
stand-in trainer whose ``_generate`` hands back one-token completions and whose
``_calculate_rewards`` hands back the test's rewards in float64 (TRL's own casts a reward
function's output to float32), so TRL's grouping (a positional ``view(-1, num_generations)``),
``nanstd`` and ``1e-4`` epsilon decide the reference. glmkit must give the same per-sample
advantages for every ``scale_rewards``, with equal-reward groups and unscored (NaN) samples, and,
since it groups by prompt id, the same advantages for the samples in any order.

The stand-in runs TRL with float64 as torch's default dtype: TRL's ``nanstd`` (``trainer/utils.py``
line 1041) divides integer counts for the Bessel factor ``count / (count - 1)``, which comes out in
the default dtype, so under float32 it rounds 4/3 and the std of float64 rewards is off by about
1e-8 relative. That is TRL's precision, not a convention; float64 lets the tolerance stay at 1e-12.

glmkit's defaults differ from TRL's by design (docs/rl.md, "Std convention and size-1 groups"):
``eps`` is 1e-6 (verl, slime) against TRL's 1e-4, and ``std="population"`` is offered next to
TRL's Bessel-corrected one; the convention test checks both against TRL's value converted.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from glmkit.rl.algorithms import GRPO, RLOO

trl_grpo = pytest.importorskip("trl.trainer.grpo_trainer", reason="TRL is not installed")
trl_rloo = pytest.importorskip("trl.trainer.rloo_trainer", reason="TRL is not installed")
trl_utils = pytest.importorskip("trl.trainer.utils", reason="TRL is not installed")

TRL_EPS = 1e-4  # hard-coded in both trainers (grpo_trainer.py line 2787, rloo_trainer.py line 1696)
NAN = float("nan")


class _Accelerator:
    """The parts of ``accelerate.Accelerator`` the scoring method touches, for one process."""

    device = torch.device("cpu")
    num_processes = 1
    process_index = 0

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def reduce(self, x: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        return x


class _StandIn:
    """What ``_generate_and_score_completions`` reads of a trainer (TRL's defaults, one reward function).

    ``_calculate_rewards`` returns ``rewards`` as the one reward function's column; generation and
    the model's log-probs are one zero token per sample, which the advantages never see.
    """

    def __init__(self, rewards: torch.Tensor, num_generations: int, **settings: Any) -> None:
        self.rewards = rewards
        self.num_generations = self.num_generations_eval = num_generations
        self.accelerator = _Accelerator()
        self.model = SimpleNamespace(training=True, is_gradient_checkpointing=False)
        self.args = SimpleNamespace(
            per_device_train_batch_size=rewards.numel(),
            steps_per_generation=1,
            gradient_accumulation_steps=1,
            gradient_checkpointing_kwargs=None,
        )
        self._tokenizer = SimpleNamespace(pad_token_id=0)
        self.pad_to_multiple_of = None
        self.mask_truncated_completions = False
        self.environment_factories = self.environments = self.tools = None
        self.num_iterations = 1
        self.use_vllm = self.vllm_importance_sampling_correction = False
        self.beta = 0.0
        self.reward_clip_range = None
        self.multi_objective_aggregation = "sum_then_normalize"
        self.reward_weights = torch.ones(1, dtype=torch.float64)
        self.reward_func_names = ["reward"]
        self.log_multimodal = False
        self._metrics: dict[str, Any] = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._logs: dict[str, Any] = defaultdict(list, rewards=defaultdict(list), extra=defaultdict(list))
        self._pending_extra_logs: dict[str, Any] = {}
        self._pending_metrics: dict[str, Any] = {}
        for name, value in settings.items():
            setattr(self, name, value)

    def _completions(self, prompts: list[str]) -> tuple[list[list[int]], list[list[int]], list[str]]:
        return [[1] for _ in prompts], [[2] for _ in prompts], ["" for _ in prompts]

    def _calculate_rewards(self, inputs: Any, prompts: Any, completions: Any, ids: Any) -> torch.Tensor:
        return self.rewards[:, None].clone()  # N, 1 reward function

    def _get_per_token_logps_and_entropies(
        self, model: Any, ids: torch.Tensor, *args: Any, **kwargs: Any
    ) -> Any:
        return torch.zeros(ids.shape[0], 1, dtype=torch.float64), None, None


class _GRPOStandIn(_StandIn):
    score = trl_grpo.GRPOTrainer._generate_and_score_completions

    def _generate(self, prompts: list[str]) -> tuple[Any, ...]:
        prompt_ids, completion_ids, completions = self._completions(prompts)
        # prompt ids, completion ids, tool mask, completions, sampling logps, extra fields, images, tool images
        return prompt_ids, completion_ids, None, completions, None, {}, None, None


class _RLOOStandIn(_StandIn):
    score = trl_rloo.RLOOTrainer._generate_and_score_completions

    def _generate(self, prompts: list[str]) -> tuple[Any, ...]:
        return self._completions(prompts)


@contextmanager
def _float64_default() -> Iterator[None]:
    """TRL's integer-count ratios in float64 (see the module docstring), then the old default back."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _trl_advantages(stand_in: type[_StandIn], rewards: torch.Tensor, num_generations: int, **settings: Any):
    """TRL's advantages ``[N]`` for rewards laid out as ``num_generations`` samples per prompt in a row."""
    trainer = stand_in(rewards, num_generations, **settings)
    inputs = [{"prompt": f"prompt-{i // num_generations}"} for i in range(rewards.numel())]
    with _float64_default():
        return trainer.score(inputs)["advantages"]


def _rewards(case: str) -> tuple[torch.Tensor, int]:
    """Rewards ``[P * G]`` for P prompts of G samples each, contiguous, and G."""
    g = torch.Generator().manual_seed(sum(map(ord, case)))
    if case == "binary":  # 5 prompts x 4 of 0/1: one group all 1 (zero std), one [1, 0, 0, 1]
        rewards = (torch.rand(5, 4, generator=g) < 0.5).double()
        rewards[0] = 1.0
        rewards[1] = torch.tensor([1.0, 0.0, 0.0, 1.0])
    elif case == "continuous":  # 3 prompts x 8
        rewards = torch.randn(3, 8, generator=g, dtype=torch.float64) * 2 + 1
    elif case == "pairs":  # 6 prompts x 2
        rewards = torch.randn(6, 2, generator=g, dtype=torch.float64)
    elif case == "narrow":  # 2 prompts x 16, std about 1e-3: the epsilon matters
        rewards = 0.5 + torch.randn(2, 16, generator=g, dtype=torch.float64) * 1e-3
    elif case == "one_prompt":  # 1 prompt x 5: group and batch statistics coincide
        rewards = torch.randn(1, 5, generator=g, dtype=torch.float64)
    elif case == "unscored":  # 4 prompts x 3 with NaN (unscored) samples, one group left with one score
        rewards = torch.randn(4, 3, generator=g, dtype=torch.float64)
        rewards[1, 2] = NAN
        rewards[2, :2] = NAN
    else:
        raise ValueError(case)
    return rewards.flatten(), rewards.shape[1]  # P, G -> P * G


def _prompt_ids(num_samples: int, num_generations: int) -> list[str]:
    return [f"prompt-{i // num_generations}" for i in range(num_samples)]


CASES = ["binary", "continuous", "pairs", "narrow", "one_prompt", "unscored"]
SCORED_CASES = [case for case in CASES if case != "unscored"]


@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
@pytest.mark.parametrize("case", CASES)
def test_grpo_equals_trl(case: str, scale_rewards: str) -> None:
    rewards, num_generations = _rewards(case)
    theirs = _trl_advantages(_GRPOStandIn, rewards, num_generations, scale_rewards=scale_rewards)
    estimator = GRPO(scale_rewards=scale_rewards, std="sample", eps=TRL_EPS)
    ours = estimator(rewards, _prompt_ids(rewards.numel(), num_generations))
    assert ours.dtype == theirs.dtype == torch.float64
    assert theirs.abs().sum() > 0  # not all-zero: the comparison has something to compare
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", SCORED_CASES)
def test_grpo_std_convention_against_converted_trl(case: str) -> None:
    # TRL divides by the Bessel std s (trl.trainer.utils.nanstd) plus 1e-4. glmkit's default divides
    # by s + 1e-6; std="population" by s * sqrt((G - 1) / G) + eps. Both convert from TRL's value:
    #   A = A_trl * (s + 1e-4) / (s' + eps)
    rewards, num_generations = _rewards(case)
    theirs = _trl_advantages(_GRPOStandIn, rewards, num_generations, scale_rewards="group")
    with _float64_default():
        s = trl_utils.nanstd(rewards.view(-1, num_generations), dim=1)  # P
    s = s.repeat_interleave(num_generations)  # P -> P * G
    ids = _prompt_ids(rewards.numel(), num_generations)

    default = GRPO()
    assert (default.std, default.eps) == ("sample", 1e-6)  # the documented defaults this test converts to
    torch.testing.assert_close(
        default(rewards, ids), theirs * (s + TRL_EPS) / (s + 1e-6), rtol=1e-12, atol=1e-12
    )

    shrink = math.sqrt((num_generations - 1) / num_generations)
    population = GRPO(std="population", eps=TRL_EPS)(rewards, ids)
    torch.testing.assert_close(
        population, theirs * (s + TRL_EPS) / (s * shrink + TRL_EPS), rtol=1e-12, atol=1e-12
    )
    # the population convention is not TRL's: the comparison above would have caught a swap
    assert not torch.allclose(population, theirs, rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("ids_as_tensor", [False, True])
@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
def test_grpo_shuffled_samples_equal_trl_contiguous(scale_rewards: str, ids_as_tensor: bool) -> None:
    rewards, num_generations = _rewards("continuous")
    theirs = _trl_advantages(_GRPOStandIn, rewards, num_generations, scale_rewards=scale_rewards)
    order = torch.randperm(rewards.numel(), generator=torch.Generator().manual_seed(0))
    prompts = torch.arange(rewards.numel()) // num_generations  # N, contiguous
    if ids_as_tensor:  # unsorted integer ids, not 0..P-1
        ids: Any = (97 - 31 * prompts)[order]
    else:
        ids = [f"prompt-{int(p)}" for p in prompts[order]]
    estimator = GRPO(scale_rewards=scale_rewards, eps=TRL_EPS)
    torch.testing.assert_close(estimator(rewards[order], ids), theirs[order], rtol=1e-12, atol=1e-12)
    # the shuffle mixes TRL's positional groups, so the check above is not order-blind by accident
    positional = _trl_advantages(_GRPOStandIn, rewards[order], num_generations, scale_rewards=scale_rewards)
    assert not torch.allclose(positional, theirs[order])


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_rloo_equals_trl_in_any_order(case: str, normalize: bool) -> None:
    rewards, num_generations = _rewards(case)
    theirs = _trl_advantages(_RLOOStandIn, rewards, num_generations, normalize_advantages=normalize)
    estimator = RLOO(normalize=normalize, eps=TRL_EPS)
    ours = estimator(rewards, _prompt_ids(rewards.numel(), num_generations))
    assert theirs.abs().sum() > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)

    order = torch.randperm(rewards.numel(), generator=torch.Generator().manual_seed(1))
    shuffled_ids = [_prompt_ids(rewards.numel(), num_generations)[i] for i in order]
    torch.testing.assert_close(estimator(rewards[order], shuffled_ids), theirs[order], rtol=1e-12, atol=1e-12)
