"""Multi-step tool-use evaluation in the style of ImageMining (report sections 3.3 and 5).

ImageMining questions need the agent to look closer at an image (crop and zoom) and to search
(text, image-to-web, image search) before it can answer; answers are free text in English and
Chinese. The harness runs :class:`~glmkit.eval.adapters.AgentAdapter` (the agent loop with the
benchmark's tools) and records per sample the tool calls, turns, tools used and the final answer's
score; the summary adds mean turns and tool calls, the tool-use rate, calls per tool, and the
accuracy of samples answered with and without tools.

Scoring: with a judge endpoint (``--judge-url``) an LLM judge sees the question, the English
answer and the Chinese answer (``answer_zh``), because ImageMining publishes no scorer. Without
one, a rule fallback counts a hit when the normalised reference appears as whole words in the
normalised answer (or the Chinese reference appears verbatim). Which scorer ran (and the judge's
model) is named in the summary's ``extra.scorer``, so in ``summary.json``, ``summary.md`` and the
table ``glmkit eval`` prints.

The raw ImageMining ``data.jsonl`` (``id``, ``image`` under ``images/``, ``question``,
``answer``, ``question_zh``, ``answer_zh``, ``category_l1``, ``category_l2``,
``difficulty_tags``, ...) is read directly; glmkit's own JSONL schema works as well. Many
questions depend on the live web of 2025, so offline runs need a frozen local search index
(``GLMKIT_SEARCH_INDEX``, see :mod:`glmkit.tools.search`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from glmkit.eval.definition import JUDGE_URL, Benchmark, register_benchmark
from glmkit.eval.metrics.base import METRICS, reference_answers
from glmkit.eval.metrics.text import extract_answer
from glmkit.eval.metrics.vqa import normalized_match
from glmkit.scoring import DataError, Sample, Scores, Verifier, parse_sample

AGENT_SYSTEM_PROMPT = (
    "You answer questions about images. You can call tools: crop an image region (0-1000 "
    "coordinates) to read small details, and search for facts you cannot see. Think about what you "
    "need, call tools as needed, and when you know the answer reply without a tool call, giving "
    "only the final answer inside <|begin_of_box|> and <|end_of_box|>."
)
IMAGEMINING_TOOLS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("crop_image", {}),
    ("search_web_text", {}),
    ("search_web_by_image", {}),
    ("search_images", {}),
)
_META_KEYS = (
    "category_l2",
    "difficulty_tags",
    "question_zh",
    "answer_zh",
    "need_image_before_search",
    "need_image_during_search",
)


def parse_imagemining_row(row: Any, *, path: Path, line: int, check_images: bool = True) -> Sample:
    """A row of ImageMining's ``data.jsonl`` (or of glmkit's schema) as a :class:`Sample`."""
    if not isinstance(row, dict) or "images" in row or "image" not in row:
        return parse_sample(row, path=path, line=line, check_images=check_images)
    where = f"{path}:{line}"
    image = row["image"]
    if not isinstance(image, str) or not image:
        raise DataError(f"{where}: field 'image' must be a file name, got {image!r}")
    candidates = [path.parent / "images" / image, path.parent / image]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None and check_images:
        raise DataError(
            f"{where}: field 'image': image not found: tried {', '.join(str(p) for p in candidates)} "
            "(ImageMining images are downloaded separately into images/)"
        )
    converted = {
        "id": row.get("id"),
        "question": row.get("question"),
        "answer": row.get("answer"),
        "images": [str((found or candidates[0]).relative_to(path.parent))],
        "category": row.get("category_l1") or "default",
        "metadata": {k: row[k] for k in _META_KEYS if k in row},
    }
    for key in ("id", "question", "answer"):
        if converted[key] is None:
            raise DataError(f"{where}: missing field {key!r} (required fields: id, question, answer)")
    return parse_sample(converted, path=path, line=line, check_images=check_images)


def rule_hit(prediction: str, sample: Sample) -> bool:
    """Offline fallback: normalised reference as whole words in the answer, or the Chinese one verbatim."""
    text = extract_answer(prediction)
    if normalized_match(text, reference_answers(sample.answer), contains=True):
        return True
    zh = sample.metadata_text("answer_zh")
    return bool(zh) and zh in text


RULE_SCORER = "rule (no --judge-url)"


@METRICS.register("imagemining")
class ImageMiningScorer(Verifier):
    """Judge-scored answer correctness when ``judge_url`` is set, else the :func:`rule_hit` fallback.

    Args:
        judge_url: ``http://host/v1@model`` of the judge; ``None`` selects the rule fallback.
        judge_kwargs: more :class:`~glmkit.eval.metrics.judge.JudgeScorer` settings.
    """

    name = "imagemining"

    def __init__(
        self, judge_url: str | None = None, judge_kwargs: dict[str, Any] | None = None, key: str | None = None
    ) -> None:
        super().__init__(key)
        self.judge = None
        if judge_url:
            from glmkit.eval.metrics.judge import JudgeScorer

            self.judge = JudgeScorer(judge_url=judge_url, key=self.key, **(judge_kwargs or {}))

    def check_answer(self, sample: Sample) -> None:
        reference_answers(sample.answer)

    def score(self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None) -> Scores:
        if self.judge is not None:
            out = self.judge.score(sample, response, metadata)
            out.details["scorer"] = "judge"
            return out
        return self._out(float(rule_hit(response, sample)), {"scorer": "rule"})

    async def ascore(
        self, sample: Sample, response: str, metadata: Mapping[str, Any] | None = None
    ) -> Scores:
        if self.judge is not None:
            out = await self.judge.ascore(sample, response, metadata)
            out.details["scorer"] = "judge"
            return out
        return self.score(sample, response, metadata)

    def describe(self) -> dict[str, Any]:
        if self.judge is not None:
            return {**self.judge.describe(), "name": self.name, "scorer": "judge"}
        return {**super().describe(), "scorer": RULE_SCORER}


def tool_use_breakdown(records: list[dict[str, Any]], primary: str) -> dict[str, Any]:
    """Accuracy with and without tool use, and total calls per tool (from the agent's counts)."""
    with_tools = [r for r in records if (r.get("tool_calls") or 0) > 0]
    without = [r for r in records if r.get("tool_calls") is not None and not r.get("tool_calls")]
    calls: dict[str, int] = defaultdict(int)
    for r in records:
        counts = (r.get("meta") or {}).get("tool_call_counts", {})
        for a in r.get("attempts", []):
            for name, n in (a.get("meta") or {}).get("tool_call_counts", {}).items():
                calls[name] += n
        for name, n in counts.items():
            calls[name] += n

    def acc(rs: list[dict[str, Any]]) -> float | None:
        return sum(r.get("scores", {}).get(primary, 0.0) for r in rs) / len(rs) if rs else None

    return {
        "samples_with_tools": len(with_tools),
        "accuracy_with_tools": acc(with_tools),
        "samples_without_tools": len(without),
        "accuracy_without_tools": acc(without),
        "calls_per_tool": dict(sorted(calls.items())),
    }


def scorer_label(records: list[dict[str, Any]], primary: str) -> str:
    """Which scorer scored ``records``: ``"judge (MODEL)"``, the rule fallback, or both (a mixed resume)."""
    labels: set[str] = set()
    for record in records:
        for scored in (record, *record.get("attempts", [])):
            details = (scored.get("metric_details") or {}).get(primary) or {}
            if details.get("scorer") == "judge":
                labels.add(f"judge ({details.get('judge_model') or 'unknown model'})")
            elif details.get("scorer") == "rule":
                labels.add(RULE_SCORER)
    return " and ".join(sorted(labels)) or "none (no sample was scored)"


def imagemining_summary(records: list[dict[str, Any]], primary: str) -> dict[str, Any]:
    """The summary's ``extra``: the scorer that ran, then :func:`tool_use_breakdown`."""
    return {"scorer": scorer_label(records, primary), **tool_use_breakdown(records, primary)}


def imagemining_benchmark(
    name: str = "imagemining",
    data: str | Path | None = None,
    tools: tuple[tuple[str, dict[str, Any]], ...] = IMAGEMINING_TOOLS,
    make_data: Callable[[Path], Path] | None = None,
    description: str = "ImageMining-style multi-step tool use (crop + search); --data required",
) -> Benchmark:
    """An ImageMining-style benchmark (agent tools, ImageMining row format, judge or rule scoring;
    the metric's ``judge_url`` slot is what ``--judge-url`` fills)."""
    return Benchmark(
        name,
        [{"class_path": "imagemining", "init_args": {JUDGE_URL: None}}],
        prompt="{question}",
        data=data,
        make_data=make_data,
        system_prompt=AGENT_SYSTEM_PROMPT,
        tools=tools,
        parse_row=parse_imagemining_row,
        summary_extra=imagemining_summary,
        description=description,
    )


IMAGEMINING = register_benchmark(imagemining_benchmark())
