"""What a benchmark is (:class:`Benchmark`) and the registry of benchmarks (report section 5).

A :class:`Benchmark` is data: which metrics score it, how a sample becomes a prompt, where its
JSONL lives (or how a demo builds it), and which tools an agent gets. Metrics are component
specs, ``{"class_path": ..., "init_args": {...}}`` as in LightningCLI recipes, built with
:func:`glmkit.config.instantiate` (``class_path`` may be a registered metric name such as
``grounding``, a class name or a full import path).

A metric scored by an LLM judge declares the slot ``"judge_url": None`` in its ``init_args``;
:meth:`Benchmark.with_judge` (what ``glmkit eval --judge-url`` calls) fills every such slot.

The built-in benchmarks are registered in :mod:`glmkit.eval.benchmarks` and :mod:`glmkit.eval.imagemining`,
the demo ones in :mod:`glmkit.eval.demo`; ``import glmkit.eval`` registers them all, and so does a
lookup in :data:`BENCHMARKS` that misses.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmkit.registry import declare
from glmkit.scoring import DataError, Sample, Verifier, load_samples, parse_sample
from glmkit.scoring.sample import RowParser

MetricSpec = Mapping[str, Any] | str
"""A metric as a component spec ``{"class_path": NAME_OR_PATH, "init_args": {...}}``, or a bare
``class_path`` string when it takes no arguments."""

JUDGE_URL = "judge_url"
"""The ``init_args`` key through which :meth:`Benchmark.with_judge` reaches judge-scored metrics."""


@dataclass(frozen=True)
class Benchmark:
    """What a benchmark is: data, prompt, metrics and (for agents) tools.

    Args:
        name: the registry name.
        metrics: metric specs (:data:`MetricSpec`); the first is the primary metric (its score
            decides pass/fail for pass@k and is what the ``oracle`` adapter answers).
        prompt: template filled with ``question``, ``category`` and the sample's metadata keys.
        data: default JSONL path (``None``: the user passes ``--data``, or ``make_data`` builds it).
        make_data: ``directory -> JSONL path`` for procedurally generated (demo) benchmarks.
        system_prompt: system message for chat adapters.
        pass_threshold: primary score at or above which an attempt counts as correct for pass@k.
        tools: ``(tool name, kwargs)`` an agent adapter gets; string kwargs may use ``{data_dir}``.
        parse_row: turns one decoded JSONL row into a :class:`~glmkit.scoring.sample.Sample`
            (for foreign formats).
        summary_extra: ``(records, primary key) -> dict`` added to the summary under ``extra``.
        description: one line for ``--list``.
    """

    name: str
    metrics: Sequence[MetricSpec]
    prompt: str = "{question}"
    data: str | Path | None = None
    make_data: Callable[[Path], Path] | None = None
    system_prompt: str | None = None
    pass_threshold: float = 1.0
    tools: Sequence[tuple[str, dict[str, Any]]] = ()
    parse_row: RowParser = parse_sample
    summary_extra: Callable[[list[dict[str, Any]], str], dict[str, Any]] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not self.metrics:
            raise ValueError(f"benchmark {self.name!r} has no metrics")
        for i, spec in enumerate(self.metrics):
            if isinstance(spec, str) or (isinstance(spec, Mapping) and "class_path" in spec):
                continue
            hint = ""
            if isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str):
                hint = f"; write {{'class_path': {spec[0]!r}, 'init_args': {dict(spec[1] or {})!r}}}"
            raise ValueError(
                f"benchmark {self.name!r}: metrics[{i}] must be a spec "
                f"{{'class_path': ..., 'init_args': {{...}}}} or a class_path string, got {spec!r}{hint}"
            )
        # Frozen: a registered benchmark is shared, so its sequences are stored as tuples.
        object.__setattr__(self, "metrics", tuple(self.metrics))
        object.__setattr__(self, "tools", tuple(self.tools))

    def __str__(self) -> str:  # one line, as `glmkit list benchmarks` shows it
        return f"Benchmark({self.name!r})  {self.description}".rstrip()

    def build_metrics(self) -> list[Verifier]:
        """Instantiate the metrics (:func:`glmkit.config.instantiate`, registry ``metrics``)."""
        from glmkit.config import instantiate

        built = []
        for i, spec in enumerate(self.metrics):
            where = f"benchmark {self.name!r}: metrics[{i}]"
            metric = instantiate(spec, kind="metrics", where=where)
            if not isinstance(metric, Verifier):
                raise TypeError(
                    f"{where}: {type(metric).__module__}.{type(metric).__qualname__} is not a "
                    "glmkit.scoring.Verifier (a metric implements score(sample, response, metadata))"
                )
            built.append(metric)
        keys = [m.key for m in built]
        if len(set(keys)) != len(keys):
            raise ValueError(
                f"benchmark {self.name!r}: metric keys must be unique, got {keys}; set init_args.key"
            )
        return built

    @property
    def takes_judge(self) -> bool:
        """True when some metric declares a ``judge_url`` slot in its ``init_args``."""
        return any(JUDGE_URL in _init_args(spec) for spec in self.metrics)

    def with_judge(self, judge_url: str | None) -> Benchmark:
        """A copy whose metrics with a ``judge_url`` slot get ``judge_url`` (unchanged if ``None``)."""
        if judge_url is None or not self.takes_judge:
            return self
        metrics = []
        for spec in self.metrics:
            if JUDGE_URL in _init_args(spec):
                spec = copy.deepcopy(dict(spec))  # type: ignore[arg-type]
                spec["init_args"] = {**spec["init_args"], JUDGE_URL: judge_url}
            metrics.append(spec)
        return dataclasses.replace(self, metrics=tuple(metrics))

    def format_prompt(self, sample: Sample) -> str:
        """The text sent to the model for ``sample``."""
        fields = {k: v for k, v in sample.metadata.items() if isinstance(k, str)}
        fields.update(question=sample.question, category=sample.category)
        try:
            return self.prompt.format_map(fields)
        except (KeyError, IndexError, ValueError) as exc:
            raise DataError(
                f"benchmark {self.name!r}: prompt template {self.prompt!r} cannot be filled for sample "
                f"{sample.id!r} ({type(exc).__name__}: {exc})"
            ) from None

    def load(self, path: str | Path, metrics: Sequence[Verifier]) -> list[Sample]:
        """Read and validate the JSONL at ``path`` (answers checked by every metric)."""

        def check(sample: Sample) -> None:
            for metric in metrics:
                metric.check_answer(sample)

        return load_samples(path, parse_row=self.parse_row, check_answer=check)

    def resolve_data(self, data: str | Path | None, out_dir: Path) -> Path:
        """The JSONL to read: ``data``, else the default, else a demo built under ``out_dir/data``."""
        if data is not None:
            return Path(data)
        if self.data is not None:
            return Path(self.data)
        if self.make_data is not None:
            return Path(self.make_data(out_dir / "data"))
        raise DataError(f"benchmark {self.name!r} has no default data: pass --data path/to/benchmark.jsonl")

    def tool_specs(self, data_dir: Path) -> list[tuple[str, dict[str, Any]]]:
        """The agent tools with ``{data_dir}`` filled into string arguments."""
        return [
            (name, {k: v.format(data_dir=data_dir) if isinstance(v, str) else v for k, v in kwargs.items()})
            for name, kwargs in self.tools
        ]


def _init_args(spec: MetricSpec) -> Mapping[str, Any]:
    if isinstance(spec, Mapping):
        return spec.get("init_args") or {}
    return {}


BENCHMARKS = declare("benchmarks", "evaluation benchmarks (glmkit eval --benchmark NAME)", base=Benchmark)


def register_benchmark(benchmark: Benchmark, *, override: bool = False) -> Benchmark:
    """Register ``benchmark`` in :data:`BENCHMARKS` under its ``name``; returns it."""
    return BENCHMARKS.add(benchmark.name, benchmark, override=override)


def get_benchmark(name: str) -> Benchmark:
    """The benchmark registered as ``name`` (unknown names suggest the closest ones)."""
    return BENCHMARKS.get(name)
