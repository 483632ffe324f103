"""Aggregation strategies: how one sample's verifier scores become one reward (registry
``reward_aggregators``).

Each category of the reward system names its verifiers in two roles: *format* verifiers (is the
response well formed: tags balanced, an answer present) and *content* verifiers (is the answer
right). An aggregator maps ``{verifier: score}`` to a reward:

=================  =============================================================================
``weighted_sum``   ``sum_v w_v * s_v`` (weights default to 1; EasyR1's ``0.9 * acc + 0.1 * fmt``)
``min``            ``min_v s_v``: every verifier must be satisfied
``product``        ``prod_v s_v``
``gated``          the content aggregation (by default a weighted sum of the content verifiers)
                   if every gate verifier (by default: the format verifiers) scores at least
                   ``threshold``, else ``closed_reward``: format must pass before content counts
=================  =============================================================================

A gate lets the reward system skip the content verifiers (a judge call) when the gate is closed.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

from glmkit.registry import declare


class Aggregator(ABC):
    """Maps one sample's verifier scores to its reward."""

    def gate(self, format_names: Sequence[str]) -> tuple[str, ...]:
        """The verifiers that must pass before the others are worth running (none by default)."""
        return ()

    def gate_open(self, scores: Mapping[str, float], format_names: Sequence[str]) -> bool:
        """Whether the content verifiers count, given the gate verifiers' scores."""
        return True

    def check(self, content: Sequence[str], format_names: Sequence[str], where: str) -> None:
        """Raise ``ValueError`` (naming ``where``) when this aggregator cannot serve a category
        with these content and format verifiers."""
        if not content and not format_names:
            raise ValueError(f"{where}: a category needs at least one verifier")

    @abstractmethod
    def __call__(self, scores: Mapping[str, float], format_names: Sequence[str] = ()) -> float:
        """The reward from ``{verifier: score}``; ``format_names`` are the category's format
        verifiers (a gated aggregator reads its gate from them)."""

    def describe(self) -> dict[str, object]:
        """Settings recorded beside the rewards."""
        return {"name": type(self).__name__}


AGGREGATORS = declare(
    "reward_aggregators",
    "strategies that turn one sample's verifier scores into its reward (weighted sum, min, gated, ...)",
    base=Aggregator,
)


@AGGREGATORS.register("weighted_sum")
class WeightedSum(Aggregator):
    """``sum_v w_v * s_v`` over the given scores.

    Args:
        weights: ``{verifier: weight}``; a verifier not named gets ``default_weight``.
        default_weight: the weight of verifiers not in ``weights``.
    """

    def __init__(self, weights: Mapping[str, float] | None = None, default_weight: float = 1.0) -> None:
        self.weights = {str(k): float(v) for k, v in (weights or {}).items()}
        for name, w in self.weights.items():
            if not math.isfinite(w):
                raise ValueError(f"weighted_sum: weight of {name!r} must be finite, got {w!r}")
        if not math.isfinite(default_weight):
            raise ValueError(f"weighted_sum: default_weight must be finite, got {default_weight!r}")
        self.default_weight = float(default_weight)

    def check(self, content: Sequence[str], format_names: Sequence[str], where: str) -> None:
        super().check(content, format_names, where)
        known = [*format_names, *content]
        unknown = sorted(set(self.weights) - set(known))
        if unknown:
            raise ValueError(
                f"{where}: weighted_sum has weights for {unknown}, which are not verifiers of this "
                f"category; its verifiers: {known}"
            )

    def __call__(self, scores: Mapping[str, float], format_names: Sequence[str] = ()) -> float:
        return float(sum(self.weights.get(n, self.default_weight) * s for n, s in scores.items()))

    def describe(self) -> dict[str, object]:
        return {"name": "weighted_sum", "weights": dict(self.weights), "default_weight": self.default_weight}


@AGGREGATORS.register("min")
class MinScore(Aggregator):
    """``min_v s_v``: the reward is the worst verifier's score."""

    def __call__(self, scores: Mapping[str, float], format_names: Sequence[str] = ()) -> float:
        if not scores:
            raise ValueError("min: no scores to aggregate")
        return float(min(scores.values()))

    def describe(self) -> dict[str, object]:
        return {"name": "min"}


@AGGREGATORS.register("product")
class Product(Aggregator):
    """``prod_v s_v``: every verifier scales the reward."""

    def __call__(self, scores: Mapping[str, float], format_names: Sequence[str] = ()) -> float:
        if not scores:
            raise ValueError("product: no scores to aggregate")
        return float(math.prod(scores.values()))

    def describe(self) -> dict[str, object]:
        return {"name": "product"}


@AGGREGATORS.register("gated")
class Gated(Aggregator):
    """Content counts only once the gate passes: ``content(scores of non-gate verifiers)`` if every
    gate verifier scores at least ``threshold``, else ``closed_reward``.

    Args:
        content: aggregates the non-gate verifiers (default: :class:`WeightedSum`, weights 1).
        gate: the gate verifiers (default: the category's format verifiers).
        threshold: the score each gate verifier needs.
        closed_reward: the reward when the gate is closed.
    """

    def __init__(
        self,
        content: Aggregator | None = None,
        gate: Sequence[str] | None = None,
        threshold: float = 1.0,
        closed_reward: float = 0.0,
    ) -> None:
        if content is not None and not isinstance(content, Aggregator):
            raise TypeError(f"gated: content must be an Aggregator, got {type(content).__name__}")
        if isinstance(gate, str):
            gate = [gate]
        self.content = content if content is not None else WeightedSum()
        self.gate_names = tuple(gate) if gate is not None else None
        self.threshold = float(threshold)
        self.closed_reward = float(closed_reward)

    def gate(self, format_names: Sequence[str]) -> tuple[str, ...]:
        return self.gate_names if self.gate_names is not None else tuple(format_names)

    def gate_open(self, scores: Mapping[str, float], format_names: Sequence[str]) -> bool:
        return all(scores[g] >= self.threshold for g in self.gate(format_names))

    def check(self, content: Sequence[str], format_names: Sequence[str], where: str) -> None:
        gate = self.gate(format_names)
        known = [*format_names, *content]
        if not gate:
            raise ValueError(
                f"{where}: gated needs a gate: list the category's format verifiers or set "
                f"init_args.gate (verifiers of this category: {known})"
            )
        unknown = [g for g in gate if g not in known]
        if unknown:
            raise ValueError(f"{where}: gated gate {unknown} are not verifiers of this category: {known}")
        rest = [n for n in known if n not in gate]
        if not rest:
            raise ValueError(f"{where}: gated needs content verifiers besides its gate {list(gate)}")
        rest_format = [n for n in format_names if n not in gate]
        self.content.check([n for n in content if n not in gate], rest_format, f"{where}.content")

    def __call__(self, scores: Mapping[str, float], format_names: Sequence[str] = ()) -> float:
        gate = self.gate(format_names)
        if not self.gate_open(scores, format_names):
            return self.closed_reward
        rest_format = [n for n in format_names if n not in gate]
        return self.content({n: s for n, s in scores.items() if n not in gate}, rest_format)

    def describe(self) -> dict[str, object]:
        return {
            "name": "gated",
            "gate": list(self.gate_names) if self.gate_names is not None else "format",
            "threshold": self.threshold,
            "closed_reward": self.closed_reward,
            "content": self.content.describe(),
        }
