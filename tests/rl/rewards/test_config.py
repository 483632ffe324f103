"""A reward system built from a class_path/init_args spec (YAML or dict) with
glmkit.config.instantiate, and the package's independence from the training code."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from glmkit.config import ConfigError, instantiate
from glmkit.eval.metrics import ExactMatchScorer, GroundingScorer, JudgeScorer
from glmkit.eval.metrics.answer_format import AnswerFormat
from glmkit.rl.rewards import Gated, RewardSystem, SourcePolicy, WeightedSum, load_reward_system
from glmkit.scoring import Sample
from tests.helpers.openai_server import ScriptedOpenAIServer, reply

SPEC = """
class_path: glmkit.rl.rewards.RewardSystem
init_args:
  verifiers:
    format: {class_path: answer_format}
    exact: {class_path: exact_match}
    iou: {class_path: GroundingScorer, init_args: {pred_space: norm1000, answer_space: pixels}}
    judge: {class_path: llm_judge, init_args: {judge_url: JUDGE_URL, timeout: 10, http_retries: 1}}
    echo: {class_path: tests.rl.rewards.fake_verifiers.Echo}
  categories:
    counting:
      format: [format]
      verifiers: [exact]
      aggregator: {class_path: weighted_sum, init_args: {weights: {format: 0.1, exact: 0.9}}}
    grounding:
      format: [format]
      verifiers: [iou]
      aggregator:
        class_path: gated
        init_args: {content: {class_path: weighted_sum}, threshold: 1.0}
    open_vqa:
      format: [format]
      verifiers: [judge]
      aggregator: {class_path: min}
    "*":
      verifiers: [echo]
  sources:
    synthetic: {on_failure: exclude}
    web: {fallback_reward: 0.25}
  process_verifiers: [echo]
  num_workers: 1
  judge_concurrency: 4
  judge_deadline: 20
  max_answer_chars: 500
  score_keys: {iou: grounding.iou}
"""


def test_built_from_yaml_with_instantiate_and_scores() -> None:
    with ScriptedOpenAIServer([reply(content='{"score": 1}')]) as srv:
        spec = yaml.safe_load(SPEC.replace("JUDGE_URL", f"{srv.base_url}@judge-7b"))
        with instantiate(spec, ("metrics", "reward_aggregators")) as rs:
            assert isinstance(rs, RewardSystem)
            assert isinstance(rs.verifiers["format"], AnswerFormat)
            assert isinstance(rs.verifiers["exact"], ExactMatchScorer)
            assert (
                isinstance(rs.verifiers["iou"], GroundingScorer)
                and rs.verifiers["iou"].answer_space == "pixels"
            )
            assert isinstance(rs.verifiers["judge"], JudgeScorer)
            assert rs.modes == {
                "format": "local",
                "exact": "local",
                "iou": "local",
                "judge": "async",
                "echo": "process",
            }
            agg = rs.categories["grounding"].aggregator
            assert isinstance(agg, Gated) and isinstance(agg.content, WeightedSum)
            assert rs.sources["synthetic"] == SourcePolicy(on_failure="exclude")
            assert rs.deadlines["judge"] == 20.0 and rs.judge_concurrency == 4

            samples = [
                Sample("c", "How many?", "3", category="counting"),
                Sample(
                    "g",
                    "Where?",
                    {"box": [0, 0, 500, 500]},
                    category="grounding",
                    metadata={"image_size": [1000, 1000]},
                ),  # fmt: skip
                Sample("v", "Colour?", "red", category="open_vqa"),
                Sample("o", "Anything?", "x", category="chart"),
            ]
            responses = [
                "<answer>3</answer>",
                "<answer>[0,0,250,500]</answer>",  # IoU 0.5
                "<answer>red</answer>",
                "0123456789",
            ]
            results = rs.score_batch(samples, responses)
            assert [r.reward for r in results] == pytest.approx([1.0, 0.5, 1.0, 1.0])
            assert srv.requests[0]["model"] == "judge-7b"
            assert results[3].breakdown["echo"].details["pid"] in rs.pool.pids()  # type: ignore[union-attr]
            assert rs.describe()["categories"]["counting"]["aggregator"]["weights"] == {
                "format": 0.1,
                "exact": 0.9,
            }


def test_load_reward_system_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "rewards.yaml"
    path.write_text(
        textwrap.dedent(
            """
            class_path: glmkit.rl.rewards.RewardSystem
            init_args:
              verifiers: {exact: {class_path: exact_match}}
              categories: {"*": {verifiers: [exact], aggregator: product}}
            """
        )
    )
    rs = load_reward_system(path)
    assert rs.score(Sample("a", "q", "3"), "3").reward == 1.0


def test_typos_name_the_closest_registered_names() -> None:
    spec = yaml.safe_load(SPEC.replace("JUDGE_URL", "http://127.0.0.1:9/v1"))
    spec["init_args"]["verifiers"]["exact"]["class_path"] = "exact_mach"
    with pytest.raises(
        ConfigError, match=r"init_args.verifiers.exact.class_path: 'exact_mach'.*'exact_match'"
    ):
        load_reward_system(spec)
    spec = yaml.safe_load(SPEC.replace("JUDGE_URL", "http://127.0.0.1:9/v1"))
    spec["init_args"]["categories"]["counting"]["aggregator"]["class_path"] = "weighted_summ"
    with pytest.raises(ConfigError, match=r"'weighted_summ'.*'weighted_sum'"):
        load_reward_system(spec)
    spec = yaml.safe_load(SPEC.replace("JUDGE_URL", "http://127.0.0.1:9/v1"))
    spec["init_args"]["categories"]["counting"]["verifiers"] = ["exct"]
    with pytest.raises(ValueError, match=r"categories\['counting'\].verifiers: unknown verifier 'exct'"):
        load_reward_system(spec)
    with pytest.raises(TypeError, match="builds ExactMatchScorer, not a RewardSystem"):
        load_reward_system({"class_path": "exact_match"})


def test_imports_without_lightning_and_workers_without_torch() -> None:
    code = (
        "import sys\n"
        "import glmkit.rl.rewards.workers\n"
        "assert 'torch' not in sys.modules, 'workers import torch'\n"
        "from glmkit.rl.rewards import RewardSystem, load_reward_system\n"
        "bad = [m for m in ('lightning', 'pytorch_lightning') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
