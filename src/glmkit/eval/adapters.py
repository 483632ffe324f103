"""Model adapters: how the harness asks a model (registry ``model_adapters``).

An adapter turns a :class:`Request` (the sample, its filled prompt, an optional system prompt)
into a :class:`Prediction` (the text, plus tool calls and turns for agents). Adapters:

* ``openai``: :class:`OpenAIAdapter`, an OpenAI-compatible endpoint; images go as data URLs.
* ``local``: :class:`LocalVLMAdapter`, any in-process model following the local protocol below.
* ``agent``: :class:`AgentAdapter`, :class:`~glmkit.agent.loop.AgentLoop` with tools (ImageMining-style).
* ``oracle``: answers from the ground truth through the primary metric (must score 100%).
* ``random``: answers what the oracle would answer for another, randomly chosen sample of the same
  benchmark (a prior baseline: right only by chance).
* ``constant``: always the same text.

On the command line an adapter is a spec string: ``oracle``, ``random`` / ``random:SEED``,
``constant:TEXT``, ``openai:http://host:8000/v1@model-name``, ``agent:http://host/v1@model-name``,
``local:package.module:attribute`` or ``local:<exported VLM directory>`` (see :func:`build_adapter`).

The local protocol
------------------
A local model is an object with ``generate(question: str, images: list[PIL.Image.Image]) -> str``
or a plain callable with that signature. It may return a :class:`Prediction` or a dict with
``text`` (and optionally ``tool_calls``, ``turns``, ``tools_used``) instead of a string. An
exported glmkit VLM plugs in through this protocol by its directory: ``local:runs/quickstart_vlm/vlm``
(:func:`glmkit.inference.load_chat`).
"""

from __future__ import annotations

import hashlib
import importlib
import random
import shutil
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from glmkit.registry import declare
from glmkit.scoring import Sample, Verifier

if TYPE_CHECKING:
    from glmkit.eval.definition import Benchmark


@dataclass
class Request:
    """What the harness asks: the sample, its filled prompt and an optional system prompt."""

    sample: Sample
    prompt: str
    system_prompt: str | None = None

    @property
    def images(self) -> list[Path]:
        """Paths of the sample's images."""
        return list(self.sample.images)


@dataclass
class Prediction:
    """A model's answer; agents also report tool calls, turns and which tools they used."""

    text: str
    tool_calls: int | None = None
    turns: int | None = None
    tools_used: list[str] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def as_prediction(output: Any) -> Prediction:
    """Coerce what a model returned (str, dict or :class:`Prediction`) to a :class:`Prediction`."""
    if isinstance(output, Prediction):
        return output
    if isinstance(output, str):
        return Prediction(output)
    if isinstance(output, dict) and isinstance(output.get("text"), str):
        return Prediction(
            text=output["text"],
            tool_calls=output.get("tool_calls"),
            turns=output.get("turns"),
            tools_used=list(output.get("tools_used", [])),
        )
    raise TypeError(
        f"a model must return a str, a dict with 'text', or a Prediction; got {type(output).__name__}"
    )


class ModelAdapter(ABC):
    """Base class of adapters; subclasses implement :meth:`predict` (thread-safe if ``workers`` > 1)."""

    name: ClassVar[str]

    def prepare(  # noqa: B027 - optional hook
        self,
        benchmark: Benchmark,
        samples: Sequence[Sample],
        metrics: Sequence[Verifier],
        *,
        data_path: Path | None = None,
        out_dir: Path | None = None,
    ) -> None:
        """Called once before the run with everything the adapter may need."""

    @abstractmethod
    def predict(self, request: Request) -> Prediction:
        """Answer one request."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    def describe(self) -> dict[str, Any]:
        """Recorded in the run summary."""
        return {"adapter": self.name, "spec": getattr(self, "spec", self.name)}

    @classmethod
    def from_spec(cls, arg: str, **options: Any) -> ModelAdapter:
        """Build from the part of a ``--model`` spec after ``name:``."""
        if arg:
            raise ValueError(f"model adapter {cls.name!r} takes no argument, got {arg!r}")
        return cls(**options)


MODEL_ADAPTERS = declare("model_adapters", "model adapters for glmkit eval (--model SPEC)", base=ModelAdapter)

# ------------------------------------------------------------------------------ baselines


@MODEL_ADAPTERS.register("oracle")
class OracleAdapter(ModelAdapter):
    """Answers with the primary metric's perfect answer for each sample (a harness smoke test)."""

    name = "oracle"

    def __init__(self) -> None:
        self.metric: Verifier | None = None

    def prepare(
        self, benchmark: Benchmark, samples: Sequence[Sample], metrics: Sequence[Verifier], **_: Any
    ) -> None:
        self.metric = metrics[0]

    def predict(self, request: Request) -> Prediction:
        if self.metric is None:
            raise RuntimeError("OracleAdapter.prepare() was not called")
        return Prediction(self.metric.oracle(request.sample))


