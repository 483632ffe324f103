"""SimpleVQA's three-way LLM judge (``simplevqa``): correct / incorrect / not attempted, with the
benchmark's correct-given-attempted and F1 aggregation.

Reference: SimpleVQA (SimpleVQA/SimpleVQA) ``llm_as_a_vqa_judger.py`` (the judge request and the
reading of its reply) and ``simpleVQA_eval.py``, ``SimpleVQAEval`` (the aggregation).

* **Request**: the judge gets the question, the standard answer and the candidates, each written
  as ``\\n[预测答案0]：<prediction>``, and answers with a JSON object mapping ``"预测答案0"`` to one
  of 正确 (correct), 错误 (incorrect) or 未尝试 (not attempted).
* **Reply** (``parse_simplevqa_reply``): code fences (```` ```json ````, ```` ```python ````, ```` ``` ````)
  are removed and the text stripped; a missing closing ``}`` is added; the result is parsed as
  JSON and the **first** value is the verdict, whatever its key. A value that is an object gives
  its ``conclusion``; ``**`` is removed from the verdict; a verdict other than the three words
  that is longer than three characters counts as 未尝试. A reply that is no JSON, or a verdict of
  at most three characters that is none of the three words, is a judge failure (the reference
  stops with an error there): the sample scores 0 in every class and the failure is counted.
* **Aggregation** (:func:`simplevqa_summary`): over all N samples, ``is_correct`` = correct / N,
  ``is_incorrect`` and ``is_not_attempted`` likewise, each rounded to 4 decimals; then
  ``is_given_attempted`` = round(correct + incorrect, 4), ``accuracy_given_attempted`` = correct /
  given_attempted (0 when nothing was attempted) and ``f1`` = the harmonic mean of
  ``accuracy_given_attempted`` and ``is_correct``. The ``simplevqa`` benchmark adds it to its summary.

Prompt: the reference prompt is written in Chinese with worked examples; glmkit ships its own
wording of the same rubric (:data:`SIMPLEVQA_TEMPLATE`, same verdict words and reply format). For
byte-identical requests pass the reference prompt as ``template_file`` (a text file with the
placeholders ``{question}``, ``{reference}`` for the standard answer and ``{prediction}`` for the
candidate lines). The per-sample scores are ``simplevqa`` (1 when correct),
``simplevqa.incorrect`` and ``simplevqa.not_attempted``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from glmkit.eval.metrics.base import METRICS, reference_answers, scorer_info
from glmkit.eval.metrics.glm_wrapper import check_wrapper, reference_prediction
from glmkit.eval.metrics.judge import JudgeVerdict, LLMJudge, VerdictParseError, parse_endpoint
from glmkit.scoring import Sample, Scores, Verifier

CORRECT, INCORRECT, NOT_ATTEMPTED = "正确", "错误", "未尝试"
VERDICTS = {CORRECT: "is_correct", INCORRECT: "is_incorrect", NOT_ATTEMPTED: "is_not_attempted"}

SIMPLEVQA_TEMPLATE = """你是一名评审。请根据问题和标准答案，判断模型的预测答案属于以下哪一类：
- 正确：预测答案包含标准答案中的关键信息，且没有与标准答案相矛盾的内容（中英文、大小写、标点和表述方式不重要；含有猜测语气但答案正确也算正确）。
- 错误：预测答案中有与标准答案相矛盾的内容，即使语气不确定也算错误。
- 未尝试：预测答案没有给出标准答案中的关键信息，也没有与之矛盾（例如表示不知道、无法识别、拒绝回答，或答案为空）。
对于数值答案，预测值应与标准答案一致；只给出大致范围的回答算作未尝试。

问题: {question}
正确答案: {reference}
预测答案: {prediction}

