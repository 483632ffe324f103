"""Parity of ``simplevqa`` with SimpleVQA ``llm_as_a_vqa_judger.py`` (reading the judge's reply) and
``simpleVQA_eval.py``, ``SimpleVQAEval`` (aggregation), and the judge round trip on a scripted endpoint.

Reply: fences removed, stripped, a ``}`` appended when missing, ``json.loads``; the FIRST value is the
verdict (its ``conclusion`` when it is an object); ``**`` removed; a non-verdict longer than three
characters counts as 未尝试; anything else stops the reference with an error (a judge failure here).
"""

from __future__ import annotations

import pytest

from glmkit.eval.metrics.glm_wrapper import reference_prediction
from glmkit.eval.metrics.judge import VerdictParseError
from glmkit.eval.metrics.simplevqa import (
    CORRECT,
    INCORRECT,
    NOT_ATTEMPTED,
    SIMPLEVQA_TEMPLATE,
    SimpleVQAScorer,
    candidate_lines,
    parse_simplevqa_reply,
    simplevqa_summary,
)
from glmkit.scoring import Sample
from tests.helpers.openai_server import ScriptedOpenAIServer, reply

FAIL = "failure"

# (judge reply, expected verdict or FAIL)
CASES = [
    ('```json\n{"预测答案0": "正确"}\n```', CORRECT),
    ('{"预测答案0": "错误"}', INCORRECT),
    ('{"预测答案0": "未尝试"}', NOT_ATTEMPTED),
    # markdown bold is removed
    ('{"预测答案0": "**正确**"}', CORRECT),
    # four characters, not a verdict: counted as not attempted
    ('{"预测答案0": "回答正确"}', NOT_ATTEMPTED),
    # three characters, not a verdict: the reference's mapper raises KeyError
    ('{"预测答案0": "正确。"}', FAIL),
    # the key's name does not matter, only the first value
    ('{"答案": "正确"}', CORRECT),
    # an object value gives its conclusion
    ('{"预测答案0": {"conclusion": "错误", "reasoning": "..."}}', INCORRECT),
    # a missing closing brace is added
    ('{"预测答案0": "正确"', CORRECT),
    ("not json", FAIL),
    # an empty reply: res[-1] raises, the reply reads as unparsable, the mapper raises
    ("", FAIL),
    ('```python\n{"预测答案0": "未尝试"}```', NOT_ATTEMPTED),
    # only the first candidate's verdict is read
    ('{"预测答案0": "正确", "预测答案1": "错误"}', CORRECT),
    ('{"预测答案0": {"conclusion": "**正确**"}}', CORRECT),
    ('{"预测答案0": "A"}', FAIL),
    # English words are longer than three characters: not attempted
    ('{"预测答案0": "Correct"}', NOT_ATTEMPTED),
    # a list gets "}" appended and no longer parses
    ('[{"预测答案0": "正确"}]', FAIL),
    ('  {"预测答案0": "错误"}  ', INCORRECT),
    # trailing prose after the object: "}" appended, extra data, unparsable
    ('{"预测答案0": "正确"} trailing', FAIL),
    # a trailing space makes "错误 " (3 characters) no verdict
    ('{"预测答案0": "错误 "}', FAIL),
    # a number has no .replace in the reference
    ('{"预测答案0": 1}', FAIL),
]


@pytest.mark.parametrize(("judge_reply", "expected"), CASES)
def test_reply_reading_matches_simplevqa(judge_reply: str, expected: str) -> None:
    if expected == FAIL:
        with pytest.raises(VerdictParseError):
            parse_simplevqa_reply(judge_reply)
    else:
        assert parse_simplevqa_reply(judge_reply) == expected


def _records(*verdicts: str | None) -> list[dict]:
    out = []
    for v in verdicts:
        scores = (
            {}
            if v is None
            else {
                "simplevqa": float(v == CORRECT),
                "simplevqa.incorrect": float(v == INCORRECT),
                "simplevqa.not_attempted": float(v == NOT_ATTEMPTED),
            }
        )
        out.append({"scores": scores})
    return out


def test_aggregation_rounds_first_as_simplevqa_eval() -> None:
    # 2 correct, 1 incorrect, 3 not attempted, 1 failed judgement, of 7
    out = simplevqa_summary(
        _records(CORRECT, CORRECT, INCORRECT, NOT_ATTEMPTED, NOT_ATTEMPTED, NOT_ATTEMPTED, None)
    )
    s = out["simplevqa"]
    assert s["is_correct"] == 0.2857 and s["is_incorrect"] == 0.1429 and s["is_not_attempted"] == 0.4286
    assert s["is_given_attempted"] == 0.4286  # round(0.2857 + 0.1429, 4)
    assert s["accuracy_given_attempted"] == pytest.approx(0.2857 / 0.4286)
    acc = 0.2857 / 0.4286
    assert s["f1"] == pytest.approx(2 * acc * 0.2857 / (acc + 0.2857))
    nothing = simplevqa_summary(_records(NOT_ATTEMPTED))["simplevqa"]
    assert nothing["accuracy_given_attempted"] == 0 and nothing["f1"] == 0