@MODEL_ADAPTERS.register("random")
class RandomAdapter(ModelAdapter):
    """Answers the oracle answer of another sample drawn at random (seeded per sample id).

    Args:
        seed: the draw depends only on ``seed`` and the sample id, so runs are reproducible
            whatever the order or concurrency.
    """

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.spec = f"random:{seed}"
        self.samples: list[Sample] = []
        self.metric: Verifier | None = None

    @classmethod
    def from_spec(cls, arg: str, **options: Any) -> ModelAdapter:
        try:
            seed = int(arg) if arg else 0
        except ValueError:
            raise ValueError(f"random:SEED needs an integer seed, got {arg!r}") from None
        return cls(seed=seed)

    def prepare(
        self, benchmark: Benchmark, samples: Sequence[Sample], metrics: Sequence[Verifier], **_: Any
    ) -> None:
        self.samples = list(samples)
        self.metric = metrics[0]

    def predict(self, request: Request) -> Prediction:
        if self.metric is None:
            raise RuntimeError("RandomAdapter.prepare() was not called")
        others = [s for s in self.samples if s.id != request.sample.id]
        if not others:
            return Prediction("")
        digest = hashlib.sha256(f"{self.seed}:{request.sample.id}".encode()).digest()
        other = random.Random(digest).choice(others)
        return Prediction(self.metric.oracle(other))


@MODEL_ADAPTERS.register("constant")
class ConstantAdapter(ModelAdapter):
    """Always answers ``text``."""

    name = "constant"

    def __init__(self, text: str = "") -> None:
        self.text = text
        self.spec = f"constant:{text}"

    @classmethod
    def from_spec(cls, arg: str, **options: Any) -> ModelAdapter:
        return cls(text=arg)

    def predict(self, request: Request) -> Prediction:
        return Prediction(self.text)


# ---------------------------------------------------------------------------- real models


