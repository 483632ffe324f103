"""Evaluation metrics: pure scoring functions, per-sample harness metrics (registry ``metrics``; each
a :class:`~glmkit.scoring.verifier.Verifier`) and torchmetrics ``Metric`` classes that aggregate
across processes."""

from glmkit.eval.metrics.answer_format import AnswerFormat
from glmkit.eval.metrics.base import METRICS, reference_answers
from glmkit.eval.metrics.design2code import Design2CodeScorer, design2code_scores
from glmkit.eval.metrics.grounding import GroundingAccuracy, GroundingScorer, box_iou, parse_box, parse_boxes
from glmkit.eval.metrics.judge import JudgeScorer, LLMJudge, parse_verdict
from glmkit.eval.metrics.ocr import (
    ANLSScorer,
    EditDistanceScorer,
    NormalizedEditDistance,
    OCRBenchScorer,
    anls,
    normalized_edit_distance,
)
from glmkit.eval.metrics.passk import UnbiasedPassAtK, pass_at_k, pass_at_k_table
from glmkit.eval.metrics.pointing import PointingAccuracy, PointingScorer, parse_points
from glmkit.eval.metrics.vqa import (
    ExactMatchScorer,
    MatchAccuracy,
    NormalizedMatchScorer,
    NumericScorer,
    VQAScorer,
    VQASoftScorer,
    numeric_match,
    parse_number,
)

__all__ = [
    "AnswerFormat",
    "METRICS",
    "ANLSScorer",
    "Design2CodeScorer",
    "EditDistanceScorer",
    "ExactMatchScorer",
    "GroundingAccuracy",
    "GroundingScorer",
    "JudgeScorer",
    "LLMJudge",
    "MatchAccuracy",
    "NormalizedEditDistance",
    "NormalizedMatchScorer",
    "NumericScorer",
    "OCRBenchScorer",
    "PointingAccuracy",
    "PointingScorer",
    "UnbiasedPassAtK",
    "VQAScorer",
    "VQASoftScorer",
    "anls",
    "box_iou",
    "design2code_scores",
    "normalized_edit_distance",
    "numeric_match",
    "parse_box",
    "parse_boxes",
    "parse_number",
    "parse_points",
    "parse_verdict",
    "pass_at_k",
    "pass_at_k_table",
    "reference_answers",
]
