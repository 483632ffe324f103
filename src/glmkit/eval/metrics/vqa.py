"""glmkit's VQA answer matching: exact, normalised, lenient soft VQA accuracy, numeric tolerance.

These are glmkit's own matchers, more lenient than the benchmarks' reference scorers; none is
registered under a benchmark's name (``vqa`` is VLMEvalKit's VQAv2 accuracy in
:mod:`~glmkit.eval.metrics.vqav2`, ``chartqa`` ChartQA's relaxed accuracy in
:mod:`~glmkit.eval.metrics.chartqa`). The mixed matcher is ``vqa_lenient``, the soft VQA accuracy
without leave-one-out is ``vqa_soft_lenient``.

All scorers first take the final answer out of the model output (thinking removed, then GLM's
``<|begin_of_box|>`` span, ``<answer>``, ``\\boxed{}``; see :func:`~glmkit.eval.metrics.text.extract_answer`), then compare it
with each reference; the best reference counts.

Numbers are parsed with thousands separators (``1,234.5``), signs, currency symbols, exponents and
percent signs. Numeric tolerance is ``|pred - ref| <= max(abs_tol, rel_tol * |ref|)``; ChartQA's
"relaxed accuracy" is ``rel_tol=0.05``. A percentage on one side only (``45%`` vs ``0.45``) also
matches its fraction when ``percent_equivalence`` is on. A reference that is a numeral written as a
string (``"45"``, ``"1,234"``, ``"45%"``) is a number too, as in ChartQA's official relaxed accuracy,
which converts string targets to float; other strings are compared as text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torchmetrics import Metric

from glmkit.eval.metrics.base import METRICS, reference_answers, scorer_info
from glmkit.eval.metrics.text import extract_answer, normalize_vqa, strip_thinking
from glmkit.scoring import Sample, Scores, Verifier

_NUMBER_RE = re.compile(
    r"(?<![\d.])([-+\u2212]?)[$\u20ac\u00a3\u00a5]?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:[eE]([-+]?\d+))?\s*(%|percent\b)?",
    re.I,
)


@dataclass(frozen=True)
class ParsedNumber:
    """A number read from text; ``percent`` is True when it carried ``%`` or ``percent``."""

    value: float
    percent: bool = False


def parse_numbers(text: str) -> list[ParsedNumber]:
    """Every number in ``text`` in order of appearance."""
    out = []
    for m in _NUMBER_RE.finditer(str(text)):
        sign, digits, exponent, percent = m.groups()
        value = float(digits.replace(",", ""))
        if exponent:
            value *= 10.0 ** int(exponent)
        if sign in ("-", "\u2212"):
            value = -value
        out.append(ParsedNumber(value, percent is not None))
    return out


def parse_number(text: Any, which: Literal["first", "last"] = "last") -> ParsedNumber | None:
    """The first or last number in ``text`` (number words such as 'three' count), or None."""
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return ParsedNumber(float(text))
    numbers = parse_numbers(text) or parse_numbers(normalize_vqa(str(text)))
    if not numbers:
        return None
    return numbers[-1] if which == "last" else numbers[0]


def is_numeral(value: Any) -> bool:
    """True for a JSON number or a string that is one number and nothing else (``" 1,234.5 "``, ``"45%"``)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, str) and _NUMBER_RE.fullmatch(value.strip()) is not None


def numeric_match(
    pred: Any, ref: Any, *, rel_tol: float = 0.0, abs_tol: float = 0.0, percent_equivalence: bool = True
) -> bool:
    """True when the number in ``pred`` is within tolerance of the number in ``ref``."""
    p = parse_number(pred)
    r = parse_number(ref, which="first")
    if p is None or r is None:
        return False
    candidates = {p.value}
    if percent_equivalence and p.percent and not r.percent:
        candidates.add(p.value / 100.0)  # "45%" for a reference of 0.45
    elif percent_equivalence and r.percent and not p.percent:
        candidates.add(p.value * 100.0)  # 0.45 for a reference of "45%"
    tol = max(abs_tol, rel_tol * abs(r.value)) + 1e-9 * max(1.0, abs(r.value))
    return any(abs(c - r.value) <= tol for c in candidates)


