"""The built-in benchmarks over user data (report section 5): grounding, pointing, OCR, VQA, charts, UI to code.

Each is a :class:`~glmkit.eval.benchmark.Benchmark` factory registered in ``benchmarks`` at import;
``glmkit.eval`` imports this module, so they are registered whenever the harness is. The demo
benchmarks, which build their own data, live in :mod:`glmkit.eval.demo`.
"""

from __future__ import annotations

from glmkit.eval.benchmark import BENCHMARKS, Benchmark

GROUNDING_PROMPT = (
    "{question}\nAnswer with the bounding box of the object as <|begin_of_box|>[[x1,y1,x2,y2]]<|end_of_box|>, "
    "coordinates as integers from 0 to 1000 relative to the image width and height."
)
POINTING_PROMPT = (
    "{question}\nAnswer with one point as <|begin_of_box|>[[x,y]]<|end_of_box|>, coordinates as integers from 0 to "
    "1000 relative to the image width and height."
)
SHORT_PROMPT = "{question}\nAnswer with a single word, number or short phrase."


@BENCHMARKS.register("refcoco")
def refcoco() -> Benchmark:
    """RefCOCO-style grounding: Acc@IoU>=0.5, predictions in 0-1000, answers in pixels."""
    return Benchmark(
        "refcoco",
        [("grounding", {"pred_space": "norm1000", "answer_space": "pixels"})],
        prompt=GROUNDING_PROMPT,
        description="referring-expression grounding, Acc@IoU>=0.5 (answers: pixel boxes; --data required)",
    )


@BENCHMARKS.register("pointbench")
def pointbench() -> Benchmark:
    """PointBench-style pointing: the first point must fall in the mask or box."""
    return Benchmark(
        "pointbench",
        [("pointing", {"pred_space": "norm1000"})],
        prompt=POINTING_PROMPT,
        description="pointing accuracy, point in mask or box (--data required)",
    )


@BENCHMARKS.register("ocrbench")
def ocrbench() -> Benchmark:
    """OCRBench's substring hit, with 1 - NED alongside."""
    return Benchmark(
        "ocrbench",
        [("ocrbench", {}), ("ocr_ned", {"lowercase": True})],
        description="OCRBench substring hit plus 1 - NED (--data required)",
    )


@BENCHMARKS.register("vqa")
def vqa() -> Benchmark:
    """Short-answer VQA: normalised match, numbers compared by value."""
    return Benchmark(
        "vqa",
        [("vqa", {}), ("exact_match", {})],
        prompt=SHORT_PROMPT,
        description="short-answer VQA: normalised match, numbers by value (--data required)",
    )


@BENCHMARKS.register("chartqa")
def chartqa() -> Benchmark:
    """ChartQA relaxed accuracy: 5% relative tolerance on numbers."""
    return Benchmark(
        "chartqa",
        [("vqa", {"rel_tol": 0.05})],
        prompt=SHORT_PROMPT,
        description="chart QA relaxed accuracy (5% relative tolerance on numbers; --data required)",
    )


UI2CODE_PROMPT = (
    "{question}\nWrite one self-contained HTML file (inline CSS, no external resources) that "
    "reproduces the web page in the screenshot. Reply with the code in a ```html block."
)


@BENCHMARKS.register("design2code")
def design2code() -> Benchmark:
    """UI to code with Design2Code-style visual scores (answers: reference HTML paths)."""
    return Benchmark(
        "design2code",
        [("design2code", {})],
        prompt=UI2CODE_PROMPT,
        description="UI to code, Design2Code-style visual scores (needs chromium; --data required)",
    )