只返回一个JSON字典，键不要替换为具体答案，每个值只能是"正确"、"错误"、"未尝试"之一：
```json
{{"预测答案0": "正确/错误/未尝试"}}
```"""
"""glmkit's wording of SimpleVQA's judge rubric (not the reference text; see the module docstring)."""


def candidate_lines(predictions: list[str]) -> str:
    """The candidates as the reference writes them: ``\\n[预测答案i]：prediction`` for each."""
    return "".join(f"\n[预测答案{i}]：{p}" for i, p in enumerate(predictions))


def parse_simplevqa_reply(reply: str) -> str:
    """The verdict word of a judge reply (see the module docstring); raises :class:`VerdictParseError`."""
    text = reply.replace("```json", "").replace("```python", "").replace("```", "").strip()
    if not text:
        raise VerdictParseError("empty judge reply")
    if text[-1] != "}":
        text += "}"
    try:
        obj = json.loads(text)
    except ValueError:
        raise VerdictParseError(f"judge reply is not JSON: {reply[:200]!r}") from None
    if not isinstance(obj, dict) or not obj:
        raise VerdictParseError(f"judge reply holds no verdict: {reply[:200]!r}")
    value = next(iter(obj.values()))
    if isinstance(value, dict):
        verdict = value.get("conclusion")
        verdict = verdict.replace("**", "") if isinstance(verdict, str) else ""
    elif not isinstance(value, str):
        raise VerdictParseError(f"judge verdict {value!r} is not a string")
    else:
        verdict = value
        if verdict not in VERDICTS:
            verdict = verdict.replace("**", "")
            if len(verdict) > 3:
                verdict = NOT_ATTEMPTED
    if verdict not in VERDICTS:
        raise VerdictParseError(f"judge verdict {verdict!r} is none of 正确 / 错误 / 未尝试")
    return verdict


def simplevqa_summary(records: list[dict[str, Any]], key: str = "simplevqa") -> dict[str, Any]:
    """``SimpleVQAEval``'s aggregate of sample records (rates rounded to 4 decimals first)."""
    amount = len(records)
    counts = {"is_correct": 0, "is_incorrect": 0, "is_not_attempted": 0}
    for r in records:
        scores = r.get("scores", {})
        counts["is_correct"] += int(scores.get(key, 0.0) >= 1.0)
        counts["is_incorrect"] += int(scores.get(f"{key}.incorrect", 0.0) >= 1.0)
        counts["is_not_attempted"] += int(scores.get(f"{key}.not_attempted", 0.0) >= 1.0)
    out: dict[str, Any] = {k: round(v / amount, 4) if amount else 0.0 for k, v in counts.items()}
    out["is_given_attempted"] = round(out["is_correct"] + out["is_incorrect"], 4)
    given = out["is_given_attempted"]
    out["accuracy_given_attempted"] = out["is_correct"] / given if given > 0 else 0
    acc, correct = out["accuracy_given_attempted"], out["is_correct"]
    out["f1"] = 2 * acc * correct / (acc + correct) if (acc + correct) > 0 else 0
    return {"simplevqa": out}


class SimpleVQAJudge(LLMJudge):
    """An :class:`~glmkit.eval.metrics.judge.LLMJudge` whose replies are SimpleVQA verdicts."""

    def messages(self, question: str, reference: str, prediction: str) -> list[dict[str, Any]]:
        return super().messages(question, reference, candidate_lines([prediction]))

    def _read_reply(self, verdict: JudgeVerdict, completion: Any) -> bool:
        verdict.raw = completion.content
        verdict.judge_model = completion.raw.get("model") or self.client.model
        try:
            verdict.score = float(parse_simplevqa_reply(completion.content) == CORRECT)
        except VerdictParseError as exc:
            verdict.errors.append(f"unreadable judge reply: {exc}")
            return False
        return True


