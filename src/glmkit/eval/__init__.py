"""Evaluation harnesses and metrics (GLM-5V-Turbo report sections 3.3 and 5).

- :mod:`~glmkit.eval.metrics`: grounding, pointing, OCR, VQA matching, LLM judge, pass@k and
  Design2Code-style UI-to-code metrics (registry ``metrics``);
- :mod:`~glmkit.eval.benchmark`: the benchmark registry (``benchmarks``), runner and result files;
- :mod:`~glmkit.eval.benchmarks`: the built-in benchmarks over user data (refcoco, ocrbench, ...);
- :mod:`~glmkit.eval.render`: the headless-Chromium page renderer (screenshots and text blocks);
- :mod:`~glmkit.eval.adapters`: model adapters (registry ``model_adapters``);
- :mod:`~glmkit.eval.imagemining`: multi-step tool-use evaluation;
- :mod:`~glmkit.eval.demo`: procedurally generated offline demo benchmarks;
- :mod:`~glmkit.eval.cli`: ``glmkit eval --benchmark NAME --model SPEC``.

Nothing here imports Lightning or the training stages.
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
from glmkit.eval.benchmark import BENCHMARKS, Benchmark, RunResult, get_benchmark, run_benchmark, summarize
from glmkit.eval.metrics import METRICS
from glmkit.eval.sample import DataError, Sample, load_samples

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
    "benchmarks",
    "build_adapter",
    "demo",
    "get_benchmark",
    "imagemining",
    "load_samples",
    "metrics",
    "run_benchmark",
    "summarize",
]
