"""Warmup + cosine schedule values and per-group schedules."""

from __future__ import annotations

import math

import pytest
import torch

from glmkit.optim import Constant, WarmupCosine
from glmkit.optim.schedules import build_scheduler


def test_warmup_cosine_values() -> None:
    s = WarmupCosine(warmup_steps=4, min_lr_ratio=0.1)
    assert s.factor(0, 20) == pytest.approx(1 / 5)
    assert s.factor(3, 20) == pytest.approx(4 / 5)
    assert s.factor(4, 20) == pytest.approx(1.0)
    mid = 4 + 8
    assert s.factor(mid, 20) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert s.factor(20, 20) == pytest.approx(0.1)
    assert s.factor(50, 20) == pytest.approx(0.1)  # past the end it stays at the floor


def test_scheduler_drives_each_group_by_name() -> None:
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD(
        [{"params": [a], "name": "vision/muon"}, {"params": [b], "name": "text/adamw"}], lr=1.0
    )
    sched = build_scheduler(opt, 10, {"vision": WarmupCosine(warmup_steps=0), "text": Constant()})
    for _ in range(5):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert opt.param_groups[1]["lr"] == pytest.approx(1.0)


def test_errors_name_the_problem() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="set trainer.max_steps"):
        build_scheduler(opt, -1, Constant())
    with pytest.raises(KeyError, match="no schedule for param group 'group0'"):
        build_scheduler(opt, 10, {"vision": Constant()})
    named = torch.optim.SGD(
        [{"params": [torch.nn.Parameter(torch.zeros(1))], "name": "vision_proj/muon"}], lr=1.0
    )
    with pytest.raises(KeyError, match="module 'vision_proj'"):  # exact module names, not prefixes
        build_scheduler(named, 10, {"vision": Constant()})
    with pytest.raises(ValueError, match="min_lr_ratio"):
        WarmupCosine(min_lr_ratio=2.0)
    for schedule in (WarmupCosine, Constant):  # a negative warmup would give negative learning rates
        with pytest.raises(ValueError, match="warmup_steps must be >= 0, got -2"):
            schedule(warmup_steps=-2)
