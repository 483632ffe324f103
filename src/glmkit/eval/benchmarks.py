"""The built-in benchmarks over user data (report section 5): grounding, pointing, OCR, VQA, charts, UI to code.

Each is a :class:`~glmkit.eval.definition.Benchmark` registered in ``benchmarks`` at import;
``glmkit.eval`` imports this module, so they are registered whenever the harness is. Metrics are
component specs; ``class_path`` names a registered metric. The demo benchmarks, which build their
own data, live in :mod:`glmkit.eval.demo`.
"""

from __future__ import annotations

from glmkit.eval.definition import Benchmark, register_benchmark

GROUNDING_PROMPT = (
    "{question}\nAnswer with the bounding box of the object as <|begin_of_box|>[[x1,y1,x2,y2]]<|end_of_box|>, "
    "coordinates as integers from 0 to 1000 relative to the image width and height."
)
POINTING_PROMPT = (
    "{question}\nAnswer with one point as <|begin_of_box|>[[x,y]]<|end_of_box|>, coordinates as integers from 0 to "
    "1000 relative to the image width and height."
)
SHORT_PROMPT = "{question}\nAnswer with a single word, number or short phrase."


UI2CODE_PROMPT = (
    "{question}\nWrite one self-contained HTML file (inline CSS, no external resources) that "
    "reproduces the web page in the screenshot. Reply with the code in a ```html block."
)

# RefCOCO-style grounding: Acc@IoU>=0.5, predictions in 0-1000, answers in pixels.
REFCOCO = register_benchmark(
    Benchmark(
        "refcoco",
        [{"class_path": "grounding", "init_args": {"pred_space": "norm1000", "answer_space": "pixels"}}],
        prompt=GROUNDING_PROMPT,
        description="referring-expression grounding, Acc@IoU>=0.5 (answers: pixel boxes; --data required)",
    )
)

# PointBench-style pointing: the first point must fall in the mask or box.
POINTBENCH = register_benchmark(
    Benchmark(
        "pointbench",
        [{"class_path": "pointing", "init_args": {"pred_space": "norm1000"}}],
        prompt=POINTING_PROMPT,
        description="pointing accuracy, point in mask or box (--data required)",
    )
)

# OCRBench's substring hit, with 1 - NED alongside.
OCRBENCH = register_benchmark(
    Benchmark(
        "ocrbench",
        ["ocrbench", {"class_path": "ocr_ned", "init_args": {"lowercase": True}}],
        description="OCRBench substring hit plus 1 - NED (--data required)",
    )
)

# Short-answer VQA: normalised match, numbers compared by value.
VQA = register_benchmark(
    Benchmark(
        "vqa",
        ["vqa", "exact_match"],
        prompt=SHORT_PROMPT,
        description="short-answer VQA: normalised match, numbers by value (--data required)",
    )
)

# ChartQA relaxed accuracy: 5% relative tolerance on numbers.
CHARTQA = register_benchmark(
    Benchmark(
        "chartqa",
        [{"class_path": "vqa", "init_args": {"rel_tol": 0.05}}],
        prompt=SHORT_PROMPT,
        description="chart QA relaxed accuracy (5% relative tolerance on numbers; --data required)",
    )
)

# UI to code with Design2Code-style visual scores (answers: reference HTML paths).
DESIGN2CODE = register_benchmark(
    Benchmark(
        "design2code",
        ["design2code"],
        prompt=UI2CODE_PROMPT,
        description="UI to code, Design2Code-style visual scores (needs chromium; --data required)",
    )
)
