"""Evaluation harnesses and metrics (GLM-5V-Turbo report sections 3.3 and 5).

- :mod:`~glmkit.eval.metrics`: grounding, pointing, OCR, VQA matching, LLM judge, pass@k and
  Design2Code-style UI-to-code metrics (registry ``metrics``; each a
  :class:`~glmkit.scoring.verifier.Verifier`, the interface RL rewards call too);
- :mod:`~glmkit.eval.definition`: what a benchmark is and the benchmark registry (``benchmarks``);
- :mod:`~glmkit.eval.runner`: runs a model adapter over a benchmark and scores every response;
- :mod:`~glmkit.eval.records` and :mod:`~glmkit.eval.report`: the result files and the summary;
- :mod:`~glmkit.eval.benchmarks`: the built-in benchmarks over user data (refcoco, ocrbench, ...);
- :mod:`~glmkit.eval.render`: the headless-Chromium page renderer (screenshots and text blocks);
- :mod:`~glmkit.eval.adapters`: model adapters (registry ``model_adapters``);
- :mod:`~glmkit.eval.imagemining`: multi-step tool-use evaluation;
- :mod:`~glmkit.eval.demo`: procedurally generated offline demo benchmarks, one module each;
- :mod:`~glmkit.eval.cli`: ``glmkit eval --benchmark NAME --model SPEC``.

Samples (:class:`~glmkit.scoring.sample.Sample`) and the verifier interface live in
:mod:`glmkit.scoring`. Nothing here imports Lightning or the training stages.
"""

from glmkit.eval import benchmarks, demo, imagemining, metrics
from glmkit.eval.adapters import (
    MODEL_ADAPTERS,
    AgentAdapter,
    ConstantAdapter,
    LocalVLMAdapter,
    ModelAdapter,
    OpenAIAdapter,
    OracleAdapter,
    Prediction,
    RandomAdapter,
    Request,
    build_adapter,
)
from glmkit.eval.definition import BENCHMARKS, Benchmark, get_benchmark, register_benchmark
from glmkit.eval.metrics import METRICS
from glmkit.eval.report import summarize
from glmkit.eval.runner import RunResult, run_benchmark
from glmkit.scoring import DataError, Sample, Scores, Verifier, load_samples

__all__ = [
    "BENCHMARKS",
    "METRICS",
    "MODEL_ADAPTERS",
    "AgentAdapter",
    "Benchmark",
    "ConstantAdapter",
    "DataError",
    "LocalVLMAdapter",
    "ModelAdapter",
    "OpenAIAdapter",
    "OracleAdapter",
    "Prediction",
    "RandomAdapter",
    "Request",
    "RunResult",
    "Sample",
    "Scores",
    "Verifier",
    "benchmarks",
    "build_adapter",
    "demo",
    "get_benchmark",
    "imagemining",
    "load_samples",
    "metrics",
    "register_benchmark",
    "run_benchmark",
    "summarize",
]
