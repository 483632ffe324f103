"""The VLM RL Gym (GLM-5V-Turbo report section 2.3): task categories, their mixture, one environment.

- :mod:`~.category`: :class:`TaskCategory` (registry ``task_categories``): seeded samples
  (:class:`~glmkit.scoring.Sample` with images, question, reference answer, metadata and the
  ``source`` tag) and the eval metrics that verify them (:class:`VerifierSpec`);
- :mod:`~.categories`: the built-in categories: counting, grounding, pointing, OCR, chart values,
  arithmetic, UI-to-code, the GUI ladder (perception, grounding, action, trajectory) and
  ``small_text`` (crop to read);
- :mod:`~.source`: :class:`TaskSource`, a category as a record source of
  :class:`glmkit.data.Mixture`, and :func:`task_mixture` / :func:`sample_from_record`;
- :mod:`~.mix`: :class:`TaskMix`, a recipe's categories and weights: prompts, environment, rewards;
- :mod:`~.environment`: :class:`Environment` (registry ``environments``) and :class:`TaskEnvironment`
  for single-step and multi-step (tool-using) episodes on the agent's turn logic; :func:`run_episode`;
- :mod:`~.rewards`: :func:`build_reward_system` / :func:`reward_system_spec`, the reward system's
  routes read from the categories;
- :mod:`~.gui`: the generated applications behind the GUI ladder and its ``click`` tool.

Names are imported on first use, so ``import glmkit.rl.gym`` is cheap; nothing here imports Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "TASK_CATEGORIES": "category",
    "Draft": "category",
    "TaskCategory": "category",
    "VerifierSpec": "category",
    "TaskSource": "source",
    "sample_from_record": "source",
    "task_mixture": "source",
    "task_sources": "source",
    "TaskMix": "mix",
    "ENVIRONMENTS": "environment",
    "Environment": "environment",
    "Episode": "environment",
    "StepResult": "environment",
    "TaskEnvironment": "environment",
    "run_episode": "environment",
    "build_reward_system": "rewards",
    "reward_routes": "rewards",
    "reward_system_spec": "rewards",
}

__all__ = [
    "Draft",
    "ENVIRONMENTS",
    "Environment",
    "Episode",
    "StepResult",
    "TASK_CATEGORIES",
    "TaskCategory",
    "TaskEnvironment",
    "TaskMix",
    "TaskSource",
    "VerifierSpec",
    "build_reward_system",
    "reward_routes",
    "reward_system_spec",
    "run_episode",
    "sample_from_record",
    "task_mixture",
    "task_sources",
]

if TYPE_CHECKING:
    from glmkit.rl.gym.category import TASK_CATEGORIES, Draft, TaskCategory, VerifierSpec
    from glmkit.rl.gym.environment import (
        ENVIRONMENTS,
        Environment,
        Episode,
        StepResult,
        TaskEnvironment,
        run_episode,
    )
    from glmkit.rl.gym.mix import TaskMix
    from glmkit.rl.gym.rewards import build_reward_system, reward_routes, reward_system_spec
    from glmkit.rl.gym.source import TaskSource, sample_from_record, task_mixture, task_sources


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'glmkit.rl.gym' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"glmkit.rl.gym.{module}"), name)
    globals()[name] = value
    return value
