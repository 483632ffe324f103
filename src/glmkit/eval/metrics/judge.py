"""An LLM judge over any OpenAI-compatible endpoint (report sections 2.3 and 5: model-based judges).

Free-form answers (ImageMining, open VQA) cannot be matched by rules, so a judge model reads the
question, the reference answer(s) and the candidate and returns a verdict. The judge is a metric
like any other, with three properties the harness relies on:

* transient HTTP failures (429, 5xx, connection errors, timeouts) are retried with backoff by
  :class:`~glmkit.agent.client.OpenAIChatClient`, whose ``chat`` (:meth:`LLMJudge.judge`) and
  ``achat`` (:meth:`LLMJudge.ajudge`) share one retry policy;
* a reply that cannot be read as a verdict is asked again, up to ``max_attempts`` times;
* when the judge still fails, the sample gets ``fallback_score`` and the reason (HTTP error,
  unparseable reply, score out of range) is recorded and counted in the run summary, so a flaky
  judge is visible instead of silently deflating or inflating the score.

The judge's model id (as the server reports it) is recorded with each verdict.
"""

from __future__ import annotations

import ast
import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from glmkit.eval.metrics.base import METRICS, reference_answers, scorer_info
from glmkit.eval.metrics.text import extract_answer, strip_thinking
from glmkit.scoring import Sample, Scores, Verifier

if TYPE_CHECKING:
    from glmkit.agent.client import ChatCompletion

DEFAULT_TEMPLATE = """You are grading a model's answer to a question about one or more images.

Question: {question}
Reference answer: {reference}
Candidate answer: {prediction}

The candidate is correct when it states the same fact as the reference (wording, language, units
and formatting may differ; extra explanation is fine; a different or hedged final answer is not).
Reply with only a JSON object: {{"score": 1}} if the candidate is correct, {{"score": 0}} if it is not."""

# Markdown emphasis may wrap the keyword, the separator or the value: "**Score**: 1", "**Score:** 1",
# "Score: **1**", "__Verdict__ = correct". The keyword (or the emphasis before it) must start a word,
# so "format_score: 1" or "sub_verdict: correct" is not read as the verdict.
_EMPHASIS = r"[*_]*"
_WORD_START = rf"(?<![A-Za-z0-9_]){_EMPHASIS}"
_SCORE_RE = re.compile(
    rf"{_WORD_START}(?:score|rating|grade){_EMPHASIS}\s*[:=]\s*{_EMPHASIS}\s*([-+]?\d+(?:\.\d+)?)\s*"
    r"(?:/\s*(\d+(?:\.\d+)?))?",
    re.I,
)
_FRACTION_RE = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*(?:/\s*(\d+(?:\.\d+)?))?\s*$")
_VERDICT_TAG_RE = re.compile(
    rf"(?:\[\[\s*([A-Za-z]+)\s*\]\]|{_WORD_START}verdict{_EMPHASIS}\s*[:=]\s*{_EMPHASIS}\s*([A-Za-z]+))",
    re.I,
)
_FENCE_RE = re.compile(r"^```[\w-]*[ \t]*\n?(.*?)\n?```$", re.S)
# Punctuation and emphasis around a verdict word: "Yes.", "**Correct**", "`true`".
_WORD_STRIP = " \t\n.,;:!?*_`\"'"
_POSITIVE = {"correct", "yes", "true", "right", "pass"}
_NEGATIVE = {"incorrect", "no", "false", "wrong", "fail"}


class VerdictParseError(ValueError):
    """A judge reply holds no readable verdict (or a score outside the allowed range)."""


def parse_endpoint(spec: str) -> tuple[str, str]:
    """Split ``"http://host:8000/v1@model-name"`` into (base URL, model); the model defaults to ``"default"``.

    The model name may hold ``/`` (``http://host/v1@Qwen/Qwen2.5-VL-7B-Instruct``, as vLLM serves
    hub ids).
    """
    spec = spec.strip()
    if not spec.startswith(("http://", "https://")):
        raise ValueError(
            f"endpoint {spec!r} must start with http:// or https:// (form: http://host/v1@model)"
        )
    # The model follows the first "@" of the URL's path: hub-style names hold "/" themselves
    # ("http://host/v1@zai-org/GLM-4.5V"), and an "@" before the path is the URL's own userinfo.
    path_start = spec.find("/", spec.index("://") + 3)
    at = spec.find("@", path_start) if path_start >= 0 else spec.rfind("@")
    if at >= 0 and spec[at + 1 :].strip():
        return spec[:at].rstrip("/"), spec[at + 1 :].strip()
    return spec.rstrip("/"), "default"


