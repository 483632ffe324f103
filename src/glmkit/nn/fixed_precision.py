"""Tensors that move with their module but are never cast: RoPE frequencies, target statistics.

Module buffers follow every ``model.to(dtype)``, and FSDP's mixed precision (Lightning's
``bf16-mixed`` sets ``buffer_dtype=bfloat16``) casts buffers behind ``nn.Module._apply``'s back. A
float64 running sum cast to bf16 loses every update (300 + 1 == 300 in bf16), and RoPE frequencies
rounded to bf16 turn every angle by up to 0.4%, more with each patch of distance. Such tensors are
therefore kept as plain attributes, which no caster sees, and a module's ``_apply`` override moves
them to wherever the module goes, using :func:`target_device`. FSDP moves parameters and buffers to
the GPU without ``_apply``, so such modules also move these tensors to their inputs' device on use.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def target_device(fn: Callable[[Tensor], Tensor], like: Tensor) -> torch.device:
    """The device ``nn.Module._apply``'s ``fn`` sends tensors to (``to``, ``cuda``, ``to_empty``...).

    ``fn`` runs on an empty probe, so whatever it would do to the dtype or the data does not matter.
    A probe on the meta device cannot be copied anywhere, so meta tensors are probed from the CPU.
    """
    probe = torch.empty(0, device="cpu" if like.is_meta else like.device)
    return fn(probe).device


class FixedPrecisionModule(nn.Module):
    """Base of modules that keep never-cast tensors as plain attributes (see this module's doc).

    The one place that overrides ``nn.Module._apply`` for them: after parameters and buffers move or
    cast, :meth:`place_fixed` puts the plain tensors on the new device, in their own dtype.
    :meth:`follow` does the same for a device met at run time (FSDP moves modules without
    ``_apply``). Subclasses implement :meth:`place_fixed` and :meth:`fixed_device`.
    """

    def place_fixed(self, device: torch.device) -> None:
        """Put the never-cast tensors on ``device`` (moved, or recomputed), keeping their dtype."""
        raise NotImplementedError

    def fixed_device(self) -> torch.device:
        """Where the never-cast tensors are now."""
        raise NotImplementedError

    def follow(self, device: torch.device | str) -> None:
        """Move the never-cast tensors to ``device`` if they are elsewhere."""
        device = torch.device(device)
        if self.fixed_device() != device:
            self.place_fixed(device)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> FixedPrecisionModule:
        super()._apply(fn, recurse)
        self.place_fixed(target_device(fn, torch.empty(0, device=self.fixed_device())))
        return self
