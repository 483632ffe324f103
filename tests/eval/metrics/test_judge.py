"""The LLM judge against a real loopback OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import httpx
import pytest

from glmkit.eval.metrics.judge import (
    JudgeScorer,
    LLMJudge,
    VerdictParseError,
    parse_endpoint,
    parse_verdict,
    reference_text,
)
from glmkit.scoring import Sample
from tests.helpers.openai_server import ScriptedOpenAIServer, reply


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ('{"score": 1}', 1.0),
        ('Reasoning first. {"score": 0}', 0.0),
        ('```json\n{"verdict": "incorrect"}\n```', 0.0),
        ('{"correct": true}', 1.0),
        ("Score: 7/10", 0.7),
        ("score = 0.25", 0.25),
        ("[[CORRECT]]", 1.0),
        ("Verdict: no", 0.0),
        ("Yes.", 1.0),
        ("<think>hmm, is it correct?</think>INCORRECT", 0.0),
        ("1", 1.0),
        # Markdown emphasis, booleans, fences and punctuation (all fell back to 0 before the fix).
        ("**Score**: 1", 1.0),
        ("**Score:** 1", 1.0),
        ("Score: **0**", 0.0),
        ("**Verdict**: correct", 1.0),
        ("__Verdict__ = wrong", 0.0),
        ("Verdict: **Correct**.", 1.0),
        ('```json\n{"score": true}\n```', 1.0),
        ('```json\n{"score": false}\n```', 0.0),
        ("```\n1\n```", 1.0),
        ('{"correct": "Yes."}', 1.0),
        ('{"score": "Incorrect!"}', 0.0),
        ("{'score': 1}", 1.0),
        ("format_score: 1\nFinal score: 0", 0.0),  # a keyword inside another word is not the verdict
        ("sub_verdict: correct\nVerdict: incorrect", 0.0),
    ],
)
def test_parse_verdict(text: str, score: float) -> None:
    assert parse_verdict(text) == pytest.approx(score)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "The answer might be correct or incorrect.",
        '{"score": 3}',
        "Score: 12",
        "banana",
        "**Score**: 12",
        "```\n```",
        "subscore: 1",
        "My_score: 1",
    ],
)
def test_parse_verdict_rejects_garbage(text: str) -> None:
    with pytest.raises(VerdictParseError):
        parse_verdict(text)


def test_scale() -> None:
    assert parse_verdict('{"score": 8}', scale=10) == pytest.approx(0.8)
    assert parse_verdict('{"score": true}', scale=10) == 1.0  # a boolean is a verdict at any scale
    assert parse_verdict("**Rating**: 7", scale=10) == pytest.approx(0.7)


def test_parse_endpoint() -> None:
    assert parse_endpoint("http://h:8000/v1@glm-4.5v") == ("http://h:8000/v1", "glm-4.5v")
    assert parse_endpoint("http://h:8000/v1/") == ("http://h:8000/v1", "default")
    # vLLM serves hub ids as model names
    assert parse_endpoint("http://h:8000/v1@Qwen/Qwen2.5-VL-7B-Instruct") == (
        "http://h:8000/v1",
        "Qwen/Qwen2.5-VL-7B-Instruct",
    )
    assert parse_endpoint("https://user@h/v1@zai-org/GLM-4.5V") == ("https://user@h/v1", "zai-org/GLM-4.5V")
    assert parse_endpoint("https://user@h/v1") == (
        "https://user@h/v1",
        "default",
    )  # '@' in a path is no model
    with pytest.raises(ValueError, match="must start with http"):
        parse_endpoint("h:8000/v1@m")


SAMPLE = Sample("s", "What colour is the car?", ["red"], metadata={"answer_zh": "红色"})


def test_reference_text_names_the_chinese_answer_only_when_there_is_one() -> None:
    assert reference_text(SAMPLE) == "red (Chinese reference: 红色)"
    for blank in ("", "  ", None):
        assert reference_text(Sample("s", "q", ["red"], metadata={"answer_zh": blank})) == "red"


def _judge_by_content(body: dict[str, Any]) -> dict[str, Any]:
    prompt = body["messages"][-1]["content"]
    verdict = 1 if "Candidate answer: crimson red" in prompt else 0
    return reply(content=f'{{"score": {verdict}}}')


def test_valid_verdicts_and_request() -> None:
    with ScriptedOpenAIServer([_judge_by_content]) as srv:
        scorer = JudgeScorer(judge_url=f"{srv.base_url}@judge-7b", backoff=0.01)
        good = scorer.score(SAMPLE, "<|begin_of_box|>crimson red<|end_of_box|>")
        bad = scorer.score(SAMPLE, "blue")
        body = srv.requests[0]
    assert good.scores == {"llm_judge": 1.0} and good.failure is None
    assert bad.scores == {"llm_judge": 0.0} and bad.failure is None
    assert body["model"] == "judge-7b" and body["temperature"] == 0.0
    prompt = body["messages"][-1]["content"]
    assert "What colour is the car?" in prompt and "red" in prompt and "红色" in prompt
    assert good.details["judge_model"] == "scripted"  # the id the server reports is recorded
    assert scorer.describe()["failures"] == 0 and scorer.describe()["calls"] == 2


def test_garbage_verdict_falls_back_and_is_counted() -> None:
    with ScriptedOpenAIServer([reply(content="I like turtles")]) as srv:
        scorer = JudgeScorer(judge_url=srv.base_url, fallback_score=0.25, max_attempts=2, backoff=0.01)
        out = scorer.score(SAMPLE, "red")
        asked = len(srv.requests)
    assert out.scores == {"llm_judge": 0.25}
    assert out.failure is not None and "unparseable judge reply" in out.failure and "turtles" in out.failure
    assert asked == 2  # re-asked once before falling back
    assert scorer.judge.failures == 1


def test_http_500_then_success_is_retried() -> None:
    with ScriptedOpenAIServer([500, reply(content='{"score": 1}')]) as srv:
        scorer = JudgeScorer(judge_url=srv.base_url, http_retries=2, backoff=0.01)
        out = scorer.score(SAMPLE, "red")
        asked = len(srv.requests)
    assert out.scores == {"llm_judge": 1.0} and out.failure is None
    assert asked == 2


def test_unreachable_judge_records_reason() -> None:
    with ScriptedOpenAIServer([503]) as srv:
        judge = LLMJudge(srv.base_url, http_retries=1, backoff=0.01)
        verdict = judge.judge("q", "a", "b")
    assert verdict.score == 0.0
    assert (
        verdict.failure is not None and "judge request failed" in verdict.failure and "503" in verdict.failure
    )


def test_async_verdicts_equal_the_sync_ones_over_a_real_server() -> None:
    responses = ["<|begin_of_box|>crimson red<|end_of_box|>", "blue", "<think>red?</think>crimson red"]
    with ScriptedOpenAIServer([_judge_by_content]) as srv:
        scorer = JudgeScorer(judge_url=f"{srv.base_url}@judge-7b", backoff=0.01, timeout=30.0)
        sync = [scorer.score(SAMPLE, r) for r in responses]
        asynchronous = [asyncio.run(scorer.ascore(SAMPLE, r)) for r in responses]
        bodies = srv.requests
    assert [s.scores["llm_judge"] for s in sync] == [1.0, 0.0, 1.0]
    assert asynchronous == sync  # scores, failure and details (reply, model, attempts)
    assert bodies[:3] == bodies[3:]  # the async path sends exactly the sync request
    assert scorer.describe()["calls"] == 6 and scorer.describe()["failures"] == 0


def test_async_judgements_are_concurrent_on_one_client() -> None:
    # Each request waits at the barrier until three are in flight at once: only requests sent
    # concurrently get past it (a blocking judge would break the barrier and fall back).
    barrier = threading.Barrier(3, timeout=20)

    def held(body: dict[str, Any]) -> dict[str, Any]:
        barrier.wait()
        return _judge_by_content(body)

    async def judge_all(scorer: JudgeScorer) -> list[Any]:
        async with httpx.AsyncClient() as http:  # one shared connection pool
            verdicts = [
                scorer.judge.ajudge(SAMPLE.question, "red", text, http=http)
                for text in ("crimson red", "blue", "crimson red")
            ]
            return await asyncio.gather(*verdicts)

    with ScriptedOpenAIServer([held]) as srv:
        scorer = JudgeScorer(judge_url=srv.base_url, http_retries=0, timeout=30.0)
        verdicts = asyncio.run(judge_all(scorer))
    assert [v.score for v in verdicts] == [1.0, 0.0, 1.0]
    assert all(v.failure is None for v in verdicts)


def test_async_judge_times_out_and_records_the_reason() -> None:
    # A judge that accepts the connection and never answers: each request gives up after 0.2 s,
    # is retried once, and the sample gets the fallback score with the reason.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        scorer = JudgeScorer(
            judge_url=f"http://127.0.0.1:{port}/v1@judge",
            timeout=0.2,
            http_retries=1,
            backoff=0.01,
            fallback_score=0.5,
        )
        out = asyncio.run(scorer.ascore(SAMPLE, "red"))
    assert out.scores == {"llm_judge": 0.5}
    assert out.failure is not None and "judge request failed" in out.failure
    assert "ReadTimeout" in out.failure and "after 2 attempt(s)" in out.failure
    assert out.details["judge_attempts"] == 1 and scorer.judge.failures == 1


def test_async_judge_retries_a_transient_status_then_scores() -> None:
    with ScriptedOpenAIServer([503, reply(content='{"score": 1}')]) as srv:
        scorer = JudgeScorer(judge_url=srv.base_url, http_retries=2, backoff=0.01)
        out = asyncio.run(scorer.ascore(SAMPLE, "red"))
        asked = len(srv.requests)
    assert out.scores == {"llm_judge": 1.0} and out.failure is None and asked == 2


def test_requires_endpoint_and_template_placeholders() -> None:
    with pytest.raises(ValueError, match="--judge-url"):
        JudgeScorer()
    with pytest.raises(ValueError, match=r"\{prediction\}"):
        LLMJudge("http://127.0.0.1:9/v1", template="Q: {question} R: {reference}")


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ('{"score": 7}', 0.7),  # a raw number is on the judge's scale
        ('{"score": "7"}', 0.7),
        ('{"score": "7/10"}', 0.7),  # a fraction is already normalised
        ('{"verdict": "correct"}', 1.0),  # verdict words and booleans are 0/1 at any scale
        ('{"verdict": "wrong"}', 0.0),
        ('{"correct": true}', 1.0),
        ("Score: 7/10", 0.7),
        ("Score: 7", 0.7),
        ("[[CORRECT]]", 1.0),
        ("Yes.", 1.0),
        ("3/10", 0.3),
        ("3", 0.3),
        ("hmm, 2 or 9?</think>9", 0.9),
    ],
)
def test_scale_divides_only_raw_numbers(text: str, score: float) -> None:
    assert parse_verdict(text, scale=10) == pytest.approx(score)