def exact_match(pred: str, refs: Sequence[str], *, strip: bool = True) -> bool:
    """True when ``pred`` equals some reference character for character (ends stripped by default)."""
    pred = pred.strip() if strip else pred
    return any(pred == (r.strip() if strip else r) for r in refs)


def normalized_match(pred: str, refs: Sequence[str], *, contains: bool = False) -> bool:
    """True when the VQA-normalised ``pred`` equals (or, with ``contains``, holds as whole words) a reference."""
    p = normalize_vqa(pred)
    for ref in refs:
        r = normalize_vqa(ref)
        if p == r or (contains and r and re.search(rf"(?<!\S){re.escape(r)}(?!\S)", p)):
            return True
    return False


def vqa_soft_accuracy(pred: str, refs: Sequence[str]) -> float:
    """VQAv2 accuracy min(1, #matching human answers / 3) over normalised answers."""
    p = normalize_vqa(pred)
    return min(1.0, sum(normalize_vqa(r) == p for r in refs) / 3.0)


@METRICS.register("exact_match")
class ExactMatchScorer(Verifier):
    """1 when the extracted answer equals a reference exactly (surrounding whitespace ignored)."""

    name = "exact_match"

    def __init__(self, extract: bool = True, key: str | None = None) -> None:
        super().__init__(key)
        self.extract = extract

    def check_answer(self, sample: Sample) -> None:
        reference_answers(sample.answer)

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        text = extract_answer(response) if self.extract else strip_thinking(response)
        return self._out(float(exact_match(text, reference_answers(sample.answer))), {"extracted": text})

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **scorer_info("glmkit exact match of the final answer", "glmkit")}


@METRICS.register("normalized_match")
class NormalizedMatchScorer(Verifier):
    """1 when the VQA-normalised answer equals a normalised reference (``contains``: holds it as words)."""

    name = "normalized_match"

    def __init__(self, contains: bool = False, key: str | None = None) -> None:
        super().__init__(key)
        self.contains = contains

    def check_answer(self, sample: Sample) -> None:
        reference_answers(sample.answer)

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        text = extract_answer(response)
        hit = normalized_match(text, reference_answers(sample.answer), contains=self.contains)
        return self._out(float(hit), {"extracted": text})

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **scorer_info("glmkit VQA-style normalised match", "lenient")}


@METRICS.register("vqa_soft_lenient")
class VQASoftLenientScorer(Verifier):
    """Soft VQA accuracy min(1, matching human answers / 3) over glmkit's normalisation.

    Lenient: the official VQAv2 score averages this over the leave-one-out subsets (3 matching
    answers of 10 give 0.9 there, 1.0 here) and normalises differently; that one is ``vqa``.
    """

    name = "vqa_soft_lenient"

    def check_answer(self, sample: Sample) -> None:
        reference_answers(sample.answer)

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        text = extract_answer(response)
        return self._out(vqa_soft_accuracy(text, reference_answers(sample.answer)), {"extracted": text})

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            **scorer_info("glmkit soft VQA accuracy without leave-one-out", "lenient"),
        }


