"""Evaluation metrics: pure scoring functions, per-sample harness metrics (registry ``metrics``; each
a :class:`~glmkit.scoring.verifier.Verifier`) and torchmetrics ``Metric`` classes that aggregate
across processes.

A metric registered under a benchmark's name (``vqa``, ``chartqa``, ``anls``, ``mathvista``,
``ocrbench``, ``refcoco``, ``pointbench``, ``pointarena``, ``design2code``, ``simplevqa``,
``mmsearch``) reproduces that benchmark's reference scorer; each docstring names the reference file
and function. glmkit's lenient variants carry ``_lenient`` in their names.
"""

from glmkit.eval.metrics.anls import ANLSScorer, anls
from glmkit.eval.metrics.answer_format import AnswerFormat
from glmkit.eval.metrics.base import METRICS, reference_answers, scorer_info
from glmkit.eval.metrics.chartqa import ChartQALenientScorer, ChartQAScorer, relaxed_correctness
from glmkit.eval.metrics.design2code import Design2CodeScorer, design2code_scores
from glmkit.eval.metrics.glm_wrapper import glm_wrapper_answer
from glmkit.eval.metrics.grounding import GroundingAccuracy, GroundingScorer, box_iou, parse_box, parse_boxes
from glmkit.eval.metrics.judge import JudgeScorer, LLMJudge, parse_verdict
from glmkit.eval.metrics.mathvista import MathVistaScorer
from glmkit.eval.metrics.mmsearch import MMSearchScorer, token_f1
from glmkit.eval.metrics.ocr import EditDistanceScorer, NormalizedEditDistance, normalized_edit_distance
from glmkit.eval.metrics.ocrbench import OCRBenchLenientScorer, OCRBenchScorer
from glmkit.eval.metrics.passk import UnbiasedPassAtK, pass_at_k, pass_at_k_table
from glmkit.eval.metrics.pointarena import PointArenaScorer
from glmkit.eval.metrics.pointbench import PointBenchScorer
from glmkit.eval.metrics.pointing import PointingAccuracy, PointingScorer, parse_points
from glmkit.eval.metrics.refcoco import RefCOCOScorer
from glmkit.eval.metrics.simplevqa import SimpleVQAScorer
from glmkit.eval.metrics.vqa import (
    ExactMatchScorer,
    MatchAccuracy,
    NormalizedMatchScorer,
    NumericScorer,
    VQAScorer,
    VQASoftLenientScorer,
    numeric_match,
    parse_number,
)
from glmkit.eval.metrics.vqav2 import VQAv2Scorer, vqa_score

__all__ = [
    "METRICS",
    "ANLSScorer",
    "AnswerFormat",
    "ChartQALenientScorer",
    "ChartQAScorer",
    "Design2CodeScorer",
    "EditDistanceScorer",
    "ExactMatchScorer",
    "GroundingAccuracy",
    "GroundingScorer",
    "JudgeScorer",
    "LLMJudge",
    "MMSearchScorer",
    "MatchAccuracy",
    "MathVistaScorer",
    "NormalizedEditDistance",
    "NormalizedMatchScorer",
    "NumericScorer",
    "OCRBenchLenientScorer",
    "OCRBenchScorer",
    "PointArenaScorer",
    "PointBenchScorer",
    "PointingAccuracy",
    "PointingScorer",
    "RefCOCOScorer",
    "SimpleVQAScorer",
    "UnbiasedPassAtK",
    "VQAScorer",
    "VQASoftLenientScorer",
    "VQAv2Scorer",
    "anls",
    "box_iou",
    "design2code_scores",
    "glm_wrapper_answer",
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
    "relaxed_correctness",
    "scorer_info",
    "token_f1",
    "vqa_score",
]
