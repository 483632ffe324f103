"""One holder for frozen models that a training module uses but never trains.

Distillation teachers (stage 1), RL's reference policy and a judge's local model share one need:
they run inside a training step but must stay out of the student's checkpoint, optimizer, DDP
broadcast and FSDP flattening, and they may be large enough that they should live on the CPU
between uses. :class:`FrozenModels` keeps them outside the module tree (a plain mapping, not a
``ModuleDict``), frozen and in eval mode, and owns where they are:

- ``on(device)`` is a context in which every model is on ``device``; with ``offload=True`` the
  models go back to the CPU when it ends (GLM-5V-Turbo section 2.4 keeps the RL reference model on
  the CPU and loads it only for its forward);
- ``prefetch(device)`` starts that move early, on a side CUDA stream from pinned memory, so the copy
  overlaps the step before; ``on`` then waits for it. On the CPU both are no-ops.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a module with neither)."""
    tensor = next(module.parameters(), None)
    if tensor is None:
        tensor = next(module.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


class FrozenModels(Mapping[str, M], Generic[M]):
    """Named frozen models kept outside the module tree, with their device placement.

    Args:
        models: the models by name; each is frozen (``requires_grad=False``) and put in eval mode.
        offload: keep the models on the CPU between uses (moved to the accelerator in :meth:`on`
            and :meth:`prefetch`, back to the CPU when :meth:`on` ends).
    """

    def __init__(self, models: Mapping[str, M], offload: bool = False) -> None:
        self._models: dict[str, M] = dict(models)
        for model in self._models.values():
            model.requires_grad_(False)
            model.eval()
        self.offload = offload
        self._ready: dict[str, torch.cuda.Event] = {}
        if offload:
            self.release()

    # ------------------------------------------------------------------------------- mapping
    def __getitem__(self, name: str) -> M:
        return self._models[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    def __repr__(self) -> str:
        return f"FrozenModels({list(self._models)}, offload={self.offload})"

    # ------------------------------------------------------------------------------- placement
    def prefetch(self, device: torch.device | str) -> None:
        """Start moving every model to ``device`` (asynchronously on CUDA); :meth:`on` waits for it."""
        device = torch.device(device)
        if device.type != "cuda":
            return
        stream = torch.cuda.Stream(device)
        for name, model in self._models.items():
            if module_device(model) == device or name in self._ready:
                continue
            if module_device(model).type == "cpu":
                model.apply(_pin)
            with torch.cuda.stream(stream):
                model.to(device, non_blocking=True)
                event = torch.cuda.Event()
                event.record(stream)
            self._ready[name] = event

    @contextlib.contextmanager
    def on(self, device: torch.device | str) -> Iterator[FrozenModels[M]]:
        """A context in which every model is on ``device`` (released to the CPU after, if offloading)."""
        device = torch.device(device)
        for name, model in self._models.items():
            event = self._ready.pop(name, None)
            if event is not None:
                torch.cuda.current_stream(device).wait_event(event)
            if module_device(model) != device:
                model.to(device)
        try:
            yield self
        finally:
            if self.offload:
                self.release()

    def release(self) -> None:
        """Move every model to the CPU (what ``offload`` does after each use)."""
        for name, model in self._models.items():
            self._ready.pop(name, None)
            if module_device(model).type != "cpu":
                model.to("cpu")

    def train(self, mode: bool = True) -> FrozenModels[M]:
        """Frozen models stay in eval mode whatever their owner's mode (returns self)."""
        for model in self._models.values():
            model.eval()
        return self


def _pin(module: nn.Module) -> None:
    # Page-locked host memory lets the host-to-device copy run asynchronously.
    for param in module.parameters(recurse=False):
        if param.device.type == "cpu" and not param.is_pinned():
            param.data = param.data.pin_memory()
    for key, buf in module.named_buffers(recurse=False):
        if buf.device.type == "cpu" and not buf.is_pinned():
            module._buffers[key] = buf.pin_memory()