@MODEL_ADAPTERS.register("openai")
class OpenAIAdapter(ModelAdapter):
    """One chat request per sample to an OpenAI-compatible endpoint (vLLM, SGLang, OpenAI, ...).

    The user message holds the images as ``image_url`` data URLs followed by the prompt text.

    Args:
        base_url: e.g. ``http://localhost:8000/v1``.
        model: the served model name.
        temperature / max_tokens: sampling settings sent with each request.
        params: further request fields.
        api_key, timeout, max_retries: passed to :class:`~glmkit.agent.client.OpenAIChatClient`.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str = "default",
        temperature: float = 0.0,
        max_tokens: int = 2048,
        params: dict[str, Any] | None = None,
        api_key: str | None = None,
        timeout: float = 300.0,
        max_retries: int = 2,
        backoff: float = 0.5,
    ) -> None:
        from glmkit.agent.client import OpenAIChatClient

        self.client = OpenAIChatClient(
            base_url, model=model, api_key=api_key, timeout=timeout, max_retries=max_retries, backoff=backoff
        )
        self.params = {"temperature": temperature, "max_tokens": max_tokens, **(params or {})}
        self.spec = f"openai:{base_url}@{model}"

    @classmethod
    def from_spec(cls, arg: str, **options: Any) -> ModelAdapter:
        from glmkit.eval.metrics.judge import parse_endpoint

        base_url, model = parse_endpoint(arg)
        return cls(base_url, model, **options)

    def messages(self, request: Request) -> list[dict[str, Any]]:
        """The chat messages for ``request``."""
        from glmkit.agent.client import image_part

        parts: list[dict[str, Any]] = [image_part(img) for img in request.sample.load_images()]
        parts.append({"type": "text", "text": request.prompt})
        msgs: list[dict[str, Any]] = []
        if request.system_prompt:
            msgs.append({"role": "system", "content": request.system_prompt})
        msgs.append({"role": "user", "content": parts})
        return msgs

    def predict(self, request: Request) -> Prediction:
        completion = self.client.chat(self.messages(request), **self.params)
        return Prediction(
            completion.content,
            usage=dict(completion.usage),
            meta={"finish_reason": completion.finish_reason, "model": completion.raw.get("model")},
        )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "params": self.params}


LocalModel = Any  # an object with generate(question, images) or a callable(question, images)


@MODEL_ADAPTERS.register("local")
class LocalVLMAdapter(ModelAdapter):
    """An in-process model following the local protocol (see the module docstring).

    Args:
        model: the model object or callable.
        use_prompt: send the benchmark's filled prompt (default) rather than the bare question.
    """

    name = "local"

    def __init__(self, model: LocalModel, use_prompt: bool = True, spec: str | None = None) -> None:
        generate = getattr(model, "generate", None)
        if not callable(generate) and not callable(model):
            raise TypeError(
                f"{type(model).__name__} follows neither local protocol: give it "
                "generate(question, images) -> str or make it callable(question, images) -> str"
            )
        self.generate: Callable[[str, list[Any]], Any] = generate if callable(generate) else model
        self.model = model
        self.use_prompt = use_prompt
        self.spec = spec or f"local:{type(model).__name__}"

    @classmethod
    def from_spec(cls, arg: str, **options: Any) -> ModelAdapter:
        """``module.path:attribute`` (a class is instantiated without arguments, anything else used
        as is), or the directory of an exported glmkit VLM (``ExportVLM``'s output), loaded with
        :func:`glmkit.inference.load_chat` (greedy, drafting with its MTP heads when it has them)."""
        if Path(arg).is_dir():
            from glmkit.inference import load_chat  # torch and transformers only when a VLM is asked for

            return cls(load_chat(arg), spec=f"local:{arg}", **options)
        module_name, sep, attr = arg.partition(":")
        if not sep or not module_name or not attr:
            raise ValueError(
                f"local model spec must be 'local:package.module:attribute' or 'local:<exported VLM "
                f"directory>', got 'local:{arg}'"
            )
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot load local model {arg!r}: {exc}") from None
        if isinstance(obj, type):
            obj = obj()
        return cls(obj, spec=f"local:{arg}", **options)

    def predict(self, request: Request) -> Prediction:
        text = request.prompt if self.use_prompt else request.sample.question
        return as_prediction(self.generate(text, request.sample.load_images()))


@MODEL_ADAPTERS.register("agent")
class AgentAdapter(ModelAdapter):
    """Runs :class:`~glmkit.agent.loop.AgentLoop` with tools on each sample; records tool calls and turns.

    The tools are the benchmark's (``Benchmark.tools``, with ``{data_dir}`` filled in) unless
    ``tools`` is given. A run that ends on a model error raises, so the sample is recorded as
    failed; a run that ends on its turn or token budget yields its last text (usually empty).

    Args:
        model: a :class:`~glmkit.agent.models.ChatModel` (e.g. ``OpenAIChatModel``).
        tools: tool names or instances (default: the benchmark's).
        max_turns / max_tokens: the loop's budgets.
        system_prompt: overrides the benchmark's system prompt.
        context_policy: image-history policy name or instance (see :mod:`glmkit.agent.context`).
        save_trajectories: write each sample's trajectories to ``out_dir/trajectories/<name>.jsonl``,
            where :func:`trajectory_file_name` makes ``<name>`` from the id (every attempt of the
            sample is a run of its own in that file; a sample run again by ``--resume`` starts the
            file afresh).
    """

    name = "agent"
    spec_options: ClassVar[tuple[str, ...]] = ("temperature", "max_tokens_per_turn", "tool_format")

    def __init__(
        self,
        model: Any,
        tools: Sequence[Any] | None = None,
        max_turns: int = 10,
        max_tokens: int | None = None,
        system_prompt: str | None = None,
        context_policy: Any = None,
        save_trajectories: bool = True,
        spec: str | None = None,
    ) -> None:
        self.model = model
        self.tools = list(tools) if tools is not None else None
        self.max_turns = max_turns
        self.max_tokens = max_tokens
        self.system_prompt = system_prompt
        self.context_policy = context_policy
        self.save_trajectories = save_trajectories
        self.trajectory_dir: Path | None = None
        self.spec = spec or f"agent:{type(model).__name__}"
        self._tool_instances: list[Any] = []
        self._started: set[str] = set()  # ids whose trajectory file this run has already cleared
        self._started_lock = threading.Lock()

    @classmethod
    def from_spec(cls, arg: str, **options: Any) -> ModelAdapter:
        """``http://host/v1@model``: an :class:`~glmkit.agent.models.OpenAIChatModel` with native tool calls."""
        from glmkit.agent.models import OpenAIChatModel
        from glmkit.eval.metrics.judge import parse_endpoint

        base_url, model_name = parse_endpoint(arg)
        params = {k: options.pop(k) for k in ("temperature", "max_tokens_per_turn") if k in options}
        if "max_tokens_per_turn" in params:
            params["max_tokens"] = params.pop("max_tokens_per_turn")
        chat_model = OpenAIChatModel(
            base_url=base_url,
            model=model_name,
            tool_format=options.pop("tool_format", "openai"),
            params=params,
        )
        return cls(chat_model, spec=f"agent:{arg}", **options)

    def prepare(
        self,
        benchmark: Benchmark,
        samples: Sequence[Sample],
        metrics: Sequence[Verifier],
        *,
        data_path: Path | None = None,
        out_dir: Path | None = None,
    ) -> None:
        from glmkit.tools import get_tool

        if self.tools is not None:
            self._tool_instances = [get_tool(t) if isinstance(t, str) else t for t in self.tools]
        else:
            data_dir = data_path.parent if data_path is not None else Path(".")
            self._tool_instances = [
                get_tool(name, **kwargs) for name, kwargs in benchmark.tool_specs(data_dir)
            ]
        if not self._tool_instances:
            raise ValueError(f"benchmark {benchmark.name!r} names no tools; pass tools=[...] to AgentAdapter")
        if self.save_trajectories and out_dir is not None:
            self.trajectory_dir = out_dir / "trajectories"
            self.trajectory_dir.mkdir(parents=True, exist_ok=True)
        with self._started_lock:
            self._started.clear()

    def predict(self, request: Request) -> Prediction:
        from glmkit.agent.loop import AgentLoop

        if not self._tool_instances:
            raise RuntimeError("AgentAdapter.prepare() was not called")
        loop = AgentLoop(
            self.model,
            self._tool_instances,
            max_turns=self.max_turns,
            max_tokens=self.max_tokens,
            context_policy=self.context_policy,
            system_prompt=self.system_prompt or request.system_prompt,
        )
        path = None
        if self.trajectory_dir is not None:
            path = self.trajectory_dir / trajectory_file_name(request.sample.id)
            self._start_trajectory(request.sample.id, path)
        result = loop.run(request.prompt, request.sample.load_images(), trajectory_path=path)
        if result.stop_reason == "model_error":
            raise RuntimeError(f"agent model failed after {result.turns} turn(s): {result.error}")
        return Prediction(
            text=result.final_answer or "",
            tool_calls=sum(result.tool_calls.values()),
            turns=result.turns,
            tools_used=sorted(result.tool_calls),
            usage=dict(result.usage),
            meta={
                "stop_reason": result.stop_reason,
                "tool_call_counts": dict(result.tool_calls),
                "parse_errors": result.parse_errors,
                "tool_errors": result.tool_errors,
            },
        )

    def _start_trajectory(self, sample_id: str, path: Path) -> None:
        """Clear what an earlier run left for this sample, once: later attempts append their runs.

        The attempts of one sample run one after another (``evaluate_sample``), and different
        samples write different files, so with ``workers`` > 1 only this bookkeeping needs the lock.
        """
        with self._started_lock:
            if sample_id in self._started:
                return
            self._started.add(sample_id)
        path.unlink(missing_ok=True)  # a sample retried by --resume starts a fresh trajectory
        shutil.rmtree(path.parent / f"{path.stem}_images", ignore_errors=True)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "tools": [getattr(t, "name", str(t)) for t in self._tool_instances],
            "max_turns": self.max_turns,
        }


def trajectory_file_name(sample_id: str) -> str:
    """``<id with unsafe characters as _>-<8 hex digits of its SHA-1>.jsonl``: readable, and distinct
    for ids that sanitise alike (``a/b`` and ``a_b``) or differ only in case."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in sample_id)[:48]
    digest = hashlib.sha1(sample_id.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{safe}-{digest}.jsonl"


def build_adapter(spec: str, **options: Any) -> ModelAdapter:
    """Build an adapter from a ``--model`` spec: ``NAME`` or ``NAME:ARG`` (see the module docstring).

    ``options`` go to the adapter's constructor (e.g. ``temperature`` for ``openai``).
    """
    name, arg = split_spec(spec)
    cls = MODEL_ADAPTERS.get(name)
    # Options an adapter does not take (a temperature for the oracle) are dropped.
    accepted = adapter_options(name)
    return cls.from_spec(arg, **{k: v for k, v in options.items() if k in accepted and v is not None})


def split_spec(spec: str) -> tuple[str, str]:
    """``(adapter name, argument)`` of a ``--model`` spec; a bare http(s) URL means ``openai``."""
    spec = spec.strip()
    if spec.startswith(("http://", "https://")):
        spec = "openai:" + spec
    name, _, arg = spec.partition(":")
    return name, arg


def adapter_options(name: str) -> set[str]:
    """The keyword options the adapter registered as ``name`` accepts (constructor and ``spec_options``)."""
    import inspect

    cls = MODEL_ADAPTERS.get(name)
    return set(inspect.signature(cls.__init__).parameters) | set(getattr(cls, "spec_options", ()))
