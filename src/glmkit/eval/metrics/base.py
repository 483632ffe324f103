"""The per-sample metric interface of the evaluation harness and its registry.

A :class:`SampleMetric` scores one model output against one :class:`~glmkit.eval.sample.Sample`
and returns a :class:`MetricOutput`: a headline score under the metric's ``key`` plus any
sub-scores under ``"<key>.<name>"`` (e.g. ``grounding`` and ``grounding.iou``). A metric that has
to fall back (an LLM judge that fails, a page that cannot be rendered) still returns a score and
sets ``failure`` to the reason, so the run goes on and the summary counts the failures.

Each metric also knows how to write a perfect answer (:meth:`SampleMetric.oracle`), which the
``oracle`` adapter uses for smoke tests of the harness.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from glmkit.eval.sample import Sample
from glmkit.registry import declare

METRICS = declare("metrics", "per-sample evaluation metrics (glmkit eval)")


@dataclass
class MetricOutput:
    """Scores of one sample (higher is better), details for the log, and an optional failure."""

    scores: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None


class SampleMetric(ABC):
    """Base class of harness metrics. Subclasses set ``name`` and implement :meth:`score`.

    Args:
        key: the name the scores are reported under (defaults to ``name``); set it when one
            benchmark uses the same metric twice with different settings.
    """

    name: ClassVar[str]
    lower_is_better: ClassVar[tuple[str, ...]] = ()
    """Sub-score names that are distances, so summaries label their columns."""

    def __init__(self, key: str | None = None) -> None:
        self.key = key or self.name

    def check_answer(self, sample: Sample) -> None:  # noqa: B027 - optional hook
        """Raise ``ValueError`` when ``sample.answer`` has a shape this metric cannot score."""

    @abstractmethod
    def score(self, prediction: str, sample: Sample) -> MetricOutput:
        """Score ``prediction`` (the model's raw text) against ``sample``."""

    def oracle(self, sample: Sample) -> str:
        """A prediction that earns full marks (used by the ``oracle`` adapter)."""
        answer = sample.answer
        if isinstance(answer, list) and answer:
            answer = answer[0]
        return str(answer)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (a browser, a client)."""

    def describe(self) -> dict[str, Any]:
        """Settings recorded in the run summary."""
        return {"name": self.name, "key": self.key}

    def _out(self, primary: float, details: dict[str, Any] | None = None, **sub: float) -> MetricOutput:
        scores = {self.key: float(primary)}
        scores.update({f"{self.key}.{k}": float(v) for k, v in sub.items()})
        return MetricOutput(scores=scores, details=details or {})


def reference_answers(answer: Any) -> list[str]:
    """A sample's answer as a non-empty list of reference strings (lists mean 'any of these')."""
    if isinstance(answer, dict) and "answers" in answer:
        answer = answer["answers"]
    elif isinstance(answer, dict) and "answer" in answer:
        answer = answer["answer"]
    refs = answer if isinstance(answer, list) else [answer]
    if not refs:
        raise ValueError("the answer list is empty")
    out = []
    for ref in refs:
        if isinstance(ref, (dict, list)) or ref is None:
            raise ValueError(f"expected a string or number (or a list of them), got {ref!r}")
        out.append(str(ref))
    return out
