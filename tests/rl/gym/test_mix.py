"""Categories mixed by weight through the data layer's Mixture, and the data-source tag carried end
to end: category -> Mixture record -> environment / rollout -> the reward system's per-source counts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from glmkit.data.mixture import Mixture
from glmkit.data.sources import Source
from glmkit.registry import RegistryError
from glmkit.rl.gym import (
    TASK_CATEGORIES,
    TaskCategory,
    TaskMix,
    TaskSource,
    VerifierSpec,
    build_reward_system,
    reward_routes,
    reward_system_spec,
    run_episode,
    sample_from_record,
    task_mixture,
)
from glmkit.rl.gym.categories import Counting
from glmkit.rl.rewards import RewardSystem
from glmkit.rl.rollout import RolloutScheduler, SimulatedEngine, run_virtual
from tests.rl.gym.conftest import make


def test_a_category_is_a_record_source(tmp_path: Path) -> None:
    source = make("ocr", tmp_path, size=50).as_source()
    assert isinstance(source, TaskSource) and isinstance(source, Source) and len(source) == 50
    record = source.read(4)
    assert set(record) == {"sample", "images"} and sample_from_record(record).id == "ocr-0-000004"
    assert source.describe(4) == "ocr(source='ocr', seed=0, index=4)"
    with pytest.raises(IndexError):
        source.read(50)


def test_the_mixture_draws_categories_by_weight(tmp_path: Path) -> None:
    mix = TaskMix(
        [make("counting", tmp_path), make("ocr", tmp_path), make("gui_action", tmp_path)],
        weights={"counting": 6, "ocr": 3, "gui_action": 1},
        num_samples=2000,
        seed=5,
    )
    assert isinstance(mix.mixture, Mixture)
    drawn = Counter(mix.mixture.choose(i)[0] for i in range(len(mix)))
    assert drawn["counting"] / 2000 == pytest.approx(0.6, abs=0.04)
    assert drawn["ocr"] / 2000 == pytest.approx(0.3, abs=0.04)
    assert drawn["gui_action"] / 2000 == pytest.approx(0.1, abs=0.03)
    again = TaskMix([make("counting", tmp_path), make("ocr", tmp_path), make("gui_action", tmp_path)],
                    weights={"counting": 6, "ocr": 3, "gui_action": 1}, num_samples=2000, seed=5)  # fmt: skip
    assert [again[i].to_row() for i in range(5)] == [mix[i].to_row() for i in range(5)]
    mix.set_epoch(1)
    assert [mix.mixture.choose(i) for i in range(20)] != [mix.mixture.choose(i, 0) for i in range(20)]


def test_the_source_tag_travels_to_the_reward_systems_per_source_counts(tmp_path: Path) -> None:
    easy = make("counting", tmp_path, source="counting-easy", max_shapes=4)
    hard = make("counting", tmp_path, source="counting-hard", min_shapes=8, max_shapes=12, seed=1)
    ocr = make("ocr", tmp_path)
    mix = TaskMix(
        [easy, hard, ocr], weights={"counting-easy": 1, "counting-hard": 1, "ocr": 2}, num_samples=16
    )
    rewards = mix.reward_system()
    env = mix.environment(reward=rewards)
    expected: Counter[str] = Counter()
    for index in range(len(mix)):
        record = mix.record(index)
        sample = sample_from_record(record)
        assert sample.source == record["source"]  # the mixture's tag is the sample's own
        category = env.by_source[sample.source]
        episode = run_episode(env, record, lambda messages, c=category, s=sample: c.oracle(s))
        assert episode.reward == 1.0 and episode.metadata()["source"] == sample.source
        expected[sample.source] += 1
    counts = rewards.log_dict()
    assert counts["rewards/samples/count"] == 16.0
    assert {s: counts[f"rewards/samples/{s}/count"] for s in expected} == dict(expected)
    assert set(expected) == {"counting-easy", "counting-hard", "ocr"}


def test_the_source_tag_reaches_rollout_metrics(tmp_path: Path) -> None:
    mix = TaskMix([make("counting", tmp_path, source="shapes"), make("ocr", tmp_path)], num_samples=8, seed=2)
    rewards = mix.reward_system()
    scheduler = RolloutScheduler(
        SimulatedEngine(median_latency_s=0.5, correct_prob=0.5, seed=0), rewards, mix, group_size=2,
        groups_per_step=8, num_epochs=1, shuffle=False,
    )  # fmt: skip
    batch = run_virtual(scheduler.rollout_step())
    metrics = batch.metrics(ks=(1,))
    sources = Counter(mix[i].source for i in range(len(mix)))
    for source, n in sources.items():
        assert metrics[f"samples/{source}/count"] == 2.0 * n
        assert rewards.log_dict()[f"rewards/samples/{source}/count"] == 2.0 * n
    assert 0.0 <= metrics["reward/mean"] <= 1.0


def test_a_tag_that_disagrees_with_the_sample_is_refused(tmp_path: Path) -> None:
    category = make("ocr", tmp_path)
    mixture = Mixture({"renamed": category.as_source()}, num_samples=4)
    with pytest.raises(ValueError, match="tags it with source 'renamed' but the sample's source is 'ocr'"):
        sample_from_record(mixture[0])
    with pytest.raises(TypeError, match="task record with a 'sample'"):
        sample_from_record({"image": None})
    with pytest.raises(ValueError, match="two categories use the source name 'ocr'"):
        task_mixture([category, make("ocr", tmp_path / "other")])


def test_the_reward_system_spec_names_each_categorys_verifiers(tmp_path: Path) -> None:
    categories = [make(n, tmp_path) for n in ("counting", "arithmetic", "grounding", "ocr", "small_text")]
    spec = reward_system_spec(categories, on_failure="exclude")
    args = spec["init_args"]
    assert spec["class_path"] == "glmkit.rl.rewards.system.RewardSystem" and args["on_failure"] == "exclude"
    assert args["verifiers"] == {
        "numeric": {"class_path": "numeric", "init_args": {}},
        "grounding_iou": {
            "class_path": "grounding",
            "init_args": {"pred_space": "norm1000", "answer_space": "pixels"},
        },
        "exact_match": {"class_path": "exact_match", "init_args": {}},
        "ocr_ned": {"class_path": "ocr_ned", "init_args": {}},
    }
    assert args["score_keys"] == {"grounding_iou": "grounding.iou"}
    assert args["categories"]["ocr"]["verifiers"] == ["exact_match", "ocr_ned"]
    assert args["categories"]["arithmetic"]["verifiers"] == ["numeric"]
    system = build_reward_system(categories)
    assert isinstance(system, RewardSystem) and set(system.categories) == {c.name for c in categories}


def test_conflicting_verifier_specs_are_refused(tmp_path: Path) -> None:
    class LooseCounting(Counting):
        name = "loose_counting"

        def verifiers(self) -> dict[str, VerifierSpec]:
            return {"numeric": VerifierSpec("numeric", {"rel_tol": 0.1})}

    with pytest.raises(
        ValueError, match="verifier 'numeric' is .* for category 'counting' but .* for 'loose_counting'"
    ):
        reward_routes([make("counting", tmp_path), LooseCounting(data_dir=str(tmp_path))])
    other = make("counting", tmp_path / "b", source="again")
    other.rewards = lambda: {"verifiers": ["numeric"], "aggregator": "min"}  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="two 'counting' categories route their rewards differently"):
        reward_routes([make("counting", tmp_path), other])


def test_the_registry_holds_task_categories_only() -> None:
    assert TASK_CATEGORIES.base is TaskCategory and TASK_CATEGORIES.get("counting") is Counting
    with pytest.raises(RegistryError, match="is not a .*TaskCategory"):
        TASK_CATEGORIES.register("not_a_category")(dict)
    with pytest.raises(RegistryError, match="Did you mean 'counting'"):
        TASK_CATEGORIES.get("countin")
