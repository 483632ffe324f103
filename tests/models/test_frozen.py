"""FrozenModels: out of the module tree, frozen, eval mode, placement on use and offload."""

from __future__ import annotations

import torch
from torch import nn

import glmkit.models.frozen as frozen_module
from glmkit.models.frozen import FrozenModels, module_device


class _Owner(nn.Module):
    def __init__(self, frozen: FrozenModels) -> None:
        super().__init__()
        self.student = nn.Linear(2, 2)
        self.frozen = frozen


class _MoveRecorder(nn.Linear):
    """A Linear that records every device it is sent to."""

    def __init__(self) -> None:
        super().__init__(2, 2)
        self.moves: list[str] = []
        self.where = "cpu"

    def to(self, *args, **kwargs):  # type: ignore[override]
        device = torch.device(args[0]) if args else torch.device(kwargs["device"])
        self.moves.append(device.type)
        self.where = device.type
        return self


def test_frozen_models_stay_out_of_state_dict_parameters_and_training() -> None:
    teacher = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    owner = _Owner(FrozenModels({"teacher": teacher}))
    assert list(owner.state_dict()) == ["student.weight", "student.bias"]
    assert {id(p) for p in owner.parameters()} == {id(owner.student.weight), id(owner.student.bias)}
    owner.train()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert owner.frozen["teacher"] is teacher and list(owner.frozen) == ["teacher"] and len(owner.frozen) == 1


def test_on_places_models_on_the_device_and_offload_releases_them_after(monkeypatch) -> None:
    # a recorder stands in for an accelerator: its "device" is wherever it was last sent
    monkeypatch.setattr(frozen_module, "module_device", lambda m: torch.device(getattr(m, "where", "cpu")))
    model = _MoveRecorder()
    resident = FrozenModels({"m": model})
    with resident.on("cpu") as held:
        assert held["m"] is model
    assert model.moves == []  # already there: no copy

    offloaded = FrozenModels({"m": model}, offload=True)
    with offloaded.on("meta"):
        assert model.where == "meta"  # on the device while in use
    assert model.moves == ["meta", "cpu"]  # and released after use
    offloaded.prefetch("cpu")  # prefetching to the CPU is a no-op
    assert model.moves == ["meta", "cpu"]


def test_module_device_of_an_empty_module_is_the_cpu() -> None:
    assert module_device(nn.Module()) == torch.device("cpu")
