"""A format metric: is the response shaped as the task asks (reasoning, then one final answer)?

RL recipes reward the form of a response apart from its content (EasyR1's ``format_reward``:
``<think>...</think><answer>...</answer>``; VLM-R1's ``format_reward_rec``) and gate content on
it (the ``gated`` aggregation). The content verifiers are the evaluation metrics; this one checks
the shape only, against a regular expression.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from glmkit.eval.metrics.base import METRICS
from glmkit.scoring import Sample, Scores, Verifier

THINK_ANSWER = (
    r"\s*(?:<think>(?:(?!</?think>).)*</think>)?\s*"  # at most one closed reasoning block, first
    r"<answer>(?:(?!</?answer>).)*\S(?:(?!</?answer>).)*</answer>\s*"  # then one non-empty answer
)
"""Optional ``<think>...</think>``, then exactly one non-empty ``<answer>...</answer>``, nothing else."""


@METRICS.register("answer_format")
class AnswerFormat(Verifier):
    """1 when the response matches ``pattern`` (``.`` matches newlines), else 0.

    Args:
        pattern: the regular expression of a well-formed response (default :data:`THINK_ANSWER`).
        match: ``"full"``: the whole response must match; ``"search"``: a match anywhere counts.
        ignore_case: match case-insensitively.
        key: the name the score is reported under.
    """

    name = "answer_format"

    def __init__(
        self,
        pattern: str = THINK_ANSWER,
        match: Literal["full", "search"] = "full",
        ignore_case: bool = False,
        key: str | None = None,
    ) -> None:
        super().__init__(key)
        if match not in ("full", "search"):
            raise ValueError(f"answer_format: match must be 'full' or 'search', got {match!r}")
        try:
            self.regex = re.compile(pattern, re.S | (re.I if ignore_case else 0))
        except re.error as exc:
            raise ValueError(
                f"answer_format: pattern {pattern!r} is not a regular expression: {exc}"
            ) from None
        self.pattern = pattern
        self.match = match

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        text = response or ""
        hit = self.regex.fullmatch(text) if self.match == "full" else self.regex.search(text)
        return self._out(float(hit is not None))

    def oracle(self, sample: Sample) -> str:
        return f"<think>...</think><answer>{super().oracle(sample)}</answer>"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "pattern": self.pattern, "match": self.match}
