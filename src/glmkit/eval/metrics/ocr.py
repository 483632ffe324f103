"""OCR edit-distance metrics: normalised edit distance (report section 5); ANLS lives in
:mod:`~glmkit.eval.metrics.anls`, OCRBench in :mod:`~glmkit.eval.metrics.ocrbench`.

NED = Levenshtein(pred, ref) / max(len(pred), len(ref)), in [0, 1], 0 for identical strings (two
empty strings have NED 0). The harness reports the similarity 1 - NED so that higher is better,
and keeps NED itself under ``<key>.ned``. With several references the best one counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torchmetrics import Metric

from glmkit.eval.metrics.base import METRICS, reference_answers, scorer_info
from glmkit.eval.metrics.text import extract_answer, levenshtein, normalize_whitespace, strip_thinking
from glmkit.scoring import Sample, Scores, Verifier

WhitespaceMode = Literal["keep", "collapse", "remove"]


def normalize_ocr(text: str, *, lowercase: bool = False, whitespace: WhitespaceMode = "collapse") -> str:
    """Normalise text before comparison: optional lowercasing; whitespace kept, collapsed or removed."""
    text = str(text)
    if lowercase:
        text = text.lower()
    if whitespace == "collapse":
        text = normalize_whitespace(text)
    elif whitespace == "remove":
        text = "".join(text.split())
    elif whitespace != "keep":
        raise ValueError(f"whitespace={whitespace!r}; valid: keep, collapse, remove")
    return text


def normalized_edit_distance(
    pred: str, ref: str, *, lowercase: bool = False, whitespace: WhitespaceMode = "collapse"
) -> float:
    """Levenshtein distance divided by the longer length, after :func:`normalize_ocr`."""
    pred = normalize_ocr(pred, lowercase=lowercase, whitespace=whitespace)
    ref = normalize_ocr(ref, lowercase=lowercase, whitespace=whitespace)
    longest = max(len(pred), len(ref))
    return levenshtein(pred, ref) / longest if longest else 0.0


@METRICS.register("ocr_ned")
class EditDistanceScorer(Verifier):
    """1 - normalised edit distance to the closest reference (``<key>.ned`` holds the distance).

    Args:
        lowercase: compare case-insensitively.
        whitespace: ``collapse`` runs to one space, ``remove`` all whitespace, or ``keep`` as is.
        extract: score the final answer (see :func:`extract_answer`) rather than the whole output
            (thinking is removed either way).
    """

    name = "ocr_ned"
    lower_is_better = ("ned",)

    def __init__(
        self,
        lowercase: bool = False,
        whitespace: WhitespaceMode = "collapse",
        extract: bool = True,
        key: str | None = None,
    ) -> None:
        super().__init__(key)
        normalize_ocr("", whitespace=whitespace)  # validates the mode early
        self.lowercase = lowercase
        self.whitespace = whitespace
        self.extract = extract

    def check_answer(self, sample: Sample) -> None:
        reference_answers(sample.answer)

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        text = extract_answer(response) if self.extract else strip_thinking(response)
        neds = [
            normalized_edit_distance(text, ref, lowercase=self.lowercase, whitespace=self.whitespace)
            for ref in reference_answers(sample.answer)
        ]
        ned = min(neds)
        return self._out(1.0 - ned, {"extracted": text}, ned=ned)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "lowercase": self.lowercase,
            "whitespace": self.whitespace,
            **scorer_info("glmkit 1 - normalised edit distance", "glmkit"),
        }


class NormalizedEditDistance(Metric):
    """Mean normalised edit distance over string pairs, synchronised across processes (lower is better)."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = False

    def __init__(
        self, lowercase: bool = False, whitespace: WhitespaceMode = "collapse", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.lowercase = lowercase
        self.whitespace = whitespace
        self.add_state("ned_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Sequence[str], targets: Sequence[str]) -> None:
        """Accumulate a batch of (prediction, reference) strings."""
        if len(preds) != len(targets):
            raise ValueError(f"{len(preds)} predictions but {len(targets)} references")
        for pred, ref in zip(preds, targets, strict=True):
            self.ned_sum += normalized_edit_distance(
                pred, ref, lowercase=self.lowercase, whitespace=self.whitespace
            )
        self.total += len(preds)

    def compute(self) -> torch.Tensor:
        """Mean NED (0 when nothing was seen)."""
        return self.ned_sum / self.total.clamp(min=1)
