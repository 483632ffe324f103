"""The reward system: verifiers and judges, run where they belong, aggregated per category.

GLM-5V-Turbo (report section 2.4) keeps the reward system independent of training: given a
sample, a response and what is known about how it was produced, it returns a reward. Three kinds
of verifier run in three places:

- **rule verifiers** (the evaluation metrics: exact match, IoU, edit distance, ...) run locally
  and synchronously, in the caller;
- **CPU-heavy verifiers** named in ``process_verifiers`` run in killable worker processes with a
  hard deadline (:class:`~glmkit.rl.rewards.workers.WorkerPool`): a hung one is killed and
  replaced;
- **model judges** (verifiers whose ``ascore`` is asynchronous, such as eval's ``llm_judge``) run
  asynchronously against their OpenAI-compatible endpoint, at most ``judge_concurrency`` at a
  time per judge (an ``asyncio.Semaphore``), each judgement under a wall-clock deadline
  (``judge_deadline``; the judge's own per-request ``timeout`` and retries with backoff apply
  inside it), and never on an answer longer than ``max_answer_chars`` (it scores 0: long answers
  sway judges).

Each sample is routed by its category (or its source's override) to a
:class:`~glmkit.rl.rewards.routes.CategoryRewards`: format verifiers run first; if the
aggregation has a gate (``gated``) that is closed, the content verifiers are skipped; an empty
answer gets no content reward (content verifiers score 0 unasked). A verifier that raises,
hangs, returns garbage (no score, NaN, a score outside ``score_range``) or reports a failure (a
judge that fell back) never stops training: the sample gets its source's
:class:`~glmkit.rl.rewards.routes.SourcePolicy` (a fallback reward, or exclusion from its group's
baseline: reward NaN, ``excluded=True``) and the failure is counted in :attr:`RewardSystem.counts`.

Use :meth:`RewardSystem.score_async` as each rollout finishes (the completion callback),
:meth:`RewardSystem.score_batch` / :meth:`RewardSystem.score_batch_async` for a batch, or
:meth:`RewardSystem.score` from synchronous code. Nothing here imports Lightning.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from glmkit.eval.metrics.text import extract_answer
from glmkit.rl.rewards.failures import FailureCounts
from glmkit.rl.rewards.result import RewardResult, VerifierOutcome
from glmkit.rl.rewards.routes import (
    CategoryRewards,
    SourcePolicy,
    as_category,
    as_policy,
    check_names,
)
from glmkit.rl.rewards.workers import DeadlineExceeded, RemoteError, WorkerError, WorkerPool
from glmkit.scoring import Sample, Scores, Verifier

Mode = Literal["local", "process", "async"]
ANY_CATEGORY = "*"
"""The ``categories`` key that serves every category not listed."""

T = TypeVar("T")


class UnknownCategory(KeyError):
    """A sample's category has no reward route (and there is no ``"*"`` route)."""

    def __str__(self) -> str:  # KeyError quotes its message; show it as written
        return str(self.args[0]) if self.args else ""


def is_empty_answer(response: str | None) -> bool:
    """True when the response holds no final answer: nothing but whitespace once the reasoning is
    removed, or an empty answer span (``<answer></answer>``, an empty box)."""
    return not extract_answer(response).strip()


def _is_async(verifier: Verifier) -> bool:
    return type(verifier).ascore is not Verifier.ascore


