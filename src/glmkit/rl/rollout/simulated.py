"""A model-free rollout engine with seeded, heavy-tailed request latencies.

Real RL rollouts finish at very different times: response lengths are long-tailed, so a step that
waits for its last request waits for the tail (the reason GLM-5V-Turbo, section 2.4, scores each
request as it finishes and aborts the slowest). :class:`SimulatedEngine` reproduces that without a
model: each request sleeps for a log-normal latency and answers with the sample's reference
answer (probability ``correct_prob``) or a wrong one.

Every random draw is a pure function of ``(seed, prompt id, index, attempt)``, never of the order
of submission, so a run is reproducible however its requests interleave and whatever was aborted;
a re-issued request (``attempt + 1``) draws a new latency. ``prompt_sigma`` adds a per-prompt
log-normal factor shared by the group (hard prompts are slow for every sample).

Latencies are ``asyncio.sleep``: run under :func:`~.virtual_time.run_virtual` they cost no wall
time and are exact, which is how the tests use the engine; the pipeline benchmark runs it on the
real clock.
"""

from __future__ import annotations

import asyncio
import math
import zlib

import numpy as np

from glmkit.rl.rollout.engine import ROLLOUT_ENGINES, Completion, RolloutEngine, RolloutRequest


@ROLLOUT_ENGINES.register("simulated")
class SimulatedEngine(RolloutEngine):
    """Log-normal latencies, no model.

    Args:
        median_latency_s: the median request latency (seconds).
        sigma: log-normal shape of the per-request latency (1.0: the slowest of 256 requests is
            about 18x the median).
        prompt_sigma: log-normal shape of a per-prompt factor shared by its group (0: none).
        max_latency_s: clip latencies here (None: no clip).
        max_concurrency: requests generated at once; the rest wait in submission order
            (None: no limit, as a server with room for the whole step).
        tokens_per_s: response tokens per second of latency (``response_tokens``).
        correct_prob: probability that a response is the sample's reference answer.
        failure_rate: probability that a request fails (an engine error), for testing retries.
        seed: the seed of every draw.
    """

    def __init__(
        self,
        median_latency_s: float = 1.0,
        sigma: float = 1.0,
        prompt_sigma: float = 0.0,
        max_latency_s: float | None = None,
        max_concurrency: int | None = None,
        tokens_per_s: float = 100.0,
        correct_prob: float = 0.5,
        failure_rate: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if median_latency_s <= 0:
            raise ValueError(f"median_latency_s must be > 0, got {median_latency_s}")
        if sigma < 0 or prompt_sigma < 0:
            raise ValueError(f"sigma and prompt_sigma must be >= 0, got {sigma} and {prompt_sigma}")
        if max_latency_s is not None and max_latency_s <= 0:
            raise ValueError(f"max_latency_s must be > 0 or None, got {max_latency_s}")
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1 or None, got {max_concurrency}")
        if tokens_per_s <= 0:
            raise ValueError(f"tokens_per_s must be > 0, got {tokens_per_s}")
        for name, p in (("correct_prob", correct_prob), ("failure_rate", failure_rate)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        self.median_latency_s = median_latency_s
        self.sigma = sigma
        self.prompt_sigma = prompt_sigma
        self.max_latency_s = max_latency_s
        self.max_concurrency = max_concurrency
        self.tokens_per_s = tokens_per_s
        self.correct_prob = correct_prob
        self.failure_rate = failure_rate
        self.seed = seed
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    def _rng(self, *key: int | str) -> np.random.Generator:
        words = [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in key]
        return np.random.default_rng([self.seed, *words])

    def draw(self, request: RolloutRequest) -> tuple[float, bool, bool]:
        """(latency in seconds, correct, fails) of ``request``: a pure function of its key."""
        rng = self._rng(request.prompt_id, request.index, request.attempt)
        log_latency = math.log(self.median_latency_s) + self.sigma * rng.standard_normal()
        if self.prompt_sigma:
            log_latency += self.prompt_sigma * self._rng(request.prompt_id).standard_normal()
        latency = math.exp(log_latency)
        if self.max_latency_s is not None:
            latency = min(latency, self.max_latency_s)
        correct = bool(rng.random() < self.correct_prob)
        fails = bool(rng.random() < self.failure_rate)
        return latency, correct, fails

    def latency(self, request: RolloutRequest) -> float:
        """The latency ``request`` will take once it starts generating (seconds)."""
        return self.draw(request)[0]

    def _semaphore(self) -> asyncio.Semaphore | None:
        if self.max_concurrency is None:
            return None
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:  # one per event loop
            self._slots = (loop, asyncio.Semaphore(self.max_concurrency))
        return self._slots[1]

    async def generate(self, request: RolloutRequest) -> Completion:
        """Sleep for the request's latency, then answer (or fail, with ``failure_rate``)."""
        latency, correct, fails = self.draw(request)
        slots = self._semaphore()
        if slots is not None:
            async with slots:
                await asyncio.sleep(latency)
        else:
            await asyncio.sleep(latency)
        if fails:
            raise RuntimeError(
                f"simulated engine failure on {request.request_id} (attempt {request.attempt})"
            )
        answer = request.sample.answer
        if isinstance(answer, list) and answer:
            answer = answer[0]
        response = str(answer) if correct else f"not {answer}"
        tokens = max(1, min(request.params.max_new_tokens, round(latency * self.tokens_per_s)))
        finish = "length" if tokens == request.params.max_new_tokens else "stop"
        return Completion(
            request,
            response,
            finish_reason=finish,
            response_tokens=tokens,
            weights_version=self.weights_version,
            metadata={"latency_s": latency},
        )
