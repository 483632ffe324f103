"""The reward system's routes, read from the task categories (report section 2.4).

Each category names its verifiers (eval metric specs) and how they combine; this module gathers
them into one :class:`~glmkit.rl.rewards.RewardSystem` spec: the verifiers by name (shared when two
categories name the same verifier with the same spec), one route per category name (the reward
system routes each sample by its ``category``), and the score keys (IoU rather than Acc@0.5 for
grounding). :func:`reward_system_spec` gives the ``class_path`` / ``init_args`` mapping, so a
recipe or a log shows exactly what scores each category; :func:`build_reward_system` builds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from glmkit.rl.gym.category import TaskCategory, VerifierSpec

if TYPE_CHECKING:
    from glmkit.rl.rewards import RewardSystem

REWARD_SYSTEM = "glmkit.rl.rewards.system.RewardSystem"


def reward_routes(
    categories: Sequence[TaskCategory],
) -> tuple[dict[str, VerifierSpec], dict[str, dict[str, Any]]]:
    """``(verifiers by name, route by category name)`` of ``categories``.

    Raises:
        ValueError: two categories give one verifier name different specs, or two instances of one
            category name route it differently.
    """
    if not categories:
        raise ValueError("reward_routes needs at least one task category")
    specs: dict[str, VerifierSpec] = {}
    owner: dict[str, str] = {}
    routes: dict[str, dict[str, Any]] = {}
    for category in categories:
        if not isinstance(category, TaskCategory):
            raise TypeError(f"expected TaskCategory instances, got {type(category).__name__}: {category!r}")
        for name, spec in category.verifiers().items():
            if name in specs and specs[name] != spec:
                raise ValueError(
                    f"verifier {name!r} is {specs[name]} for category {owner[name]!r} but {spec} for "
                    f"{category.name!r}; give one of them another name"
                )
            specs.setdefault(name, spec)
            owner.setdefault(name, category.name)
        route = category.rewards()
        if category.name in routes and routes[category.name] != route:
            raise ValueError(
                f"two {category.name!r} categories route their rewards differently ({routes[category.name]} "
                f"and {route}); the reward system routes by category name"
            )
        routes[category.name] = route
    return specs, routes


def reward_system_spec(categories: Sequence[TaskCategory], **init_args: Any) -> dict[str, Any]:
    """The ``{"class_path": RewardSystem, "init_args": ...}`` spec that rewards ``categories``.

    ``init_args`` add to or override the reward system's arguments (``on_failure``,
    ``process_verifiers``, ``sources``, ...); ``score_keys`` given here are merged with the
    categories'.
    """
    specs, routes = reward_routes(categories)
    score_keys = {name: spec.score_key for name, spec in specs.items() if spec.score_key}
    extra = dict(init_args)
    score_keys.update(extra.pop("score_keys", None) or {})
    args: dict[str, Any] = {
        "verifiers": {name: spec.spec() for name, spec in specs.items()},
        "categories": routes,
        "score_keys": score_keys,
    }
    args.update(extra)
    return {"class_path": REWARD_SYSTEM, "init_args": args}


def build_reward_system(categories: Sequence[TaskCategory], **init_args: Any) -> RewardSystem:
    """Build the reward system of :func:`reward_system_spec` (verifiers from the ``metrics`` registry)."""
    from glmkit.rl.rewards.system import load_reward_system

    return load_reward_system(reward_system_spec(categories, **init_args))