class RewardSystem:
    """Scores responses with verifiers and judges and aggregates them per category.

    Args:
        verifiers: ``{name: verifier}``; the names are what categories and weights refer to.
        categories: ``{category: CategoryRewards}`` (or a mapping with ``verifiers``, ``format``,
            ``aggregator``); the key ``"*"`` serves categories not listed.
        sources: ``{source: SourcePolicy}`` (or a mapping with ``on_failure``, ``fallback_reward``,
            ``rewards``) for sources that differ from the defaults below.
        on_failure: the default failure policy: ``"fallback"`` or ``"exclude"``.
        fallback_reward: the default reward under ``"fallback"``.
        process_verifiers: names of CPU-heavy verifiers to run in killable worker processes.
        num_workers: worker processes for them.
        process_deadline: seconds a process verifier may take per sample before its worker is killed.
        judge_concurrency: judgements in flight at once, per judge (per event loop).
        judge_deadline: wall-clock seconds per judgement, retries included.
        max_answer_chars: judges are not asked about final answers longer than this (score 0);
            ``None``: no cap.
        deadlines: per-verifier deadlines overriding ``process_deadline`` / ``judge_deadline``.
        score_keys: ``{name: score key}`` to read a sub-score (``grounding.iou``) instead of the
            verifier's headline.
        score_range: ``[low, high]`` a score must lie in (else it counts as garbage); ``None``:
            any finite score.
        start_method: ``multiprocessing`` start method of the workers (default: forkserver).
    """

    def __init__(
        self,
        verifiers: Mapping[str, Verifier],
        categories: Mapping[str, CategoryRewards],
        sources: Mapping[str, SourcePolicy] | None = None,
        on_failure: Literal["fallback", "exclude"] = "fallback",
        fallback_reward: float = 0.0,
        process_verifiers: Sequence[str] = (),
        num_workers: int = 2,
        process_deadline: float = 30.0,
        judge_concurrency: int = 8,
        judge_deadline: float = 300.0,
        max_answer_chars: int | None = 4000,
        deadlines: Mapping[str, float] | None = None,
        score_keys: Mapping[str, str] | None = None,
        score_range: Sequence[float] | None = (0.0, 1.0),
        start_method: str | None = None,
    ) -> None:
        if not verifiers:
            raise ValueError("a reward system needs at least one verifier")
        for name, verifier in verifiers.items():
            if not isinstance(verifier, Verifier):
                raise TypeError(
                    f"verifiers[{name!r}] must be a glmkit.scoring.Verifier, got {type(verifier).__name__}"
                )
        self.verifiers: dict[str, Verifier] = dict(verifiers)
        known = list(self.verifiers)
        if not categories:
            raise ValueError("a reward system needs at least one category (the key '*' serves all)")
        self.categories: dict[str, CategoryRewards] = {}
        for cat, value in categories.items():
            where = f"categories[{cat!r}]"
            self.categories[cat] = self._checked(as_category(value, where), known, where)
        self.default_policy = SourcePolicy(on_failure=on_failure, fallback_reward=fallback_reward)
        self.sources: dict[str, SourcePolicy] = {}
        for src, value in (sources or {}).items():
            where = f"sources[{src!r}]"
            policy = as_policy(value, where)
            if policy.rewards is not None:
                self._checked(policy.rewards, known, f"{where}.rewards")
            self.sources[src] = policy

        check_names(list(process_verifiers), known, "process_verifiers")
        self.modes: dict[str, Mode] = {
            n: "process" if n in process_verifiers else "async" if _is_async(v) else "local"
            for n, v in self.verifiers.items()
        }
        for label, value in (("process_deadline", process_deadline), ("judge_deadline", judge_deadline)):
            if not value > 0:
                raise ValueError(f"{label} must be > 0 seconds, got {value!r}")
        self.deadlines = {
            n: float(process_deadline if m == "process" else judge_deadline) for n, m in self.modes.items()
        }
        for name, seconds in (deadlines or {}).items():
            check_names([name], known, "deadlines")
            if not seconds > 0:
                raise ValueError(f"deadlines[{name!r}] must be > 0 seconds, got {seconds!r}")
            self.deadlines[name] = float(seconds)
        if judge_concurrency < 1:
            raise ValueError(f"judge_concurrency must be >= 1, got {judge_concurrency}")
        self.judge_concurrency = int(judge_concurrency)
        if max_answer_chars is not None and max_answer_chars < 1:
            raise ValueError(f"max_answer_chars must be >= 1 or None, got {max_answer_chars}")
        self.max_answer_chars = max_answer_chars
        self.score_keys = {n: self.verifiers[n].key for n in known}
        for name, key in (score_keys or {}).items():
            check_names([name], known, "score_keys")
            self.score_keys[name] = key
        if score_range is not None:
            low, high = (float(x) for x in score_range)
            if not low <= high:
                raise ValueError(f"score_range must be [low, high] with low <= high, got {list(score_range)}")
            self.score_range: tuple[float, float] | None = (low, high)
        else:
            self.score_range = None

        heavy = {n: self.verifiers[n] for n, m in self.modes.items() if m == "process"}
        self.pool = WorkerPool(heavy, num_workers, start_method) if heavy else None
        self.counts = FailureCounts()
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]]
        self._semaphores = weakref.WeakKeyDictionary()

    @staticmethod
    def _checked(category: CategoryRewards, known: list[str], where: str) -> CategoryRewards:
        check_names(category.format, known, f"{where}.format")
        check_names(category.verifiers, known, f"{where}.verifiers")
        both = sorted(set(category.format) & set(category.verifiers))
        if both:
            raise ValueError(f"{where}: {both} listed both as format and as content verifiers")
        assert category.aggregator is not None
        category.aggregator.check(category.verifiers, category.format, f"{where}.aggregator")
        return category

    # -- routing -------------------------------------------------------------------------------

    def route(self, sample: Sample) -> tuple[CategoryRewards, SourcePolicy]:
        """The verifiers/aggregation and the failure policy for ``sample``.

        Raises:
            UnknownCategory: the sample's category has no entry and there is no ``"*"`` entry.
        """
        policy = self.sources.get(sample.source, self.default_policy)
        if policy.rewards is not None:
            return policy.rewards, policy
        category = self.categories.get(sample.category) or self.categories.get(ANY_CATEGORY)
        if category is None:
            raise UnknownCategory(
                f"the reward system has no category {sample.category!r} (sample {sample.id!r}, source "
                f"{sample.source!r}); its categories: {', '.join(sorted(self.categories))}. Add it, "
                f"or a '{ANY_CATEGORY}' entry for every other category"
            )
        return category, policy

    # -- scoring -------------------------------------------------------------------------------

    async def score_async(
        self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None
    ) -> RewardResult:
        """The reward of one response, without blocking the event loop on judges or process
        verifiers (rule verifiers run inline). Call it from a rollout's completion callback."""
        category, policy = self.route(sample)
        fmt = category.format
        aggregator = category.aggregator
        assert aggregator is not None
        empty = is_empty_answer(response)
        gate = aggregator.gate(fmt)
        first = [n for n in category.names if n in gate]
        rest = [n for n in category.names if n not in gate]
        outcomes = await self._run_many(first, sample, response, metadata, category, empty)
        gate_scores = {n: o.score for n, o in outcomes.items() if o.score is not None}
        if any(o.status == "failed" for o in outcomes.values()) or not aggregator.gate_open(gate_scores, fmt):
            outcomes.update({n: VerifierOutcome(n, None, "skipped") for n in rest})
        else:
            outcomes.update(await self._run_many(rest, sample, response, metadata, category, empty))
        breakdown = {n: outcomes[n] for n in category.names}

        result = RewardResult(
            sample_id=sample.id,
            source=sample.source,
            category=sample.category,
            reward=math.nan,
            breakdown=breakdown,
            empty_answer=empty,
        )
        if result.failed:
            result.policy = policy.on_failure
            if policy.on_failure == "exclude":
                result.excluded = True
            else:
                result.reward = policy.fallback_reward
        else:
            scores = {n: o.score for n, o in breakdown.items() if o.score is not None}
            result.aggregated = result.reward = float(aggregator(scores, fmt))
        self.counts.record(result)
        return result

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> RewardResult:
        """:meth:`score_async` from synchronous code. A sample whose verifiers are all rule
        verifiers is scored inline (also inside a running event loop); one that needs a judge or a
        worker runs an event loop, so it cannot be called from inside one (use ``await
        score_async``)."""
        category, _ = self.route(sample)
        return self._drive(
            self.score_async(sample, response, metadata),
            all(self.modes[n] == "local" for n in category.names),
        )

    async def score_batch_async(
        self,
        samples: Sequence[Sample],
        responses: Sequence[str],
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[RewardResult]:
        """Rewards of a batch, scored concurrently (judges within their concurrency limit)."""
        metas = _batch_metadata(samples, responses, metadata)
        return list(
            await asyncio.gather(
                *(self.score_async(s, r, m) for s, r, m in zip(samples, responses, metas, strict=True))
            )
        )

    def score_batch(
        self,
        samples: Sequence[Sample],
        responses: Sequence[str],
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[RewardResult]:
        """:meth:`score_batch_async` from synchronous code (runs an event loop when a judge or a
        worker is involved)."""
        if all(self.modes[n] == "local" for sample in samples for n in self.route(sample)[0].names):
            metas = _batch_metadata(samples, responses, metadata)
            return [self.score(s, r, m) for s, r, m in zip(samples, responses, metas, strict=True)]
        return self._drive(self.score_batch_async(samples, responses, metadata), local=False)

    @staticmethod
    def _drive(coro: Coroutine[Any, Any, T], local: bool) -> T:
        if local:  # nothing awaits a real future: run the coroutine to its end without a loop
            try:
                coro.send(None)
            except StopIteration as stop:
                return stop.value
            coro.close()
            raise RuntimeError("a local-only reward suspended; this is a bug in the reward system")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        coro.close()
        raise RuntimeError(
            "RewardSystem.score/score_batch called inside a running event loop for a sample that needs "
            "a judge or a worker process; use `await score_async(...)` / `await score_batch_async(...)`"
        )

    # -- running one verifier ------------------------------------------------------------------

    async def _run_many(
        self,
        names: Sequence[str],
        sample: Sample,
        response: str,
        metadata: Mapping[str, Any] | None,
        category: CategoryRewards,
        empty: bool,
    ) -> dict[str, VerifierOutcome]:
        """Outcomes of ``names``: judges and process verifiers start first, rule verifiers run
        inline meanwhile."""
        out: dict[str, VerifierOutcome] = {}
        pending: dict[str, asyncio.Future[VerifierOutcome]] = {}
        todo = []
        for name in names:
            if empty and name in category.verifiers:
                out[name] = VerifierOutcome(name, 0.0, "empty", details={"reason": "empty answer"})
            elif self.modes[name] == "local":
                todo.append(name)
            else:
                pending[name] = asyncio.ensure_future(self._run_remote(name, sample, response, metadata))
        try:
            for name in todo:
                start = time.perf_counter()
                try:
                    scores: Any = self.verifiers[name].score(sample, response, metadata)
                except Exception as exc:
                    out[name] = _failed(name, "error", f"{type(exc).__name__}: {exc}", start)
                else:
                    out[name] = self._read(name, scores, start)
            for name, task in pending.items():
                out[name] = await task
        finally:
            for task in pending.values():
                task.cancel()
        return out

    async def _run_remote(
        self, name: str, sample: Sample, response: str, metadata: Mapping[str, Any] | None
    ) -> VerifierOutcome:
        deadline = self.deadlines[name]
        if self.modes[name] == "process":
            assert self.pool is not None
            start = time.perf_counter()
            try:
                scores: Any = await self.pool.arun(name, sample, response, metadata, deadline)
            except DeadlineExceeded as exc:
                return _failed(name, "timeout", str(exc), start)
            except WorkerError as exc:
                return _failed(name, "worker", str(exc), start)
            except RemoteError as exc:
                return _failed(name, "error", str(exc), start)
            return self._read(name, scores, start)

        answer = extract_answer(response)
        if self.max_answer_chars is not None and len(answer) > self.max_answer_chars:
            reason = f"answer of {len(answer)} characters exceeds max_answer_chars={self.max_answer_chars}"
            return VerifierOutcome(name, 0.0, "capped", details={"reason": reason})
        async with self._semaphore(name):
            start = time.perf_counter()
            try:
                scores = await asyncio.wait_for(
                    self.verifiers[name].ascore(sample, response, metadata), deadline
                )
            except asyncio.TimeoutError:
                return _failed(name, "timeout", f"{name} did not answer within {deadline:g} s", start)
            except Exception as exc:
                return _failed(name, "error", f"{type(exc).__name__}: {exc}", start)
        return self._read(name, scores, start)

    def _semaphore(self, name: str) -> asyncio.Semaphore:
        """The judge's semaphore in the running loop (a semaphore belongs to one event loop)."""
        loop = asyncio.get_running_loop()
        per_loop = self._semaphores.setdefault(loop, {})
        if name not in per_loop:
            per_loop[name] = asyncio.Semaphore(self.judge_concurrency)
        return per_loop[name]

    def _read(self, name: str, scores: Any, start: float) -> VerifierOutcome:
        """The outcome of a verifier's return value: its score, or why it is unusable."""
        if not isinstance(scores, Scores):
            return _failed(name, "garbage", f"returned {type(scores).__name__}, not Scores", start)
        key = self.score_keys[name]
        if key not in scores.scores:
            return _failed(name, "garbage", f"no score {key!r} among {sorted(scores.scores)}", start)
        raw = scores.scores[key]
        try:
            value = float(raw)
        except (TypeError, ValueError):
            return _failed(name, "garbage", f"score {key!r} is not a number: {raw!r}", start)
        if not math.isfinite(value):
            return _failed(name, "garbage", f"score {key!r} is {value}", start)
        if self.score_range is not None and not self.score_range[0] <= value <= self.score_range[1]:
            low, high = self.score_range
            return _failed(
                name, "garbage", f"score {key!r} = {value:g} is outside [{low:g}, {high:g}]", start
            )
        seconds = time.perf_counter() - start
        details = dict(scores.details) if isinstance(scores.details, Mapping) else {"details": scores.details}
        if scores.failure is not None:
            return VerifierOutcome(name, None, "failed", scores.failure, "reported", seconds, details)
        return VerifierOutcome(name, value, "ok", seconds=seconds, details=details)

    # -- lifecycle and logging -----------------------------------------------------------------

    def log_dict(self, prefix: str = "rewards/") -> dict[str, float]:
        """The failure counts as flat floats for ``LightningModule.log_dict`` (see :mod:`.failures`)."""
        return self.counts.as_dict(prefix)

    def describe(self) -> dict[str, Any]:
        """The settings, for a run's log."""
        return {
            "verifiers": {
                n: {**v.describe(), "mode": self.modes[n], "score_key": self.score_keys[n]}
                for n, v in self.verifiers.items()
            },
            "categories": {
                c: {"format": r.format, "verifiers": r.verifiers, "aggregator": r.aggregator.describe()}  # type: ignore[union-attr]
                for c, r in self.categories.items()
            },
            "deadlines": dict(self.deadlines),
            "judge_concurrency": self.judge_concurrency,
            "max_answer_chars": self.max_answer_chars,
        }

    def close(self) -> None:
        """Stop the worker processes and close the verifiers."""
        if self.pool is not None:
            self.pool.close()
        for verifier in self.verifiers.values():
            verifier.close()

    def __enter__(self) -> RewardSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _batch_metadata(
    samples: Sequence[Sample], responses: Sequence[str], metadata: Sequence[Mapping[str, Any] | None] | None
) -> list[Mapping[str, Any] | None]:
    """One metadata entry per sample (``None`` when not given); the lengths must match."""
    if len(responses) != len(samples):
        raise ValueError(f"got {len(responses)} responses for {len(samples)} samples; give one per sample")
    if metadata is None:
        return [None] * len(samples)
    if len(metadata) != len(samples):
        raise ValueError(
            f"got {len(metadata)} metadata entries for {len(samples)} samples; give one per sample"
        )
    return list(metadata)


def _failed(name: str, kind: Any, reason: str, start: float) -> VerifierOutcome:
    return VerifierOutcome(name, None, "failed", reason, kind, time.perf_counter() - start)


def load_reward_system(spec: Mapping[str, Any] | str | Path) -> RewardSystem:
    """Build a :class:`RewardSystem` from a ``{class_path, init_args}`` spec or a YAML/JSON file
    holding one, with :func:`glmkit.config.instantiate` (registered names work for verifiers
    and aggregators)."""
    from glmkit.config import instantiate

    where = "reward system spec"
    if isinstance(spec, (str, Path)):
        import yaml

        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"reward system spec not found: {path}")
        where = str(path)
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    system = instantiate(spec, ("metrics", "reward_aggregators"), where=where)
    if not isinstance(system, RewardSystem):
        raise TypeError(f"{where}: class_path builds {type(system).__name__}, not a RewardSystem")
    return system
