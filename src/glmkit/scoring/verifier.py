"""The verifier interface: score one response against one sample, synchronously or asynchronously.

GLM-5V-Turbo's reward system (report section 2.4) orchestrates rule-based verifiers, which run
locally and synchronously, and model-based judges, which run asynchronously against an API. The
evaluation harness scores benchmark predictions with the same components. Both call them through
:class:`Verifier`:

* ``score(sample, response, metadata=None) -> Scores`` (synchronous);
* ``await ascore(sample, response, metadata=None) -> Scores`` (asynchronous; by default the
  synchronous score, run in the calling coroutine; a judge overrides it with a real non-blocking
  request).

:class:`Scores` holds a reward-like float per named score: the headline under the verifier's
``key`` and sub-scores under ``"<key>.<name>"`` (``grounding`` and ``grounding.iou``), higher is
better unless the name is in ``lower_is_better``. A verifier that had to fall back (a judge that
did not answer, a page that could not be rendered) still returns scores and sets ``failure`` to
the reason, so a caller can count, log or exclude the sample; a verifier that raises is a bug the
caller contains (the eval runner records it per sample).

Nothing here imports torch, Lightning or the evaluation harness.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from glmkit.scoring.sample import Sample


@dataclass
class Scores:
    """What a verifier returns for one response.

    Args:
        scores: ``{name: value}``; the headline under the verifier's ``key``, sub-scores under
            ``"<key>.<name>"``.
        details: anything worth logging (the parsed answer, the judge's reply, ...).
        failure: why the verifier could not score properly (the scores are then its fallback);
            ``None`` when it did.
    """

    scores: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None


class Verifier(ABC):
    """Base class of verifiers (eval metrics and RL rewards). Subclasses set ``name`` and
    implement :meth:`score`; an asynchronous one (a judge over HTTP) also overrides :meth:`ascore`.

    Args:
        key: the name the scores are reported under (defaults to ``name``); set it when one
            benchmark or reward uses the same verifier twice with different settings.
    """

    name: ClassVar[str]
    lower_is_better: ClassVar[tuple[str, ...]] = ()
    """Sub-score names that are distances (lower is better), so summaries label them."""

    def __init__(self, key: str | None = None) -> None:
        self.key = key or self.name

    def check_answer(self, sample: Sample) -> None:  # noqa: B027 - optional hook
        """Raise ``ValueError`` when ``sample.answer`` has a shape this verifier cannot score."""

    @abstractmethod
    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        """Score ``response`` (the model's raw text) against ``sample``.

        ``metadata`` is what the caller knows about how the response was produced (tool calls,
        turns, finish reason, ...); verifiers that do not need it ignore it.
        """

    async def ascore(
        self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None
    ) -> Scores:
        """Asynchronous :meth:`score`; the same scores. This default runs :meth:`score` in the
        calling coroutine (rule verifiers are quick; a caller that must not block on a CPU-heavy
        one runs it in a worker)."""
        return self.score(sample, response, metadata)

    def oracle(self, sample: Sample) -> str:
        """A response that earns full marks (smoke tests of a harness or a reward)."""
        answer = sample.answer
        if isinstance(answer, list) and answer:
            answer = answer[0]
        return str(answer)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (a browser, a client)."""

    def describe(self) -> dict[str, Any]:
        """Settings recorded beside the scores (a run summary, an RL log)."""
        return {"name": self.name, "key": self.key}

    def _out(self, primary: float, details: dict[str, Any] | None = None, **sub: float) -> Scores:
        """Scores with ``primary`` under ``key`` and each ``sub`` under ``"<key>.<name>"``."""
        scores = {self.key: float(primary)}
        scores.update({f"{self.key}.{k}": float(v) for k, v in sub.items()})
        return Scores(scores=scores, details=details or {})
