"""The stage kit: skipped-sample counting, reseeding, hyperparameter saving, optimizer building."""

from __future__ import annotations

import pytest
import torch

from glmkit.optim import MuonAdamW
from glmkit.stages import Reseed, SkippedSamples, Stage, seed_for


class _Trainer:
    global_rank = 0

    class fit_loop:
        class epoch_loop:
            class batch_progress:
                class total:
                    ready = 7


class _Module:
    seed = 3

    def __init__(self) -> None:
        self.logged: list[tuple[str, float, dict]] = []

    def log(self, name: str, value: float, **kwargs) -> None:
        self.logged.append((name, value, kwargs))


def test_skipped_samples_keep_a_running_total_and_warn_once_per_sample() -> None:
    callback, module = SkippedSamples(), _Module()
    batch = {"skipped": ["/data/a.jpg: truncated", "/data/b.jpg: not an image"], "index": [0, 1, 2, 3]}
    with pytest.warns(UserWarning, match="rank 0 skipped an unreadable sample: /data/") as record:
        callback.on_train_batch_end(_Trainer(), module, None, batch, 0)
        callback.on_train_batch_end(_Trainer(), module, None, {"skipped": ["/data/a.jpg: truncated"]}, 1)
    assert [(n, v) for n, v, _ in module.logged] == [
        ("data/skipped_samples", 2.0),
        ("data/skipped_samples", 3.0),
    ]
    assert module.logged[0][2]["reduce_fx"] == "sum" and module.logged[0][2]["sync_dist"]
    messages = [str(w.message) for w in record]
    assert sum("a.jpg" in m for m in messages) == 1 and sum("b.jpg" in m for m in messages) == 1
    resumed = SkippedSamples()
    resumed.load_state_dict(callback.state_dict())
    resumed.on_train_batch_end(_Trainer(), module, None, {"skipped": []}, 2)
    assert module.logged[-1][1] == 3.0  # a resumed run keeps counting from the saved total


def test_reseed_seeds_from_stage_seed_micro_step_and_rank() -> None:
    Reseed().on_train_batch_start(_Trainer(), _Module(), None, 0)
    drawn = torch.rand(3)
    torch.manual_seed(seed_for(3, "rng", 7, 0))
    assert torch.equal(drawn, torch.rand(3))


class _Tiny(Stage):
    def __init__(self, layer: torch.nn.Module, width: int = 4, optimization: MuonAdamW | None = None) -> None:
        super().__init__()
        self.save_component_hparams(["layer", "optimization"])
        self.layer = layer
        self.optimization = optimization or MuonAdamW(lr=0.01)


def test_components_built_in_python_are_not_pickled_into_hyperparameters() -> None:
    stage = _Tiny(torch.nn.Linear(4, 4), width=8)
    assert dict(stage.hparams) == {"width": 8}


def test_stage_builds_its_optimizer_from_the_recipe_builder() -> None:
    stage = _Tiny(torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match=r"needs trainer.max_steps > 0 \(got -1\)"):
        stage.configure_optimizers()

    class _T:
        max_steps = 10

    stage._trainer = _T()
    config = stage.configure_optimizers()
    groups = {g["name"]: g for g in config["optimizer"].param_groups}
    assert set(groups) == {"muon", "adamw_no_decay"}  # weight matrix, bias
    assert config["lr_scheduler"]["interval"] == "step"
    assert callbacks_of(stage) == {"Reseed", "SkippedSamples"}


def callbacks_of(stage: Stage) -> set[str]:
    return {type(c).__name__ for c in stage.configure_callbacks()}
