"""ImageMining-style evaluation: the raw row format, rule and judge scoring, tool-use breakdown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from glmkit.eval.definition import get_benchmark
from glmkit.eval.imagemining import (
    ImageMiningScorer,
    parse_imagemining_row,
    rule_hit,
    scorer_label,
    tool_use_breakdown,
)
from glmkit.scoring import DataError, Sample, load_samples
from tests.helpers.openai_server import ScriptedOpenAIServer, reply

RAW = {
    "id": 17,
    "category_l1": "Place",
    "category_l2": "Landmark",
    "difficulty_tags": ["Image Retrieval"],
    "image": "17.jpg",
    "question": "What colour is the roof?",
    "answer": "(Pale/Light) purple",
    "question_zh": "屋顶是什么颜色？",
    "answer_zh": "淡紫色",
    "reasoning": "...",
}


def test_reads_raw_imagemining_rows(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "17.jpg")
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(RAW, ensure_ascii=False) + "\n")
    (sample,) = load_samples(path, parse_row=parse_imagemining_row)
    assert sample.id == "17" and sample.category == "Place"
    assert sample.images == [tmp_path / "images" / "17.jpg"]
    assert sample.metadata["answer_zh"] == "淡紫色" and sample.metadata["category_l2"] == "Landmark"
    assert "reasoning" not in sample.metadata  # the solution path is not given to the model


def test_raw_row_errors_name_the_line(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"data\.jsonl:3: field 'image': image not found.*downloaded separately"
    ):
        parse_imagemining_row(RAW, path=tmp_path / "data.jsonl", line=3)
    with pytest.raises(DataError, match=r"data\.jsonl:1: missing field 'answer'"):
        parse_imagemining_row(
            {k: v for k, v in RAW.items() if k != "answer"},
            path=tmp_path / "data.jsonl",
            line=1,
            check_images=False,
        )


def test_rule_fallback() -> None:
    sample = Sample("s", "q", "purple", metadata={"answer_zh": "淡紫色"})
    assert rule_hit("It is <|begin_of_box|>light purple<|end_of_box|>", sample)
    assert rule_hit("淡紫色", sample)
    assert not rule_hit("purplish", sample)
    out = ImageMiningScorer().score(sample, "purple")
    assert out.scores == {"imagemining": 1.0} and out.details == {"scorer": "rule"}
    assert ImageMiningScorer().describe()["scorer"].startswith("rule")


@pytest.mark.parametrize("blank", ["", "   ", "\n\t", None])
def test_rule_fallback_ignores_a_blank_chinese_answer(blank: str | None) -> None:
    sample = Sample("s", "q", "purple", metadata={"answer_zh": blank})
    assert not rule_hit("green", sample)
    assert not rule_hit("", sample)
    assert rule_hit("purple", sample)  # the English reference still counts


def test_judge_mode_sees_both_languages() -> None:
    sample = Sample("s", "What colour is the roof?", "purple", metadata={"answer_zh": "淡紫色"})
    with ScriptedOpenAIServer([reply(content='{"score": 1}')]) as srv:
        scorer = ImageMiningScorer(judge_url=f"{srv.base_url}@judge", judge_kwargs={"backoff": 0.01})
        out = scorer.score(sample, "lilac")
        prompt = srv.requests[0]["messages"][-1]["content"]
    assert out.scores == {"imagemining": 1.0} and out.details["scorer"] == "judge"
    assert "purple" in prompt and "淡紫色" in prompt and "lilac" in prompt


def test_judge_url_reaches_the_metric_through_its_init_args() -> None:
    bench = get_benchmark("imagemining")
    assert bench.takes_judge
    judged = bench.with_judge("http://127.0.0.1:9/v1@j")
    assert judged.metrics[0]["init_args"]["judge_url"] == "http://127.0.0.1:9/v1@j"  # type: ignore[index]
    metrics = judged.build_metrics()
    assert metrics[0].judge is not None and metrics[0].judge.judge.client.model == "j"  # type: ignore[attr-defined]
    # The registered benchmark is unchanged, and no URL keeps the rule fallback.
    assert bench.metrics[0]["init_args"]["judge_url"] is None  # type: ignore[index]
    assert bench.with_judge(None).build_metrics()[0].judge is None  # type: ignore[attr-defined]
    assert get_benchmark("demo-ocr").with_judge("http://h/v1@j") == get_benchmark("demo-ocr")


def test_tool_use_breakdown() -> None:
    records = [
        {
            "scores": {"m": 1.0},
            "tool_calls": 3,
            "meta": {"tool_call_counts": {"crop_image": 2, "search_web_text": 1}},
        },
        {"scores": {"m": 0.0}, "tool_calls": 1, "meta": {"tool_call_counts": {"crop_image": 1}}},
        {"scores": {"m": 1.0}, "tool_calls": 0, "meta": {"tool_call_counts": {}}},
    ]
    out = tool_use_breakdown(records, "m")
    assert out["accuracy_with_tools"] == 0.5 and out["samples_with_tools"] == 2
    assert out["accuracy_without_tools"] == 1.0
    assert out["calls_per_tool"] == {"crop_image": 3, "search_web_text": 1}


def test_summary_md_and_printed_table_name_the_scorer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from glmkit.eval.cli import main

    base = ["-b", "demo-imagemining", "-m", "oracle", "--limit", "2", "-q"]
    assert main([*base, "--out", str(tmp_path / "rule")]) == 0
    assert "scorer: rule (no --judge-url)" in capsys.readouterr().out
    assert "- scorer: rule (no --judge-url)" in (tmp_path / "rule" / "summary.md").read_text()
    summary = json.loads((tmp_path / "rule" / "summary.json").read_text())
    assert summary["extra"]["scorer"] == "rule (no --judge-url)"
    with ScriptedOpenAIServer([reply(content='{"score": 1}')]) as srv:
        judged = ["--out", str(tmp_path / "judge"), "--judge-url", f"{srv.base_url}@judge-7b"]
        assert main([*base, *judged]) == 0
        assert [body["model"] for body in srv.requests] == ["judge-7b", "judge-7b"]  # one verdict per sample
    # The model id the judge's replies report (the scripted server answers as "scripted").
    assert "scorer: judge (scripted)" in capsys.readouterr().out
    assert "- scorer: judge (scripted)" in (tmp_path / "judge" / "summary.md").read_text()


def test_scorer_label_reports_a_mixed_resume() -> None:
    rule = {"metric_details": {"m": {"scorer": "rule"}}}
    judge = {"attempts": [{"metric_details": {"m": {"scorer": "judge", "judge_model": "j"}}}]}
    assert scorer_label([rule, judge], "m") == "judge (j) and rule (no --judge-url)"
    assert scorer_label([{"error": "model: boom"}], "m") == "none (no sample was scored)"