@METRICS.register("numeric")
class NumericScorer(Verifier):
    """1 when the last number of the answer is within tolerance of the reference number.

    ``metadata.rel_tol`` / ``metadata.abs_tol`` of a sample override the defaults for that sample.
    """

    name = "numeric"

    def __init__(
        self,
        rel_tol: float = 0.0,
        abs_tol: float = 0.0,
        percent_equivalence: bool = True,
        key: str | None = None,
    ) -> None:
        super().__init__(key)
        self.rel_tol = rel_tol
        self.abs_tol = abs_tol
        self.percent_equivalence = percent_equivalence

    def check_answer(self, sample: Sample) -> None:
        for ref in reference_answers(sample.answer):
            if parse_number(ref) is None:
                raise ValueError(f"numeric metric: reference {ref!r} holds no number")

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        text = extract_answer(response)
        rel = float(sample.metadata.get("rel_tol", self.rel_tol))
        abs_ = float(sample.metadata.get("abs_tol", self.abs_tol))
        hit = any(
            numeric_match(text, ref, rel_tol=rel, abs_tol=abs_, percent_equivalence=self.percent_equivalence)
            for ref in reference_answers(sample.answer)
        )
        parsed = parse_number(text)
        return self._out(float(hit), {"extracted": text, "parsed": parsed.value if parsed else None})

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "rel_tol": self.rel_tol,
            "abs_tol": self.abs_tol,
            **scorer_info("glmkit last-number match within tolerance", "lenient"),
        }


@METRICS.register("vqa_lenient")
class VQAScorer(Verifier):
    """Lenient mixed VQA: numeric answers are compared with :class:`NumericScorer` tolerances,
    everything else by normalised match. Not the VQAv2 score (``vqa``) nor ChartQA's (``chartqa``).

    A sample is numeric when ``metadata.answer_type == "numeric"`` or every reference is a numeral:
    a JSON number or a string holding one number only (``"45"``, ``"3.5%"``; see :func:`is_numeral`).
    """

    name = "vqa_lenient"

    def __init__(self, rel_tol: float = 0.0, abs_tol: float = 0.0, key: str | None = None) -> None:
        super().__init__(key)
        self.numeric = NumericScorer(rel_tol=rel_tol, abs_tol=abs_tol, key=self.key)
        self.text = NormalizedMatchScorer(key=self.key)

    def _is_numeric(self, sample: Sample) -> bool:
        if sample.metadata.get("answer_type") == "numeric":
            return True
        refs = sample.answer if isinstance(sample.answer, list) else [sample.answer]
        return bool(refs) and all(is_numeral(ref) for ref in refs)

    def check_answer(self, sample: Sample) -> None:
        (self.numeric if self._is_numeric(sample) else self.text).check_answer(sample)

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        out = (self.numeric if self._is_numeric(sample) else self.text).score(sample, response, metadata)
        out.details["mode"] = "numeric" if self._is_numeric(sample) else "normalized"
        return out

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "rel_tol": self.numeric.rel_tol,
            "abs_tol": self.numeric.abs_tol,
            **scorer_info("glmkit mixed numeric / normalised match", "lenient"),
        }


class MatchAccuracy(Metric):
    """Accuracy of string answers under ``mode`` exact / normalized / numeric, synchronised across processes.

    ``update(preds, targets)`` takes model outputs and references (a reference may be a list of
    acceptable answers).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(
        self,
        mode: Literal["exact", "normalized", "numeric"] = "normalized",
        rel_tol: float = 0.0,
        abs_tol: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in ("exact", "normalized", "numeric"):
            raise ValueError(f"mode={mode!r}; valid: exact, normalized, numeric")
        self.mode, self.rel_tol, self.abs_tol = mode, rel_tol, abs_tol
        self.add_state("hits", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _hit(self, pred: str, target: Any) -> bool:
        refs = reference_answers(target)
        text = extract_answer(pred)
        if self.mode == "exact":
            return exact_match(text, refs)
        if self.mode == "normalized":
            return normalized_match(text, refs)
        return any(numeric_match(text, r, rel_tol=self.rel_tol, abs_tol=self.abs_tol) for r in refs)

    def update(self, preds: Sequence[str], targets: Sequence[Any]) -> None:
        """Accumulate a batch."""
        if len(preds) != len(targets):
            raise ValueError(f"{len(preds)} predictions but {len(targets)} references")
        self.hits += sum(self._hit(p, t) for p, t in zip(preds, targets, strict=True))
        self.total += len(preds)

    def compute(self) -> torch.Tensor:
        """Accuracy (0 when nothing was seen)."""
        return self.hits.double() / self.total.clamp(min=1)