def _verdict_word(word: str) -> float | None:
    word = word.strip(_WORD_STRIP).lower()
    if word in _POSITIVE:
        return 1.0
    if word in _NEGATIVE:
        return 0.0
    return None


def _from_json(text: str, scale: float) -> float | None:
    """The score of the first JSON object with a verdict, normalised to [0, 1] (see :func:`parse_verdict`)."""
    decoder = json.JSONDecoder()
    for start in [m.start() for m in re.finditer(r"\{", text)]:
        try:
            obj, _ = decoder.raw_decode(text[start:])
        except json.JSONDecodeError:
            obj = _python_dict(text[start:])
        if not isinstance(obj, dict):
            continue
        for key in ("score", "rating", "grade"):
            value = obj.get(key)
            if isinstance(value, bool):  # {"score": true}: a verdict, 0 or 1 at any scale
                return float(value)
            if isinstance(value, (int, float)):
                return float(value) / scale
            if isinstance(value, str) and _FRACTION_RE.match(value):
                return _fraction(value, scale)
            if isinstance(value, str) and _verdict_word(value) is not None:
                return _verdict_word(value)
        for key in ("verdict", "judgement", "judgment", "correct", "answer"):
            value = obj.get(key)
            if isinstance(value, bool):
                return float(value)
            if isinstance(value, str) and _verdict_word(value) is not None:
                return _verdict_word(value)
    return None


def _python_dict(text: str) -> Any:
    """A flat Python dict literal at the start of ``text`` (``{'score': 1}``, single quotes), else ``None``."""
    m = re.match(r"\{[^{}]*\}", text)
    if m is None:
        return None
    try:
        return ast.literal_eval(m.group(0))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def _fraction(text: str, scale: float) -> float:
    """``"7/10"`` -> 0.7 (already normalised); a bare number ``"7"`` is a raw score, divided by ``scale``."""
    m = _FRACTION_RE.match(text)
    assert m is not None
    value = float(m.group(1))
    return value / float(m.group(2)) if m.group(2) else value / scale


def parse_verdict(text: str, scale: float = 1.0) -> float:
    """Read a score in [0, 1] from a judge reply.

    Accepted, in order: a JSON object with ``score`` (a number, fraction string, boolean or
    verdict word) or ``verdict``/``correct`` (a boolean or verdict word), also inside a fenced code
    block or written as a Python dict; ``Score: 7/10`` or ``Score: 0.8``; ``[[CORRECT]]`` /
    ``Verdict: yes``; or a reply that is a single verdict word or number. Markdown emphasis around
    the keyword or value (``**Score**: 1``, ``Verdict: **Correct**``) and punctuation after a verdict
    word (``"Yes."``) are ignored. Only raw numbers are divided by ``scale`` (10 for a 0-10 judge):
    a fraction such as ``7/10`` is already normalised and verdict words or booleans are 0 or 1 at
    any scale. Anything else raises :class:`VerdictParseError`; prose that merely mentions
    'correct' is not guessed at.
    """
    body = strip_thinking(text).strip()
    fenced = _FENCE_RE.match(body)
    if fenced:  # a reply that is one fenced block: judge its content
        body = fenced.group(1).strip()
    if not body:
        raise VerdictParseError("empty judge reply")
    score = _from_json(body, scale)
    if score is None:
        m = _SCORE_RE.search(body)
        if m:
            score = float(m.group(1)) / (float(m.group(2)) if m.group(2) else scale)
    if score is None:
        m = _VERDICT_TAG_RE.search(body)
        if m:
            score = _verdict_word(m.group(1) or m.group(2))
    if score is None:
        bare = body.strip(" \t\n.!*`\"'").lower()
        if _FRACTION_RE.match(bare):
            score = _fraction(bare, scale)
        else:
            score = _verdict_word(bare)
    if score is None:
        raise VerdictParseError(f"no verdict found in judge reply {body[:200]!r}")
    if not 0.0 <= score <= 1.0:
        raise VerdictParseError(f"judge score {score:g} is outside [0, 1] (reply {body[:200]!r})")
    return score


