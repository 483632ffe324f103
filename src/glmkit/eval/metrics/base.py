"""The registry of evaluation metrics, which are the built-in verifiers, and their shared helpers.

A metric is a :class:`~glmkit.scoring.verifier.Verifier`: it scores one model response against
one :class:`~glmkit.scoring.sample.Sample` (``score(sample, response, metadata=None)``, or
``await ascore(...)``) and returns :class:`~glmkit.scoring.verifier.Scores`: a headline score under
the metric's ``key`` plus any sub-scores under ``"<key>.<name>"`` (``grounding`` and
``grounding.iou``). A metric that has to fall back (an LLM judge that fails, a page that cannot be
rendered) still returns a score and sets ``failure`` to the reason, so the run goes on and the
summary counts the failures. The RL reward system calls the same objects.

Each metric also knows how to write a perfect answer (:meth:`~glmkit.scoring.verifier.Verifier.oracle`),
which the ``oracle`` adapter uses for smoke tests of the harness.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from glmkit.registry import declare
from glmkit.scoring import Verifier

METRICS = declare(
    "metrics",
    "per-sample evaluation metrics, the built-in verifiers (glmkit eval, RL rewards)",
    base=Verifier,
)


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


def scorer_info(
    scorer: str,
    variant: str = "reference",
    not_comparable: Sequence[str] = (),
    why_not_comparable: str | None = None,
) -> dict[str, Any]:
    """The entries a metric adds to its ``describe()`` so that a summary names the scorer of each column.

    Args:
        scorer: what computes the score: for a parity metric the reference file and function it
            reproduces (``"VLMEvalKit vlmeval/dataset/utils/vqa_eval.py: relaxed_correctness"``).
        variant: ``"reference"`` (reproduces that scorer), ``"lenient"`` (a glmkit variant that
            accepts more answers; never registered under a benchmark's name) or ``"glmkit"``
            (glmkit's own protocol, with no published reference).
        not_comparable: score keys whose values cannot be compared with published numbers (an
            offline stand-in ran); the summary marks those columns.
        why_not_comparable: the reason, printed under the table.
    """
    info: dict[str, Any] = {"scorer": scorer, "variant": variant}
    if not_comparable:
        info["not_comparable"] = list(not_comparable)
        info["why_not_comparable"] = why_not_comparable or "an offline stand-in replaced part of the scorer"
    return info
