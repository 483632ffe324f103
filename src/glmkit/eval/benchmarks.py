"""The built-in benchmarks over user data (report section 5), each scored by the metric that
reproduces its reference implementation (the table in ``docs/eval.md`` names the file and
function each follows).

Each is a :class:`~glmkit.eval.definition.Benchmark` registered in ``benchmarks`` at import;
``glmkit.eval`` imports this module, so they are registered whenever the harness is. Metrics are
component specs; ``class_path`` names a registered metric. The demo benchmarks, which build their
own data, live in :mod:`glmkit.eval.demo`.
"""

from __future__ import annotations

from glmkit.eval.definition import JUDGE_URL, Benchmark, register_benchmark
from glmkit.eval.metrics.ocrbench import ocrbench_summary
from glmkit.eval.metrics.refcoco import refcoco_summary
from glmkit.eval.metrics.simplevqa import simplevqa_summary

GROUNDING_PROMPT = (
    "{question}\nAnswer with the bounding box of the object as <|begin_of_box|>[[x1,y1,x2,y2]]<|end_of_box|>, "
    "coordinates as integers from 0 to 1000 relative to the image width and height."
)
POINTING_PROMPT = (
    "{question}\nAnswer with one point as <|begin_of_box|>[[x,y]]<|end_of_box|>, coordinates as integers from 0 to "
    "1000 relative to the image width and height."
)
POINTBENCH_PROMPT = (
    "{question}\nAnswer with a list of points [(x1, y1), (x2, y2), ...], each a tuple of integers from 0 to 999 "
    "giving the position on a 1000 x 1000 grid laid over the image. Reply with the list only."
)
SHORT_PROMPT = "{question}\nAnswer with a single word, number or short phrase."

UI2CODE_PROMPT = (
    "{question}\nWrite one self-contained HTML file (inline CSS, no external resources) that "
    "reproduces the web page in the screenshot. Reply with the code in a ```html block."
)

# RefCOCO as VLMEvalKit scores it (first box, space guessed from magnitude, clipped); answers: pixel boxes.
REFCOCO = register_benchmark(
    Benchmark(
        "refcoco",
        ["refcoco"],
        prompt=GROUNDING_PROMPT,
        summary_extra=refcoco_summary,
        description="RefCOCO grounding as VLMEvalKit scores it, Acc@IoU>=0.5 (answers: pixel boxes; --data required)",
    )
)

# PointBench as lmms-eval scores it: binary accuracy (counting: every point and the count), point accuracy.
POINTBENCH = register_benchmark(
    Benchmark(
        "pointbench",
        ["pointbench"],
        prompt=POINTBENCH_PROMPT,
        description="PointBench pointing as lmms-eval scores it, answers are masks (--data required)",
    )
)

# OCRBench as VLMEvalKit scores it, with its roll-up out of 1000, and 1 - NED alongside.
OCRBENCH = register_benchmark(
    Benchmark(
        "ocrbench",
        ["ocrbench", {"class_path": "ocr_ned", "init_args": {"lowercase": True}}],
        summary_extra=ocrbench_summary,
        description="OCRBench as VLMEvalKit scores it (substring hit, final score /1000) plus 1 - NED (--data required)",
    )
)

# VQAv2 / TextVQA accuracy as VLMEvalKit computes it (single answers: its exact `accuracy` method).
VQA = register_benchmark(
    Benchmark(
        "vqa",
        ["vqa", "exact_match"],
        prompt=SHORT_PROMPT,
        description="VQAv2-style accuracy as VLMEvalKit computes it (--data required)",
    )
)

# ChartQA relaxed accuracy as VLMEvalKit / lmms-eval compute it.
CHARTQA = register_benchmark(
    Benchmark(
        "chartqa",
        ["chartqa"],
        prompt=SHORT_PROMPT,
        description="ChartQA relaxed accuracy as VLMEvalKit / lmms-eval compute it (--data required)",
    )
)

# DocVQA and InfographicVQA: ANLS as lmms-eval and the DocVQA script compute it.
DOCVQA = register_benchmark(
    Benchmark(
        "docvqa",
        ["anls"],
        prompt=SHORT_PROMPT,
        description="DocVQA ANLS as lmms-eval computes it (--data required)",
    )
)
INFOVQA = register_benchmark(
    Benchmark(
        "infovqa",
        ["anls"],
        prompt=SHORT_PROMPT,
        description="InfographicVQA ANLS as lmms-eval computes it (--data required)",
    )
)

# MathVista: its own normalisation and safe_equal (answer types and choices in metadata).
MATHVISTA = register_benchmark(
    Benchmark(
        "mathvista",
        ["mathvista"],
        description="MathVista accuracy with its normalize_extracted_answer + safe_equal (--data required)",
    )
)

# UI to code with Design2Code's visual_score (answers: reference HTML paths).
DESIGN2CODE = register_benchmark(
    Benchmark(
        "design2code",
        ["design2code"],
        prompt=UI2CODE_PROMPT,
        description="UI to code, Design2Code's visual_score (needs chromium; CLIP weights or the SSIM stand-in; --data required)",
    )
)

# SimpleVQA: a three-way judge, with correct-given-attempted and F1 in the summary.
SIMPLEVQA = register_benchmark(
    Benchmark(
        "simplevqa",
        [{"class_path": "simplevqa", "init_args": {JUDGE_URL: None}}],
        summary_extra=simplevqa_summary,
        description="SimpleVQA three-way judge, correct given attempted and F1 (--judge-url and --data required)",
    )
)

# MMSearch end-to-end answers: token F1 against the answer and its alternatives.
MMSEARCH = register_benchmark(
    Benchmark(
        "mmsearch",
        ["mmsearch"],
        description="MMSearch end-to-end token F1 (agent models; --data required)",
    )
)