@METRICS.register("simplevqa")
class SimpleVQAScorer(Verifier):
    """SimpleVQA's judge verdict: ``simplevqa`` (correct), ``.incorrect`` and ``.not_attempted``.

    Reference: SimpleVQA ``llm_as_a_vqa_judger.py`` (request and reply reading) and
    ``simpleVQA_eval.py``, ``SimpleVQAEval`` (aggregation, :func:`simplevqa_summary`). The
    prediction is the GLM model wrapper's (VLMEvalKit ``vlmeval/vlm/glm.py``,
    ``GLMThinking.extract_answer``) unless ``wrapper="none"``.

    Args:
        judge_url: the judge endpoint, ``http://host/v1@model`` (``--judge-url``).
        judge_model: overrides the model named in ``judge_url``.
        template: the judge prompt with ``{question}``, ``{reference}`` and ``{prediction}``.
        template_file: a file holding the prompt (wins over ``template``).
        max_attempts, http_retries, backoff, timeout, api_key, max_tokens: see
            :class:`~glmkit.eval.metrics.judge.LLMJudge`.
        wrapper: ``"glm"`` or ``"none"``.
        key: the name the score is reported under.
    """

    name = "simplevqa"

    def __init__(
        self,
        judge_url: str | None = None,
        judge_model: str | None = None,
        template: str = SIMPLEVQA_TEMPLATE,
        template_file: str | None = None,
        max_attempts: int = 2,
        http_retries: int = 2,
        backoff: float = 0.5,
        timeout: float = 120.0,
        api_key: str | None = None,
        max_tokens: int = 1024,
        wrapper: str = "glm",
        key: str | None = None,
    ) -> None:
        super().__init__(key)
        if not judge_url:
            raise ValueError(
                "the simplevqa metric needs a judge endpoint: set init_args.judge_url or pass "
                "--judge-url http://host/v1@model"
            )
        check_wrapper(wrapper, "simplevqa")
        if template_file is not None:
            template = Path(template_file).read_text(encoding="utf-8")
        base_url, model = parse_endpoint(judge_url)
        self.judge = SimpleVQAJudge(
            base_url,
            model=judge_model or model,
            template=template,
            max_attempts=max_attempts,
            fallback_score=0.0,
            http_retries=http_retries,
            backoff=backoff,
            timeout=timeout,
            api_key=api_key,
            max_tokens=max_tokens,
        )
        self.template_file = template_file
        self.wrapper = wrapper

    def check_answer(self, sample: Sample) -> None:
        reference_answers(sample.answer)

    def _inputs(self, sample: Sample, response: str) -> tuple[str, str, str]:
        answer = " | ".join(reference_answers(sample.answer))
        return sample.question, answer, reference_prediction(response, self.wrapper, "SimpleVQA")

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        return self._scores(self.judge.judge(*self._inputs(sample, response)))

    async def ascore(
        self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None
    ) -> Scores:
        return self._scores(await self.judge.ajudge(*self._inputs(sample, response)))

    def _scores(self, verdict: JudgeVerdict) -> Scores:
        details = {
            "judge_reply": verdict.raw[:2000],
            "judge_model": verdict.judge_model,
            "judge_attempts": verdict.attempts,
            "judge_errors": verdict.errors,
        }
        if verdict.failure is not None:
            out = self._out(0.0, {**details, "verdict": None}, incorrect=0.0, not_attempted=0.0)
            out.failure = verdict.failure
            return out
        word = parse_simplevqa_reply(verdict.raw)
        return self._out(
            float(word == CORRECT),
            {**details, "verdict": word},
            incorrect=float(word == INCORRECT),
            not_attempted=float(word == NOT_ATTEMPTED),
        )

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "judge_url": self.judge.client.base_url,
            "judge_model": self.judge.client.model,
            "template_file": self.template_file,
            "calls": self.judge.calls,
            "failures": self.judge.failures,
            **scorer_info(
                "SimpleVQA llm_as_a_vqa_judger.py (reply reading) + simpleVQA_eval.py: SimpleVQAEval"
                + ("" if self.template_file else "; glmkit's wording of the judge prompt")
            ),
        }
