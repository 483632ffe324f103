"""Per-category and per-source settings of the reward system.

- :class:`CategoryRewards`: which verifiers score a task category (format and content roles) and
  the aggregation that combines them;
- :class:`SourcePolicy`: what a data source's sample gets when a verifier fails (a fallback reward,
  or exclusion from its group's baseline), and optionally its own verifiers and aggregation.

Both may be written as plain mappings in a spec; :func:`as_category` and :func:`as_policy` check
the keys and build them.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from glmkit.rl.rewards.aggregation import AGGREGATORS, Aggregator, WeightedSum

FAILURE_POLICIES = ("fallback", "exclude")


@dataclass
class CategoryRewards:
    """The verifiers of one task category and how their scores become the reward.

    Args:
        verifiers: content verifiers (names in the reward system's ``verifiers``); they score 0
            without being asked when the answer is empty.
        format: format verifiers: they run on every response, first, and are the default gate
            of the ``gated`` aggregation.
        aggregator: an :class:`~glmkit.rl.rewards.aggregation.Aggregator`, a registered name
            (``weighted_sum``, ``min``, ``product``, ``gated``) or a ``class_path`` spec; default
            a weighted sum with weights 1.
    """

    verifiers: list[str] = field(default_factory=list)
    format: list[str] = field(default_factory=list)
    aggregator: Aggregator | None = None

    def __post_init__(self) -> None:
        if isinstance(self.verifiers, str):
            self.verifiers = [self.verifiers]
        if isinstance(self.format, str):
            self.format = [self.format]
        self.verifiers = list(self.verifiers)
        self.format = list(self.format)
        if self.aggregator is None:
            self.aggregator = WeightedSum()

    @property
    def names(self) -> list[str]:
        """Format verifiers first, then content verifiers."""
        return [*self.format, *self.verifiers]


@dataclass
class SourcePolicy:
    """What the samples of one data source get when a verifier or judge fails on them.

    Args:
        on_failure: ``"fallback"``: the sample's reward is ``fallback_reward``; ``"exclude"``: its
            reward is NaN and it is left out of its group's baseline (advantage 0).
        fallback_reward: the reward under ``"fallback"``.
        rewards: verifiers and aggregation for this source's samples, overriding their category's.
    """

    on_failure: Literal["fallback", "exclude"] = "fallback"
    fallback_reward: float = 0.0
    rewards: CategoryRewards | None = None

    def __post_init__(self) -> None:
        if self.on_failure not in FAILURE_POLICIES:
            raise ValueError(
                f"on_failure must be one of {', '.join(FAILURE_POLICIES)}, got {self.on_failure!r}"
            )
        self.fallback_reward = float(self.fallback_reward)
        if not math.isfinite(self.fallback_reward):
            raise ValueError(f"fallback_reward must be finite, got {self.fallback_reward!r}")


T = TypeVar("T")


def _from_mapping(cls: type[T], value: Any, where: str) -> T:
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"{where}: expected a {cls.__name__} or a mapping, got {type(value).__name__}")
    valid = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for key in value:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{where}: unknown key {key!r}.{hint} Valid keys: {', '.join(valid)}")
    try:
        return cls(**value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def as_aggregator(value: Any, where: str) -> Aggregator:
    """An aggregator from an instance, a registered name or a ``class_path`` spec."""
    if isinstance(value, Aggregator):
        return value
    if value is None:
        return WeightedSum()
    if isinstance(value, str):
        return AGGREGATORS.get(value)()
    if isinstance(value, Mapping) and "class_path" in value:
        from glmkit.config import instantiate

        built = instantiate(value, "reward_aggregators", where=where)
        if not isinstance(built, Aggregator):
            raise TypeError(f"{where}: {value['class_path']!r} is not an Aggregator")
        return built
    raise TypeError(
        f"{where}: expected an Aggregator, a registered name ({', '.join(AGGREGATORS.names())}) or a "
        f"class_path spec, got {value!r}"
    )


def as_category(value: Any, where: str) -> CategoryRewards:
    """A :class:`CategoryRewards` from an instance or a mapping (its ``aggregator`` built)."""
    if isinstance(value, Mapping) and "aggregator" in value:
        value = {**value, "aggregator": as_aggregator(value["aggregator"], f"{where}.aggregator")}
    category = _from_mapping(CategoryRewards, value, where)
    category.aggregator = as_aggregator(category.aggregator, f"{where}.aggregator")
    for label, names in (("verifiers", category.verifiers), ("format", category.format)):
        if not all(isinstance(n, str) for n in names):
            raise ValueError(f"{where}.{label} must be a list of verifier names, got {names!r}")
    return category


def as_policy(value: Any, where: str) -> SourcePolicy:
    """A :class:`SourcePolicy` from an instance or a mapping (its ``rewards`` built)."""
    if isinstance(value, Mapping) and value.get("rewards") is not None:
        value = {**value, "rewards": as_category(value["rewards"], f"{where}.rewards")}
    policy = _from_mapping(SourcePolicy, value, where)
    if policy.rewards is not None:
        policy.rewards = as_category(policy.rewards, f"{where}.rewards")
    return policy


def check_names(names: Sequence[str], known: Sequence[str], where: str) -> None:
    """Raise naming ``where`` when a verifier name is not among ``known``."""
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"{where}: unknown verifier {name!r}.{hint} The reward system's verifiers: "
                f"{', '.join(known) or '(none)'}"
            )
