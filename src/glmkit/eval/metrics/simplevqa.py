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
wording and its own examples of the same rubric (:data:`SIMPLEVQA_TEMPLATE`): the same three verdict
words and reply format, and the same rules: correct needs every key fact and no contradiction
(language, case, punctuation and hedging do not matter); a contradiction, a partial list given as
complete, an added wrong item or several alternative answers is incorrect; no key fact and no
contradiction (refusal, "cannot tell", empty) is not attempted; a number may drop finer decimals
but a different exact value is incorrect and a range is not attempted; only what the question asks
is needed; omissions the question implies, other transliterations and other names of the same
thing are correct. For byte-identical requests pass the reference prompt as ``template_file`` (a
text file with the placeholders ``{question}``, ``{reference}`` for the standard answer and
``{prediction}`` for the candidate lines). The per-sample scores are ``simplevqa`` (1 when correct),
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

SIMPLEVQA_TEMPLATE = """你将担任问答评分员。下面给出一道看图问答题、它的参考答案和一个待评分的模型回答。请只依据参考答案判断回答属于哪一类，不要自己重新作答，也不要评价文风。

评分类别
【正确】回答给出了参考答案要求的全部关键信息，且没有任何与参考答案冲突的内容。只看语义：中文或英文、大小写、标点、语序和措辞都不影响判断；回答带有“可能”“我猜”之类的不确定语气，只要关键信息齐全且没有错误内容，仍算正确。
【错误】回答中出现与参考答案冲突的说法，无论语气是否肯定。以下情况也算错误：参考答案有多项而回答只给出其中一部分并当作完整答案；在正确内容之外又加入错误的项；同时给出几个互相替代的候选答案。
【未尝试】回答没有给出参考答案的关键信息，但也没有说错任何内容，例如：表示不知道或无法确定、说认不出图中对象、要求补充信息、只给出部分事实并说明其余部分不清楚、回答为空或为 N/A。

判定细则
1. 数值答案：与参考答案一致即为正确，允许省略参考答案更细的小数位（参考答案为 86.45 时，86、86.4、86.45 都算正确）；给出另一个确切数值（如 87 或 90）算错误；只给出范围或约数（如“八十多”“不到 100”）算未尝试。
2. 参考答案的信息多于题目所问时，回答只需覆盖题目所问的部分（参考答案为“氯化钠（NaCl）”时，“氯化钠”或“NaCl”都算正确）。
3. 回答省略的内容如果能从题目中明确推知，仍算正确（题目已说明城市在日本、参考答案为“日本京都”时，“京都”算正确）。
4. 人名、地名的不同译写，以及同一对象的不同称呼，只要明显指同一事物，都算正确。

题目：{question}
参考答案：{reference}
待评分回答：{prediction}

回复要求：每个回答只判为“正确”“错误”“未尝试”三者之一，不要解释、道歉或改写答案。只输出下面这种 JSON 对象，不输出其他内容；键名保持“预测答案0”这样的编号，不要换成回答的内容：
```json
{{"预测答案0": "正确、错误或未尝试之一"}}
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