@dataclass
class JudgeVerdict:
    """One judgement: the score, the raw reply, the judge's model id and, on failure, why."""

    score: float
    raw: str = ""
    judge_model: str | None = None
    attempts: int = 0
    failure: str | None = None
    errors: list[str] = field(default_factory=list)


class LLMJudge:
    """Asks a chat model whether a prediction matches the reference.

    Args:
        base_url: OpenAI-compatible endpoint, e.g. ``http://localhost:8000/v1``.
        model: model name sent to the endpoint.
        template: prompt with ``{question}``, ``{reference}``, ``{prediction}`` placeholders.
        system_prompt: optional system message.
        scale: divide raw scores by this (10 for a 0-10 rubric).
        max_attempts: requests per judgement when replies are unparseable.
        fallback_score: score given when every attempt fails.
        http_retries / backoff / timeout: passed to the HTTP client.
    """

    def __init__(
        self,
        base_url: str,
        model: str = "default",
        template: str = DEFAULT_TEMPLATE,
        system_prompt: str | None = None,
        scale: float = 1.0,
        max_attempts: int = 2,
        fallback_score: float = 0.0,
        http_retries: int = 2,
        backoff: float = 0.5,
        timeout: float = 120.0,
        api_key: str | None = None,
        max_tokens: int = 1024,
    ) -> None:
        from glmkit.agent.client import OpenAIChatClient

        for placeholder in ("{question}", "{reference}", "{prediction}"):
            if placeholder not in template:
                raise ValueError(f"judge template lacks the placeholder {placeholder}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.client = OpenAIChatClient(
            base_url, model=model, api_key=api_key, timeout=timeout, max_retries=http_retries, backoff=backoff
        )
        self.template = template
        self.system_prompt = system_prompt
        self.scale = scale
        self.max_attempts = max_attempts
        self.fallback_score = fallback_score
        self.max_tokens = max_tokens
        self._lock = threading.Lock()
        self.calls = 0
        self.failures = 0

    def messages(self, question: str, reference: str, prediction: str) -> list[dict[str, Any]]:
        """The chat messages of one judgement."""
        prompt = self.template.format(question=question, reference=reference, prediction=prediction)
        msgs: list[dict[str, Any]] = (
            [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        )
        return [*msgs, {"role": "user", "content": prompt}]

    def judge(self, question: str, reference: str, prediction: str) -> JudgeVerdict:
        """Judge one prediction; never raises for judge-side problems (see ``failure``)."""
        from glmkit.agent.client import ChatClientError

        verdict = JudgeVerdict(score=self.fallback_score)
        messages = self.messages(question, reference, prediction)
        for attempt in range(1, self.max_attempts + 1):
            verdict.attempts = attempt
            try:
                completion = self.client.chat(messages, **self._request_params())
            except ChatClientError as exc:
                verdict.errors.append(f"judge request failed: {exc}")
                break  # the client already retried transient errors
            if self._read_reply(verdict, completion):
                return self._finish(verdict, ok=True)
        return self._finish(verdict, ok=False)

    async def ajudge(
        self, question: str, reference: str, prediction: str, *, http: httpx.AsyncClient | None = None
    ) -> JudgeVerdict:
        """:meth:`judge` without blocking: the same requests, retries and verdict, sent by
        :meth:`~glmkit.agent.client.OpenAIChatClient.achat` under the client's per-request ``timeout``.

        Args:
            http: a client to send with (a caller scoring many samples shares one, with its own
                connection limits); by default one is opened for this judgement.
        """
        from glmkit.agent.client import ChatClientError

        if http is None:
            async with httpx.AsyncClient(timeout=self.client.timeout) as own:
                return await self.ajudge(question, reference, prediction, http=own)
        verdict = JudgeVerdict(score=self.fallback_score)
        messages = self.messages(question, reference, prediction)
        for attempt in range(1, self.max_attempts + 1):
            verdict.attempts = attempt
            try:
                completion = await self.client.achat(messages, http=http, **self._request_params())
            except ChatClientError as exc:
                verdict.errors.append(f"judge request failed: {exc}")
                break  # transient errors were already retried
            if self._read_reply(verdict, completion):
                return self._finish(verdict, ok=True)
        return self._finish(verdict, ok=False)

    def _request_params(self) -> dict[str, Any]:
        """The sampling parameters of every judge request (sync and async send the same body)."""
        return {"temperature": 0.0, "max_tokens": self.max_tokens}

    def _read_reply(self, verdict: JudgeVerdict, completion: ChatCompletion) -> bool:
        """Record a reply in ``verdict``; True when it held a verdict."""
        verdict.raw = completion.content
        verdict.judge_model = completion.raw.get("model") or self.client.model
        try:
            verdict.score = parse_verdict(completion.content, self.scale)
        except VerdictParseError as exc:
            verdict.errors.append(f"unparseable judge reply: {exc}")
            return False
        return True

    def _finish(self, verdict: JudgeVerdict, ok: bool) -> JudgeVerdict:
        """Count the judgement; a failed one gets the fallback score and its last error."""
        if ok:
            verdict.failure = None
        else:
            verdict.score = self.fallback_score
            verdict.failure = verdict.errors[-1] if verdict.errors else "judge failed"
        with self._lock:
            self.calls += 1
            self.failures += not ok
        return verdict


def reference_text(sample: Sample) -> str:
    """The reference shown to the judge: all references, plus ``metadata.answer_zh`` when present."""
    refs = reference_answers(sample.answer)
    text = " | ".join(refs)
    zh = sample.metadata_text("answer_zh")
    if zh and zh not in refs:
        text = f"{text} (Chinese reference: {zh})"
    return text


@METRICS.register("llm_judge")
class JudgeScorer(Verifier):
    """Score = the judge's verdict on the extracted final answer; failures fall back and are counted.

    :meth:`score` asks the judge synchronously, :meth:`ascore` without blocking (the RL reward
    system's path); both give the same verdict for the same reply.

    Args:
        judge_url: ``http://host/v1@model`` (or a base URL and ``judge_model``); required. A
            benchmark leaves it ``null`` in the metric's ``init_args`` and ``glmkit eval
            --judge-url`` fills it in.
        judge_model: model name when ``judge_url`` has none.
        timeout: seconds per judge request (sync and async), after which the request counts as a
            transient failure and is retried.
        template, scale, max_attempts, fallback_score, http_retries, backoff, api_key, max_tokens:
            see :class:`LLMJudge`.
    """

    name = "llm_judge"

    def __init__(
        self,
        judge_url: str | None = None,
        judge_model: str | None = None,
        template: str = DEFAULT_TEMPLATE,
        scale: float = 1.0,
        max_attempts: int = 2,
        fallback_score: float = 0.0,
        http_retries: int = 2,
        backoff: float = 0.5,
        timeout: float = 120.0,
        api_key: str | None = None,
        max_tokens: int = 1024,
        extract: bool = True,
        key: str | None = None,
    ) -> None:
        super().__init__(key)
        if not judge_url:
            raise ValueError(
                f"the {self.name} metric needs a judge endpoint: set init_args.judge_url or pass "
                "--judge-url http://host/v1@model"
            )
        base_url, model = parse_endpoint(judge_url)
        self.judge = LLMJudge(
            base_url,
            model=judge_model or model,
            template=template,
            scale=scale,
            max_attempts=max_attempts,
            fallback_score=fallback_score,
            http_retries=http_retries,
            backoff=backoff,
            timeout=timeout,
            api_key=api_key,
            max_tokens=max_tokens,
        )
        self.extract = extract

    def check_answer(self, sample: Sample) -> None:
        reference_answers(sample.answer)

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        verdict = self.judge.judge(sample.question, reference_text(sample), self._candidate(response))
        return self._verdict_scores(verdict)

    async def ascore(
        self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None
    ) -> Scores:
        verdict = await self.judge.ajudge(sample.question, reference_text(sample), self._candidate(response))
        return self._verdict_scores(verdict)

    def _candidate(self, response: str) -> str:
        return extract_answer(response) if self.extract else strip_thinking(response)

    def _verdict_scores(self, verdict: JudgeVerdict) -> Scores:
        out = self._out(
            verdict.score,
            {
                "judge_reply": verdict.raw[:2000],
                "judge_model": verdict.judge_model,
                "judge_attempts": verdict.attempts,
                "judge_errors": verdict.errors,
            },
        )
        out.failure = verdict.failure
        return out

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "judge_url": self.judge.client.base_url,
            "judge_model": self.judge.client.model,
            "calls": self.judge.calls,
            "failures": self.judge.failures,
            **scorer_info(f"LLM judge {self.judge.client.model} with glmkit's binary prompt", "glmkit"),
        }