def test_the_judge_sees_the_candidate_lines_and_its_verdicts_become_scores() -> None:
    replies = iter(['{"预测答案0": "正确"}', '{"预测答案0": "未尝试"}', "garbage", "garbage"])
    with ScriptedOpenAIServer([lambda body: reply(content=next(replies))]) as srv:
        scorer = SimpleVQAScorer(judge_url=f"{srv.base_url}@judge", max_attempts=2)
        sample = Sample("v", "图中建筑是什么？", "天坛")
        right = scorer.score(sample, "<think>嗯</think><|begin_of_box|>天坛<|end_of_box|>")
        unsure = scorer.score(sample, "不知道")
        broken = scorer.score(sample, "祈年殿")
        prompt = srv.requests[0]["messages"][-1]["content"]
    assert candidate_lines(["天坛"]) in prompt and "参考答案：天坛" in prompt
    assert right.scores == {"simplevqa": 1.0, "simplevqa.incorrect": 0.0, "simplevqa.not_attempted": 0.0}
    assert unsure.scores["simplevqa.not_attempted"] == 1.0 and unsure.details["verdict"] == NOT_ATTEMPTED
    assert broken.failure is not None and set(broken.scores.values()) == {0.0}
    with pytest.raises(ValueError, match="needs a judge endpoint"):
        SimpleVQAScorer()


# (question, standard answer, model reply, the judge's fixed reply, expected verdict); the judge replies
# are what a judge following the rubric answers, in the forms SimpleVQA's judges write them
GRADED = [
    ("桥的主跨长多少米？", "86.45", "约86米", '{"预测答案0": "未尝试"}', NOT_ATTEMPTED),
    (
        "桥的主跨长多少米？",
        "86.45",
        "<think>看刻度</think>86.4",
        '```json\n{"预测答案0": "正确"}\n```',
        CORRECT,
    ),
    ("桥的主跨长多少米？", "86.45", "87", '{"预测答案0": "错误"}', INCORRECT),
    ("这是什么化合物？", "氯化钠（NaCl）", "NaCl", '{"预测答案0": {"conclusion": "**正确**"}}', CORRECT),
    ("图中人物是谁？", "Alan Turing", "我认不出来", '{"预测答案0": "未尝试"}', NOT_ATTEMPTED),
    ("图中有哪两种动物？", "猫和狗", "猫", '{"预测答案0": "错误"}', INCORRECT),
    ("画的作者是谁？", "莫奈", "可能是莫奈", '{"预测答案0": "正确"}', CORRECT),
    ("画的作者是谁？", "莫奈", "", '{"预测答案0": "不知道该怎么判"}', NOT_ATTEMPTED),  # > 3 characters
]


def test_grading_on_fixed_judge_answers_end_to_end() -> None:
    replies = iter([r for *_, r, _ in GRADED])
    with ScriptedOpenAIServer([lambda body: reply(content=next(replies))]) as srv:
        scorer = SimpleVQAScorer(judge_url=f"{srv.base_url}@judge", max_attempts=1)
        records = []
        for i, (question, answer, response, _, expected) in enumerate(GRADED):
            out = scorer.score(Sample(f"s{i}", question, answer), response)
            assert out.details["verdict"] == expected, (question, response)
            records.append({"scores": out.scores})
        prompts = [r["messages"][-1]["content"] for r in srv.requests]
    for (question, answer, response, *_), prompt in zip(GRADED, prompts, strict=True):
        assert f"题目：{question}" in prompt and f"参考答案：{answer}" in prompt
        assert prompt.endswith('{"预测答案0": "正确、错误或未尝试之一"}\n```')  # braces unescaped once
        # the GLM wrapper's answer (thinking removed) is the candidate
        assert candidate_lines([reference_prediction(response, "glm", "SimpleVQA")]) in prompt
    assert "<think>" not in prompts[1] and "[预测答案0]：86.4\n" in prompts[1]
    summary = simplevqa_summary(records)["simplevqa"]
    assert (
        summary["is_correct"] == 0.375
        and summary["is_incorrect"] == 0.25
        and summary["is_not_attempted"] == 0.375
    )
    assert summary["accuracy_given_attempted"] == pytest.approx(0.375 / 0.625)
    assert summary["f1"] == pytest.approx(2 * 0.6 * 0.375 / (0.6 + 0.375))


def test_own_template_states_the_rubric() -> None:
    filled = SIMPLEVQA_TEMPLATE.format(question="Q", reference="R", prediction=candidate_lines(["P"]))
    assert (
        "{" not in filled.replace('{"预测答案0"', "") and "题目：Q" in filled and "[预测答案0]：P" in filled
    )
    for word in ("【正确】", "【错误】", "【未尝试】", "预测答案0"):
        assert word in filled
    # the rules that decide close cases: numbers (finer decimals may drop, ranges are not attempted),
    # partial lists, hedging, extra information in the standard answer, other names of the same thing
    for rule in ("小数位", "范围或约数", "只给出其中一部分", "不确定语气", "多于题目所问", "不同称呼"):
        assert rule in filled, rule
